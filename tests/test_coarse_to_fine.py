"""Coarse-to-fine: the box arithmetic on every scale, and the sampler under plain Optuna."""

from __future__ import annotations

import math
import uuid
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import tuner
from tuner._reasons import INFRA_REASONS
from tuner.samplers import (
    LEGACY_STAGE_ATTR,
    STAGE_ATTR,
    box_values,
    decode_box,
    next_stage,
    stored_boxes,
    trial_stage,
)
from tuner.samplers._coarse_to_fine import (
    CoarseToFineSampler,
    full_box,
    place,
    split_trials,
    zoom,
)
from tuner.spec import CategoricalParam, FloatParam, IntParam, to_distribution, to_internal

optuna.logging.set_verbosity(optuna.logging.WARNING)

LR = FloatParam(type="float", low=1e-4, high=1.0, scale="log")  # internal [-4, 0]
BETA = FloatParam(type="float", low=0.9, high=0.999, scale="one_minus_log")  # [-3, -1]
BATCH = IntParam(type="int", low=32, high=512, scale="pow2")  # exponents 5..9
LAYERS = IntParam(type="int", low=1, high=4)
UNITS = IntParam(type="int", low=8, high=256, scale="log")
DROPOUT = FloatParam(type="float", low=0.0, high=0.5)
STEPPED = FloatParam(type="float", low=0.0, high=1.0, step=0.25)
ACT = CategoricalParam(type="categorical", choices=["relu", "tanh", "leaky_relu"])
FLAG = CategoricalParam(type="categorical", choices=[True, 1, None])
SPACE: dict[str, Any] = {
    "lr": LR,
    "beta": BETA,
    "batch": BATCH,
    "layers": LAYERS,
    "units": UNITS,
    "dropout": DROPOUT,
    "stepped": STEPPED,
    "act": ACT,
    "flag": FLAG,
}


def _zoom(
    space: dict,
    top: list[dict],
    margin: float = 0.1,
    min_width: float = 0.05,
    previous: dict | None = None,
) -> dict:
    return zoom(space, top, previous or full_box(space), margin=margin, min_width=min_width)


def _close(box: tuple[float, float], expected: tuple[float, float]) -> bool:
    return all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(box, expected))


# --- box arithmetic, one scale at a time ---------------------------------------------------------
def test_log_box_is_the_top_decades_widened_by_margin_of_the_previous_box() -> None:
    box = _zoom({"lr": LR}, [{"lr": 1e-3}, {"lr": 1e-2}, {"lr": 3e-3}])
    assert _close(box["lr"], (-3.4, -1.6))  # [-3, -2] +- 0.1 * 4 decades
    narrower = _zoom({"lr": LR}, [{"lr": 1e-3}, {"lr": 1e-2}], previous={"lr": (-3.5, -1.5)})
    assert _close(narrower["lr"], (-3.2, -1.8))  # the margin follows the last stage's width


def test_one_minus_log_box_is_in_log_of_one_minus_beta() -> None:
    box = _zoom({"beta": BETA}, [{"beta": 0.99}, {"beta": 0.999}], margin=0.0)
    assert _close(box["beta"], (-3.0, -2.0))
    box = _zoom({"beta": BETA}, [{"beta": 0.95}, {"beta": 0.99}], margin=0.25)
    assert _close(box["beta"], (-2.5, -1.0))  # log10(0.05) + 0.5 is past beta = 0.9: clipped


def test_pow2_box_is_whole_exponents() -> None:
    box = _zoom({"batch": BATCH}, [{"batch": 64}, {"batch": 128}])
    assert box["batch"] == (6.0, 7.0)  # [6, 7] +- 0.4 holds no other exponent
    box = _zoom({"batch": BATCH}, [{"batch": 64}, {"batch": 128}], margin=0.25)
    assert box["batch"] == (5.0, 8.0)


def test_int_boxes_hold_whole_values() -> None:
    box = _zoom(
        {"layers": LAYERS, "units": UNITS}, [{"layers": 2, "units": 20}, {"layers": 3, "units": 40}]
    )
    assert box["layers"] == (2.0, 3.0)
    lo, hi = box["units"]
    pad = 0.1 * (math.log10(256) - math.log10(8))
    assert 10**lo == pytest.approx(math.ceil(20 / 10**pad))
    assert 10**hi == pytest.approx(math.floor(40 * 10**pad))


