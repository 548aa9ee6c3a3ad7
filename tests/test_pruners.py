"""Pruners: each one's decisions on synthetic curves, checked against the rule it implements, and
real studies on a local Ray whose pruned trials keep their curves up to the epoch they stopped at.

The synthetic tests drive an in-memory Optuna study with ``create_pruner`` and hand-made curves;
the expected decisions come from small independent restatements of each rule below (median /
percentile of the *complete* trials at the same step, compared with the trial's best value so
far; successive halving's rungs at ``min_resource * eta**(rate + k)`` keeping the top
``max(1, n // eta)``; Hyperband = successive halving per bracket), never from a recorded run.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

import tuner
from tests.conftest import open_coordinator, small_spec
from tuner import SpecError
from tuner.cli import app
from tuner.execution import TrialResult
from tuner.pruners import HyperbandPruner, create_pruner
from tuner.samplers import CoarseToFineSampler, create_sampler
from tuner.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 9


def _spec(pruner: dict, epochs: int = EPOCHS, direction: str = "minimize", **over: object):
    return parse_spec(small_spec("p", pruner=pruner, epochs=epochs,
                                 objective={"metric": "val_loss", "direction": direction}, **over))


def _curves(n: int, epochs: int, seed: int) -> list[list[float]]:
    """Loss-like curves: different start, speed and floor per trial, with noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        start, floor, speed = rng.uniform(1, 3), rng.uniform(0.05, 1.5), rng.uniform(0.1, 1.0)
        out.append([floor + (start - floor) * math.exp(-speed * e) + rng.gauss(0, 0.05)
                    for e in range(1, epochs + 1)])
    return out


def _order(n: int, epochs: int, seed: int, concurrency: int) -> list[int]:
    """Interleaved steps: ``concurrency`` trials run at once, each advances one epoch per event."""
    rng = random.Random(seed)
    left = {i: epochs for i in range(n)}
    running, nxt, events = [], 0, []
    while running or nxt < n:
        while len(running) < concurrency and nxt < n:
            running.append(nxt)
            nxt += 1
        i = rng.choice(running)
        events.append(i)
        left[i] -= 1
        if left[i] == 0:
            running.remove(i)
    return events


def _run(pruner: optuna.pruners.BasePruner, curves: Sequence[Sequence[float]], order: list[int],
         direction: str = "minimize", name: str = "synthetic") -> dict[int, int]:
    """Play the events into a real Optuna study; returns trial -> epoch it was pruned at.

    A trial that was pruned ignores its later events; one that reaches its last epoch completes.
    """
    study = optuna.create_study(study_name=name, direction=direction, pruner=pruner)
    trials = [study.ask() for _ in curves]
    step = dict.fromkeys(range(len(curves)), 0)
    pruned: dict[int, int] = {}
    for i in order:
        if i in pruned:
            continue
        step[i] += 1
        epoch, value = step[i], curves[i][step[i] - 1]
        trials[i].report(value, epoch)
        if trials[i].should_prune():
            pruned[i] = epoch
            study.tell(trials[i], state=TrialState.PRUNED)
        elif epoch == len(curves[i]):
            study.tell(trials[i], value)
    return pruned


# --- independent restatements of the rules -----------------------------------------------------
def _threshold_rule(q: float, startup: int, warmup: int, interval: int) -> Callable:
    """Median (q=50) / percentile: prune when the trial's best value so far is worse than the
    q-th percentile (best-side) of the complete trials' values at this step."""

    def rule(curves, order, direction):
        sign = 1.0 if direction == "minimize" else -1.0
        step, pruned, complete = {}, {}, []
        for i in order:
            if i in pruned:
                continue
            step[i] = s = step.get(i, 0) + 1
            at = [curves[j][s - 1] for j in complete]
            checked = s >= warmup and (s - warmup) % interval == 0
            if checked and len(complete) >= max(startup, 1) and at:
                best = min(sign * v for v in curves[i][:s])
                cut = np.percentile([sign * v for v in at], q)  # best side = low side after sign
                if best > cut:
                    pruned[i] = s
                    continue
            if s == len(curves[i]):
                complete.append(i)
        return pruned

    return rule