def test_stepped_float_box_is_on_the_step_grid() -> None:
    box = _zoom({"stepped": STEPPED}, [{"stepped": 0.5}, {"stepped": 0.75}], margin=0.3)
    assert _close(box["stepped"], (0.25, 1.0))


def test_categorical_box_keeps_the_categories_of_the_top_trials() -> None:
    box = _zoom(
        {"act": ACT, "flag": FLAG}, [{"act": "tanh", "flag": 1}, {"act": "relu", "flag": 1}]
    )
    assert box["act"] == ["relu", "tanh"]
    assert box["flag"] == [1]  # True == 1 in Python, but they are different choices


def test_identical_top_values_get_the_minimum_width() -> None:
    top = [{"lr": 1e-2, "dropout": 0.2}] * 5
    box = _zoom({"lr": LR, "dropout": DROPOUT}, top, margin=0.0, min_width=0.05)
    assert _close(box["lr"], (-2.1, -1.9))
    assert _close(box["dropout"], (0.1875, 0.2125))
    with_margin = _zoom({"lr": LR}, top, margin=0.1, min_width=0.05)
    assert _close(with_margin["lr"], (-2.4, -1.6))  # the margin already exceeds the minimum


def test_a_parameter_at_its_bound_stays_inside_the_declared_range() -> None:
    box = _zoom({"lr": LR, "beta": BETA}, [{"lr": 1.0, "beta": 0.999}] * 3, margin=0.1)
    assert _close(box["lr"], (-0.4, 0.0))
    assert _close(box["beta"], (-3.0, -2.8))
    box = _zoom(
        {"lr": LR, "dropout": DROPOUT}, [{"lr": 1e-4, "dropout": 0.5}], margin=0.0, min_width=0.1
    )
    assert _close(box["lr"], (-4.0, -3.6))  # the minimum width is shifted back inside
    assert _close(box["dropout"], (0.45, 0.5))


def test_a_parameter_no_top_trial_has_keeps_the_previous_box() -> None:
    previous = {**full_box(SPACE), "lr": (-3.0, -1.0)}
    box = _zoom(SPACE, [{"dropout": 0.1}], previous=previous)
    assert box["lr"] == (-3.0, -1.0) and box["act"] == ACT.choices


def test_place_covers_each_box_and_each_legal_value() -> None:
    box = _zoom(
        SPACE,
        [
            {
                "lr": 1e-3,
                "beta": 0.99,
                "batch": 64,
                "layers": 2,
                "units": 30,
                "dropout": 0.1,
                "stepped": 0.5,
                "act": "tanh",
                "flag": None,
            }
        ],
        margin=0.2,
    )
    for name, param in SPACE.items():
        values = [place(param, box[name], (i + 0.5) / 200) for i in range(200)]
        if isinstance(param, CategoricalParam):
            assert set(map(repr, values)) == set(map(repr, box[name]))
            continue
        lo, hi = box[name]
        for v in values:
            assert lo - 1e-9 <= to_internal(param, v) <= hi + 1e-9, (name, v, box[name])
    assert {place(BATCH, (5.0, 7.0), u) for u in (0.0, 0.4, 0.99)} == {32, 64, 128}


def test_split_trials() -> None:
    assert split_trials(30, 3) == [10, 10, 10]
    assert split_trials(31, 3) == [11, 10, 10]
    assert split_trials(2, 3) == [1, 1]


def test_bad_settings_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="adding up to n_trials=30"):
        CoarseToFineSampler(SPACE, n_trials=30, trials_per_stage=[10, 10])
    with pytest.raises(ValueError, match="drop stages"):
        CoarseToFineSampler(SPACE, n_trials=30, stages=2, trials_per_stage=[10, 10, 10])
    with pytest.raises(ValueError, match="top_k"):
        CoarseToFineSampler(SPACE, n_trials=30, top_k=0)


# --- the sampler on a study ----------------------------------------------------------------------
def _add(
    study: optuna.Study,
    params: dict,
    value: float | None,
    state: TrialState = TrialState.COMPLETE,
    **user_attrs: Any,
) -> None:
    dists = {k: to_distribution(SPACE[k]) for k in params}
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=dists,
            value=value if state == TrialState.COMPLETE else None,
            state=state,
            user_attrs=user_attrs,
        )
    )


def test_failed_pruned_and_running_trials_are_ignored() -> None:
    sampler = CoarseToFineSampler(
        {"lr": LR}, n_trials=12, stages=2, top_k=2, margin=0.0, min_width=0.0
    )
    study = optuna.create_study(sampler=sampler, direction="maximize")
    _add(study, {"lr": 1e-3}, 0.5)
    _add(study, {"lr": 1e-2}, 0.9)
    _add(study, {"lr": 1e-4}, None, TrialState.FAIL)
    _add(study, {"lr": 1.0}, None, TrialState.PRUNED)
    _add(study, {"lr": 0.5}, None, TrialState.RUNNING)
    _add(study, {"lr": 1e-1}, 0.7)
    box = sampler.box(study, 1)
    assert _close(box["lr"], (-2.0, -1.0))  # the two best COMPLETE ones: 1e-2 and 1e-1
    assert study.user_attrs["c2f_box_1"]["top_trials"] == [1, 5]


def test_fewer_finished_trials_than_top_k_and_none_at_all() -> None:
    sampler = CoarseToFineSampler(
        {"lr": LR}, n_trials=4, stages=2, top_k=5, margin=0.0, min_width=0.0
    )
    study = optuna.create_study(sampler=sampler)
    _add(study, {"lr": 1e-3}, None, TrialState.FAIL)
    _add(study, {"lr": 1e-2}, None, TrialState.PRUNED)
    assert _close(sampler.box(study, 1)["lr"], (-4.0, 0.0))  # nothing finished: stage 0's box
    study = optuna.create_study(sampler=sampler)
    _add(study, {"lr": 1e-3}, 2.0)
    _add(study, {"lr": 1e-2}, 1.0)
    assert _close(sampler.box(study, 1)["lr"], (-3.0, -2.0))