def _sha_rule(r: int, eta: int, rate: int, bracket_of: Callable[[int], int] | None = None):
    """Asynchronous successive halving: at rung k (epoch r * eta**(rate + k)) a trial goes on
    only if its value there is among the best max(1, n // eta) of the n trials that reached that
    rung so far (itself included). With ``bracket_of``, each bracket s is its own halving with
    rate s (Hyperband)."""

    def rule(curves, order, direction):
        sign = 1.0 if direction == "minimize" else -1.0
        step, pruned, rungs = {}, {}, {}
        for i in order:
            if i in pruned:
                continue
            step[i] = s = step.get(i, 0) + 1
            b = bracket_of(i) if bracket_of else 0
            my_rate = b if bracket_of else rate
            k = 0
            while r * eta ** (my_rate + k) < s:
                k += 1
            if r * eta ** (my_rate + k) != s:
                continue
            values = rungs.setdefault((b, k), [])
            values.append(sign * curves[i][s - 1])
            keep = sorted(values)[max(len(values) // eta, 1) - 1]
            if sign * curves[i][s - 1] > keep:
                pruned[i] = s
        return pruned

    return rule


CASES = [
    ("median", {"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
     _threshold_rule(50, 3, 2, 1)),
    ("median interval", {"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 1,
                         "interval_steps": 3}, _threshold_rule(50, 2, 1, 3)),
    ("percentile 25", {"kind": "percentile", "percentile": 25, "n_startup_trials": 2,
                       "n_warmup_steps": 1}, _threshold_rule(25, 2, 1, 1)),
    ("percentile 75", {"kind": "percentile", "percentile": 75, "n_startup_trials": 4,
                       "n_warmup_steps": 3, "interval_steps": 2}, _threshold_rule(75, 4, 3, 2)),
    ("asha", {"kind": "asha", "min_resource": 1, "reduction_factor": 3}, _sha_rule(1, 3, 0)),
    ("successive_halving eta 2 rate 1", {"kind": "successive_halving", "min_resource": 1,
                                         "reduction_factor": 2, "min_early_stopping_rate": 1},
     _sha_rule(1, 2, 1)),
    ("asha min_resource 2", {"kind": "asha", "min_resource": 2, "reduction_factor": 2},
     _sha_rule(2, 2, 0)),
]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("case,pruner,rule", CASES, ids=[c[0] for c in CASES])
def test_decisions_follow_the_rule(case, pruner, rule, concurrency, direction) -> None:
    for seed in range(3):
        curves = _curves(30, EPOCHS, seed)
        if direction == "maximize":
            curves = [[-v for v in c] for c in curves]
        order = _order(len(curves), EPOCHS, seed, concurrency)
        got = _run(create_pruner(_spec(pruner, direction=direction)), curves, order, direction)
        assert got == rule(curves, order, direction), (case, seed)
        assert got, "the synthetic curves should make the pruner act"


def test_hyperband_is_successive_halving_per_bracket() -> None:
    eta, name = 3, "hb-synthetic"
    pruner = create_pruner(_spec({"kind": "hyperband", "min_resource": 1, "reduction_factor": eta}))
    assert isinstance(pruner, HyperbandPruner)
    assert (pruner.max_resource, pruner.n_brackets) == (EPOCHS, 3)  # floor(log3(9 / 1)) + 1
    for seed in range(3):
        curves = _curves(60, EPOCHS, seed)
        order = _order(len(curves), EPOCHS, seed, 4)
        pruner = create_pruner(_spec({"kind": "hyperband", "reduction_factor": eta}))
        got = _run(pruner, curves, order, name=name)
        bracket = {i: pruner.bracket_of(name, i) for i in range(len(curves))}
        want = _sha_rule(1, eta, 0, bracket.__getitem__)(curves, order, "minimize")
        assert got == want
        assert set(bracket.values()) == {0, 1, 2}


def test_hyperband_keeps_the_whole_study_for_every_sampler() -> None:
    """Optuna's own HyperbandPruner gives samplers a per-bracket view without user attributes;
    coarse-to-fine keeps its stage boxes there, so tuner's wrapper must leave the study whole."""
    spec = _spec({"kind": "hyperband", "reduction_factor": 3}, trials=24,
                 sampler={"kind": "coarse-to-fine", "stages": 2, "top_k": 2, "seed": 0})
    from tuner.spec import to_distribution

    dists = {n: to_distribution(p) for n, p in spec.params.items()}
    sampler = create_sampler(spec)
    assert isinstance(sampler, CoarseToFineSampler)
    study = optuna.create_study(study_name="c2f-hb", sampler=sampler, pruner=create_pruner(spec))
    rng = random.Random(0)
    for _ in range(spec.trials):
        trial = study.ask(dists)
        for epoch in range(1, EPOCHS + 1):
            trial.report(rng.random() / epoch, epoch)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, rng.random())
    assert {"c2f_box_0", "c2f_box_1"} <= set(study.user_attrs)
    stages = [sampler.stage_of(study, t.number) for t in study.trials]
    assert stages == sorted(stages) and stages[-1] == 1
    assert any(t.state == TrialState.PRUNED for t in study.trials)


def test_no_pruning_at_the_last_epoch(sqlite_url: str) -> None:
    """Pruning a trial that has trained every epoch saves nothing and loses its value."""
    spec = small_spec(trials=4, epochs=4, pruner={"kind": "asha", "min_resource": 1,
                                                   "reduction_factor": 2})  # rungs at 1, 2, 4
    c = open_coordinator(spec, sqlite_url)

    def result(a, state: str, values: list[float]) -> TrialResult:
        curve = [{"epoch": e, "val_accuracy": v} for e, v in enumerate(values, 1)]
        return TrialResult(a.trial_id, a.number, state, values[-1] if state == "COMPLETE" else None,
                           reported=True, curve=curve)

    a = c.next_trial("w0")
    assert [c.report(a.trial_id, e, 0.9) for e in (1, 2, 3, 4)] == [False] * 4
    b = c.next_trial("w0", result(a, "COMPLETE", [0.9] * 4))
    assert c.report(b.trial_id, 1, 0.1) is True  # rung 0: worse than the one other trial
    d = c.next_trial("w0", result(b, "PRUNED", [0.1]))
    assert [c.report(d.trial_id, e, 0.9) for e in (1, 2, 3)] == [False] * 3
    assert c.report(d.trial_id, 4, 0.1) is False  # rung 2 would cut it, but its work is done
    c.next_trial("w0", result(d, "COMPLETE", [0.9, 0.9, 0.9, 0.1]))
    c.close()


def test_rung_values_survive_a_resume(sqlite_url: str) -> None:
    """Successive halving keeps each trial's rung values as system attributes; they are written
    with the outcome, so a resumed study judges new trials against the old ones."""
    spec = small_spec(trials=3, epochs=4, pruner={"kind": "asha", "reduction_factor": 2})
    c = open_coordinator(spec, sqlite_url)
    a = c.next_trial("w0")
    for epoch in (1, 2, 3, 4):
        c.report(a.trial_id, epoch, 0.9)
    curve = [{"epoch": e, "val_accuracy": 0.9} for e in (1, 2, 3, 4)]
    c.next_trial("w0", TrialResult(a.trial_id, a.number, "COMPLETE", 0.9, reported=True, curve=curve))
    c.stop()
    c.close()
    stored = optuna.load_study(study_name=spec["study"], storage=sqlite_url).trials[0]
    assert stored.system_attrs["completed_rung_0"] == 0.9
    r = open_coordinator(spec, sqlite_url, resume=True)
    b = r.next_trial("w0")
    assert r.report(b.trial_id, 1, 0.1) is True  # judged against the stored trial's rung value
    r.close()


# --- spec validation ---------------------------------------------------------------------------
BAD = [
    ({"kind": "hyperband", "max_resource": 12}, "pruner.max_resource", "max_resource <= 9"),
    ({"kind": "hyperband", "min_resource": 9}, "pruner.min_resource", "min_resource < 9"),
    ({"kind": "asha", "min_resource": 3, "min_early_stopping_rate": 1}, "pruner.min_resource",
     "lower min_resource"),
    ({"kind": "median", "n_warmup_steps": 9}, "pruner.n_warmup_steps", "n_warmup_steps < 9"),
    ({"kind": "median", "percentile": 30}, "pruner.percentile", "kind: percentile"),
    ({"kind": "asha", "max_resource": 9}, "pruner.max_resource", "kind: hyperband"),
    ({"kind": "percentile", "percentile": 120}, "pruner.percentile", "less than or equal to 100"),
    ({"kind": "asha", "reduction_factor": 1}, "pruner.reduction_factor", "greater than or equal to 2"),
    ({"kind": "hyperbend"}, "pruner.kind", "successive_halving, asha, hyperband"),
    ({"kind": "median", "warmup": 2}, "pruner.warmup", "valid keys here"),
]


@pytest.mark.parametrize("pruner,field,fix", BAD, ids=[f"{b[1]}-{b[0]['kind']}" for b in BAD])
def test_bad_pruner_settings_name_the_field_and_the_fix(pruner, field, fix) -> None:
    with pytest.raises(SpecError) as err:
        _spec(pruner)
    assert err.value.field == field
    assert fix in err.value.message and "\n" not in str(err.value)


def test_defaults_per_kind() -> None:
    hb = create_pruner(_spec({"kind": "hyperband"}, epochs=20))
    assert (hb.min_resource, hb.max_resource, hb.reduction_factor) == (1, 20, 3)
    assert isinstance(create_pruner(_spec({"kind": "asha"})), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(create_pruner(_spec({"kind": "percentile"})), optuna.pruners.PercentilePruner)
    assert isinstance(create_pruner(_spec({"kind": "none"})), optuna.pruners.NopPruner)
    # a spec stored before these kinds existed still loads
    old = small_spec("old", pruner={"kind": "none", "n_startup_trials": 5, "n_warmup_steps": 2})
    assert parse_spec(old).pruner.kind == "none"


# --- real studies ------------------------------------------------------------------------------
REAL = [
    {"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
    {"kind": "percentile", "percentile": 40, "n_startup_trials": 2, "n_warmup_steps": 1},
    {"kind": "asha", "min_resource": 1, "reduction_factor": 2},
    {"kind": "hyperband", "min_resource": 1, "reduction_factor": 2},
]


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("pruner", REAL, ids=[p["kind"] for p in REAL])
def test_real_study_prunes_and_keeps_truncated_curves(pruner: dict, sqlite_url: str) -> None:
    epochs = 6
    spec = small_spec(trials=14, epochs=epochs, pruner=pruner, params={
        "lr": {"type": "float", "low": 1e-5, "high": 0.1, "scale": "log"},
        "batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"}})
    study = tuner.submit(spec, storage=sqlite_url)
    counts = study.counts()
    assert counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"] == 14
    pruned = study.trials(["PRUNED"])
    assert pruned, counts
    for t in pruned:
        curve = study.curve(t.number)
        stop = int(curve["epoch"].max())
        assert list(curve["epoch"]) == list(range(1, stop + 1)) and stop < epochs
        assert t.reason == f"pruned at epoch {stop}" and t.epochs_run == stop
    stops = {t.number: t.epochs_run for t in pruned}
    plain = optuna.load_study(study_name=spec["study"], storage=sqlite_url)
    for t in plain.get_trials(states=(TrialState.PRUNED,)):  # Optuna's view agrees
        assert sorted(t.intermediate_values) == list(range(1, stops[t.number] + 1))
    for t in study.trials(["COMPLETE"]):
        assert t.epochs_run == epochs
    shown = CliRunner().invoke(app, ["trials", spec["study"], "--storage", sqlite_url,
                                     "--state", "PRUNED", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert [(int(r["epochs"]), r["reason"]) for r in rows] == [(stops[t.number], t.reason)
                                                                for t in pruned]