def test_requeued_failures_use_no_stage_budget() -> None:
    sampler = CoarseToFineSampler({"lr": LR}, n_trials=6, stages=3)
    study = optuna.create_study(sampler=sampler)
    _add(study, {"lr": 1e-3}, 1.0)
    _add(study, {"lr": 1e-2}, None, TrialState.FAIL, reason="worker_lost")
    _add(study, {"lr": 1e-2}, None, TrialState.FAIL, reason="diverged")  # counts: a real outcome
    _add(study, {"lr": 1e-2}, None, TrialState.FAIL, reason="interrupted")
    # positions 0, 1, 1, 2, 2, 3, 4, 5: trials 1 and 3 do not count for the trials after them
    assert [sampler.stage_of(study, n) for n in range(8)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert sampler.stage_of(study, 100) == 2  # past the budget: the last stage


def _run_in_flight(
    sampler: CoarseToFineSampler, study: optuna.Study, n: int, in_flight: int
) -> dict:
    """Ask/tell with ``in_flight`` trials running at once, finishing the oldest first."""
    dists = {k: to_distribution(p) for k, p in SPACE.items()}
    running: list[optuna.Trial] = []
    stages = {}
    for _ in range(n):
        upcoming = next_stage(sampler, study)
        trial = study.ask(dists)
        stages[trial.number] = sampler.stage_of(study, trial.number)
        assert upcoming == stages[trial.number]
        running.append(trial)
        if len(running) == in_flight:
            done = running.pop(0)
            p = done.params
            if p["act"] == "leaky_relu" and p["layers"] == 4:
                study.tell(done, state=TrialState.FAIL)
                continue
            value = (math.log10(p["lr"]) + 2) ** 2 + (math.log10(1 - p["beta"]) + 2.5) ** 2
            value += abs(math.log2(p["batch"]) - 7) + 0.1 * p["layers"] + p["dropout"]
            study.tell(done, value + (0.3 if p["act"] == "tanh" else 0.0))
    for trial in running:
        study.tell(trial, 1.0)
    return stages


@pytest.mark.parametrize("qmc", [False, True])
def test_plain_optuna_with_trials_in_flight_stays_inside_each_stage_box(qmc: bool) -> None:
    sampler = CoarseToFineSampler(SPACE, n_trials=45, stages=3, top_k=4, seed=3, qmc=qmc)
    study = optuna.create_study(sampler=sampler)
    stages = _run_in_flight(sampler, study, 45, in_flight=4)
    assert sorted(set(stages.values())) == [0, 1, 2]
    trials = {t.number: t for t in study.get_trials()}
    for stage in (1, 2):
        stored = study.user_attrs[f"c2f_box_{stage}"]
        box = sampler.box(study, stage)
        members = [trials[n] for n, s in stages.items() if s == stage]
        tops = [trials[n] for n in stored["top_trials"]]
        assert len(members) == 15 and len(tops) == 4
        assert all(t.state == TrialState.COMPLETE and stages[t.number] < stage for t in tops)
        for t in members + tops:  # every trial of the stage, and the top-k it came from
            for name, param in SPACE.items():
                if isinstance(param, CategoricalParam):
                    assert t.params[name] in box[name]
                else:
                    lo, hi = box[name]
                    assert lo - 1e-9 <= to_internal(param, t.params[name]) <= hi + 1e-9
        assert box["lr"][1] - box["lr"][0] < 4.0  # it did zoom in on the parameter that matters
    for t in trials.values():  # the sampler recorded each stage itself, under its own key
        assert t.system_attrs[STAGE_ATTR] == trial_stage(t) == stages[t.number]
        assert LEGACY_STAGE_ATTR not in t.user_attrs


def test_two_processes_agree_on_the_boxes_and_a_resume_reuses_them(tmp_path: Any) -> None:
    space = {"lr": LR, "batch": BATCH, "act": ACT}
    dists = {k: to_distribution(p) for k, p in space.items()}
    url = f"sqlite:///{tmp_path / 'c2f.db'}"

    def work(sampler: CoarseToFineSampler, study: optuna.Study, n: int) -> None:
        for _ in range(n):
            trial = study.ask(dists)
            study.tell(trial, abs(math.log10(trial.params["lr"]) + 2))

    first = CoarseToFineSampler(space, n_trials=8, stages=2, seed=1)
    study = optuna.create_study(storage=url, study_name="c2f", sampler=first)
    work(first, study, 5)  # stage 1 starts at trial 4: its box is stored now
    stored = dict(study.user_attrs)
    assert set(stored) == {"c2f_box_0", "c2f_box_1"}
    second = CoarseToFineSampler(space, n_trials=8, stages=2, seed=2)  # another process, resumed
    other = optuna.load_study(storage=url, study_name="c2f", sampler=second)
    work(second, other, 3)
    assert other.user_attrs == stored
    assert second.box(other, 1) == first.box(study, 1)
    lo, hi = second.box(other, 1)["lr"]
    assert all(lo <= math.log10(t.params["lr"]) <= hi for t in other.get_trials()[4:])


def test_same_seed_same_configurations_and_unknown_params_fall_back() -> None:
    def run(seed: int) -> list[dict]:
        sampler = CoarseToFineSampler(SPACE, n_trials=10, seed=seed)
        study = optuna.create_study(sampler=sampler)
        out = []
        for _ in range(10):
            trial = study.ask({k: to_distribution(p) for k, p in SPACE.items()})
            trial.suggest_float("extra", 0.0, 1.0)  # not in the space: Optuna's RandomSampler
            study.tell(trial, trial.params["dropout"])
            out.append(trial.params)
        return out

    assert run(0) == run(0)
    assert run(0) != run(1)
    assert all(0.0 <= p["extra"] <= 1.0 for p in run(0))


def test_enqueued_trials_keep_their_params() -> None:
    sampler = CoarseToFineSampler({"lr": LR}, n_trials=4, stages=2, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"lr": 0.5})
    trial = study.ask({"lr": to_distribution(LR)})
    assert trial.params == {"lr": 0.5}


@pytest.mark.parametrize("reason", sorted(INFRA_REASONS))
def test_every_requeued_reason_uses_no_stage_budget(reason: str) -> None:
    """One set (``tuner._reasons.INFRA_REASONS``) for the coordinator's re-queue and the stage
    positions: a ``tuner cancel`` (reason ``cancelled``) does not shift the later stages."""
    sampler = CoarseToFineSampler({"lr": LR}, n_trials=4, stages=2)
    study = optuna.create_study(sampler=sampler)
    _add(study, {"lr": 1e-3}, 1.0)
    _add(study, {"lr": 1e-2}, None, TrialState.FAIL, reason=reason)
    _add(study, {"lr": 1e-2}, 2.0)
    assert [sampler.stage_of(study, n) for n in range(5)] == [0, 0, 0, 1, 1]


def test_next_stage_is_none_for_samplers_without_stages() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler())
    assert next_stage(study.sampler, study) is None
    study.ask({"lr": to_distribution(LR)})
    assert STAGE_ATTR not in study.trials[0].system_attrs and trial_stage(study.trials[0]) is None


def test_trial_stage_reads_the_key_older_studies_stored() -> None:
    def frozen(**attrs: Any) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(state=TrialState.RUNNING, **attrs)

    assert trial_stage(frozen(user_attrs={"stage": 2})) == 2  # stored before STAGE_ATTR
    assert trial_stage(frozen(system_attrs={STAGE_ATTR: 1}, user_attrs={"stage": 2})) == 1
    assert trial_stage(frozen(user_attrs={"stage": "warm-up"})) is None  # a user's own attribute
    assert trial_stage(frozen(user_attrs={"stage": True})) is None


def test_stored_boxes_decode_in_coordinates_and_in_values() -> None:
    attrs = {
        "c2f_box_1": {"stage": 1, "top_trials": [4], "params": {
            "lr": {"low": -3.0, "high": -2.0}, "beta": {"low": -3.0, "high": -2.0},
            "act": {"choices": ["tanh"]}, "gone": {"low": 0.0, "high": 1.0}}},
        "c2f_box_x": {"params": {}},  # looks like a box, is not one
        "note": "unrelated",
    }
    records = stored_boxes(attrs)
    assert list(records) == [1] and records[1]["top_trials"] == [4]
    box = decode_box(records[1]["params"])
    assert box == {"lr": (-3.0, -2.0), "beta": (-3.0, -2.0), "act": ["tanh"], "gone": (0.0, 1.0)}
    values = box_values(box, SPACE)
    assert _close(values["lr"], (1e-3, 1e-2))
    assert _close(values["beta"], (0.99, 0.999))  # 1 - 10**x reverses the order: ascending again
    assert values["act"] == ["tanh"] and values["gone"] == (0.0, 1.0)  # not in the space: as is


def _c2f_db(url: str, new_name: str, old_name: str) -> None:
    """Two studies in one database: ``new`` run by the sampler now, ``old`` as studies stored
    before ``c2f:stage`` look (the stage in the user attribute ``stage``)."""
    sampler = CoarseToFineSampler({"lr": LR}, n_trials=6, stages=3, top_k=2, seed=0)
    new = optuna.create_study(storage=url, study_name=new_name, sampler=sampler)
    new.optimize(lambda t: abs(math.log10(t.suggest_float("lr", 1e-4, 1.0, log=True)) + 2),
                 n_trials=7)
    for attrs in ({"system_attrs": {STAGE_ATTR: 2}, "user_attrs": {"stage": 2}},  # counted once
                  {"user_attrs": {"stage": "warm-up"}}):  # a user's own attribute: no stage
        new.add_trial(optuna.trial.create_trial(
            params={"lr": 1e-2}, distributions={"lr": to_distribution(LR)}, value=0.0, **attrs))
    old = optuna.create_study(storage=url, study_name=old_name)
    for i in range(4):
        old.add_trial(optuna.trial.create_trial(
            params={"lr": 1e-2}, distributions={"lr": to_distribution(LR)}, value=float(i),
            user_attrs={"stage": i // 2}))
    old.set_user_attr("c2f_box_1", {"stage": 1, "positions": [2, 4], "top_trials": [0],
                                    "params": {"lr": {"low": -3.0, "high": -1.0}}})


def test_readers_show_the_stages_of_new_and_of_older_studies(storage_url: str) -> None:
    names = f"new-{uuid.uuid4().hex[:8]}", f"old-{uuid.uuid4().hex[:8]}"
    _c2f_db(storage_url, *names)
    new, old = (tuner.load_study(name, storage_url) for name in names)
    assert [t.stage for t in new.trials()] == [0, 0, 1, 1, 2, 2, 2, 2, None]
    assert new.stage_counts() == {0: 2, 1: 2, 2: 4}
    assert [i.trials for i in new.stages()] == [[0, 1], [2, 3], [4, 5, 6, 7]]
    assert [i.stage for i in new.stages(trials=False)] == [0, 1, 2]
    assert [t.number for t in new.trial_page(stage=2).trials] == [4, 5, 6, 7]
    assert new.param_table()["stage"].tolist()[:8] == [0, 0, 1, 1, 2, 2, 2, 2]
    assert [t.stage for t in old.trials()] == [0, 0, 1, 1]
    assert old.stage_counts() == {0: 2, 1: 2}
    assert [(i.stage, i.trials, i.top_trials) for i in old.stages()] == [
        (0, [0, 1], []), (1, [2, 3], [0])]
    assert old.stages()[1].scale_box == {"lr": (-3.0, -1.0)}
    assert old.trial_page(stage=1).total == 2 and old.trial(3).stage == 1


def test_the_coordinator_stores_the_stages_the_sampler_recorded(sqlite_url: str) -> None:
    """No coarse-to-fine code in the coordinator: the stage the sampler set in ``before_trial``
    reaches the database with the trial, and a lost worker's re-run keeps the stages in step."""
    from tests.conftest import open_coordinator, small_spec
    from tuner.execution import TrialResult

    spec = small_spec(trials=6, sampler={"kind": "coarse-to-fine", "stages": 3, "top_k": 2,
                                         "seed": 0})
    c = open_coordinator(spec, sqlite_url)
    a = c.next_trial("w0")
    c.next_trial("w1")
    c.worker_lost("w1")  # re-queued: its re-run takes its place in stage 0
    values = iter([0.5, 0.9, 0.7, 0.2, 0.8, 0.6])
    while a is not None:
        a = c.next_trial("w0", TrialResult(trial_id=a.trial_id, number=a.number,
                                           state="COMPLETE", value=next(values)))
    c.close()
    study = tuner.load_study(spec["study"], sqlite_url)
    stages = [(t.stage, t.reason) for t in study.trials()]
    assert stages == [(0, None), (0, "worker_lost"), (0, None), (1, None), (1, None), (2, None),
                      (2, None)]
    assert [i.stage for i in study.stages()] == [0, 1, 2] and study.stages()[1].top_trials
    plain = optuna.load_study(study_name=spec["study"], storage=sqlite_url).trials
    assert [trial_stage(t) for t in plain] == [s for s, _ in stages]
    assert all(STAGE_ATTR in t.system_attrs and "stage" not in t.user_attrs for t in plain)


def test_lost_trial_count_kept_incrementally_matches_a_full_scan() -> None:
    """The count of infrastructure-lost trials before a number, kept as the study grows (open
    trials looked at again, finished ones once), equals a scan of the whole study at every step,
    whatever order trials finish in."""
    import random

    import optuna

    from tuner._reasons import INFRA_REASONS
    from tuner.samplers._coarse_to_fine import _LostTrials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(7)
    study = optuna.create_study()
    counter = _LostTrials()
    running: list[optuna.trial.Trial] = []
    for step in range(400):
        if running and rng.random() < 0.5:  # finish one open trial, sometimes lost
            trial = running.pop(rng.randrange(len(running)))
            if rng.random() < 0.3:
                trial.set_user_attr("reason", rng.choice(sorted(INFRA_REASONS)))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, 1.0)
        else:
            running.append(study.ask())
        trials = study.get_trials(deepcopy=False)
        number = rng.randrange(len(trials) + 1)
        full = sum(1 for t in trials if t.number < number
                   and t.user_attrs.get("reason") in INFRA_REASONS)
        assert counter.before(trials, number) == full, step
