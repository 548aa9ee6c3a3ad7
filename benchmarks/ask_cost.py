"""Ask cost: how long one ``study.ask`` takes as a study grows, for tuner's samplers.

Usage (from the repo root)::

    python benchmarks/ask_cost.py [--sizes 1000,10000,100000] [--kinds random,coarse-to-fine,tpe]
        [--asks 200] [--case-budget-s 20] [--tpe-cap-s 2.0] [--no-profile]
    python benchmarks/ask_cost.py --quick        # sizes 1000,10000, 50 asks: under a minute

The coordinator (``tuner/execution/_coordinator.py``) samples against an in-memory Optuna study.
Random, grid and TPE asks run on its asker thread, off its lock, a few trials ahead of demand
(``ask_blocking.py`` measures what that changed); coarse-to-fine and packs ask under the lock.
Either way one ask's cost bounds how fast trials can be handed out. This benchmark builds that study exactly as ``Coordinator.__init__`` does: the spec
``search_spaces/digits_mlp.yaml`` (``tuner.load_spec``, with ``sampler.kind`` set to each kind
and ``trials`` to N + the asks, as a study run to that size would have), ``dists =
{name: to_distribution(param)}``, ``optuna.create_study(storage=InMemoryStorage(),
sampler=create_sampler(spec), pruner=create_pruner(spec), direction=..., study_name=...)``.

It is pre-filled (``optuna.trial.create_trial`` + ``study.add_trials``) with N finished trials
shaped like a real run's: params drawn on each parameter's own scale (``tuner.samplers.draw``),
about 87% COMPLETE with a 10-epoch ``val_accuracy`` curve as intermediate values, 8% PRUNED
(partial curve, ``reason: pruned``), 4% FAIL ``diverged``, 0.5% FAIL ``worker_lost`` (an infra
failure: coarse-to-fine skips those when it numbers positions), user attributes ``ray_node`` and
``epochs_run``, and for coarse-to-fine the ``c2f:stage`` system attribute its ``before_trial``
records. Then, one at a time (the lock serialises the coordinator's asks), K times:

- ``ask``: ``study.ask(dists)``, what ``Coordinator._start`` / ``_ask_ahead`` call;
- ``finish``: 10 x ``trial.report`` + ``study.tell(trial, value)``, what ``_finish`` does for
  a COMPLETE result whose curve was not reported during training;
- the coordinator's own in-memory bookkeeping around an ask (the database writes, which happen
  on the writer thread, are not included):
  ``_start`` extras: ``get_trial_id_from_study_id_trial_number``, ``_sync_study_attrs`` (reads
  ``study.user_attrs``), ``get_trial`` and the ``NewTrial`` it builds (params, distributions,
  user attributes, a deep copy of the system attributes);
  ``_ask_ahead`` extras (packs): the same look-ups, ``trial_stage``, ``pack_key``, ``pack_widths``;
  ``_stage_ends`` (packs, before every ask ahead): ``next_stage(sampler, study)`` and
  ``trial_stage`` of 8 held trials.

Each case (sampler, N) runs in its own process, so the trials' memory layout does not depend on
which case ran before (it did: one case measured 3x faster right after a bigger one was freed).
That process first runs a few untimed rounds on a 20-trial study, so first-use imports (scipy's
Sobol engine, TPE's internals) are not counted, as in a coordinator that has been running. The
first ask of each case is timed on its own (coarse-to-fine computes and stores its stage boxes
then, a one-time cost per stage boundary) and left out of the median and p95. K is ``--asks``,
fewer when an ask is slow: the second round's time sets K so that a case takes about
``--case-budget-s`` (at least 5 asks). TPE is not measured at sizes past the first where one ask
takes over ``--tpe-cap-s``: the table says so. The garbage collector stays on, as in the
coordinator (one full collection after the fill, before timing).

With profiling on, one ask at the largest measured size of each kind is run under ``cProfile``
(several asks for the fast kinds); the functions with the most own time, and those with the most
cumulative time outside Optuna's ``Study.ask`` / ``Trial`` frames, are listed.

Goal (from the issue): at most 5 ms per ask at 100k trials for random and coarse-to-fine. The
machine is shared (2 cores): the 1-minute load average is recorded around every case.

Writes ``benchmarks/results/ask_cost.md`` and ``ask_cost.json``.
"""

from __future__ import annotations

import argparse
import bisect
import copy
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SPEC = ROOT / "search_spaces" / "digits_mlp.yaml"
KINDS = ["random", "coarse-to-fine", "tpe"]
GOAL_MS = 5.0
GOAL_N = 100_000
GOAL_KINDS = ("random", "coarse-to-fine")
HELD = 8
"""Trials held ahead when ``_stage_ends`` is timed (a pack of 4 asks ahead until a group of 4 of
similar width forms: a few to a few dozen)."""
EPOCHS = 10
WRAPPERS = ("optuna/study/", "optuna/trial/_trial.py", "~:0(<method 'disable'")
"""Profile frames left out of the cumulative view: every ask passes through them."""
PARTS = ("ask", "start", "stage_ends", "ask_ahead", "finish")


# --- the study ---------------------------------------------------------------------------------
def build_spec(kind: str, n: int, asks: int) -> Any:
    from tuner import load_spec

    return load_spec(SPEC, **{"sampler.kind": kind, "trials": n + asks + 1})


def make_trials(spec: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` finished trials shaped like a real run's (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState

    from tuner.samplers import STAGE_ATTR, create_sampler, draw
    from tuner.spec import to_distribution

    rng = np.random.default_rng(seed)
    dists = {name: to_distribution(p) for name, p in spec.params.items()}
    c2f = spec.sampler.kind == "coarse-to-fine"
    starts: list[int] = []
    if c2f:
        split = create_sampler(spec).trials_per_stage  # type: ignore[attr-defined]
        starts = [sum(split[:s]) for s in range(len(split))]
    out, lost = [], 0
    for number in range(n):
        params = {name: draw(p, rng) for name, p in spec.params.items()}
        final = float(np.clip(rng.normal(0.85, 0.1), 0.05, 0.995))
        curve = {e: float(final - 0.4 * np.exp(-e / 2.5) + rng.normal(0, 0.01))
                 for e in range(1, EPOCHS + 1)}
        roll = rng.random()
        user: dict[str, Any] = {"ray_node": f"node-{number % 8:02d}"}
        state, value, run, reason = TrialState.COMPLETE, curve[EPOCHS], EPOCHS, None
        if roll < 0.005:
            state, value, reason = TrialState.FAIL, None, "worker_lost"
            run = int(rng.integers(0, EPOCHS))
        elif roll < 0.045:
            state, value, reason = TrialState.FAIL, None, "diverged"
            run = int(rng.integers(1, EPOCHS))
        elif roll < 0.125:
            state, value, reason = TrialState.PRUNED, None, "pruned"
            run = int(rng.integers(2, EPOCHS))
        if reason:
            user["reason"] = reason
        user["epochs_run"] = run
        system: dict[str, Any] = {}
        if c2f:
            system[STAGE_ATTR] = max(bisect.bisect_right(starts, number - lost) - 1, 0)
        if reason == "worker_lost":
            lost += 1
        out.append(optuna.trial.create_trial(
            state=state, value=value, params=params, distributions=dists,
            intermediate_values={e: v for e, v in curve.items() if e <= run},
            user_attrs=user, system_attrs=system))
    return out


def build_study(spec: Any, trials: list[Any]) -> tuple[Any, Any, dict[str, Any], int]:
    """The coordinator's in-memory study (``Coordinator.__init__``), filled with ``trials``."""
    import optuna

    from tuner.samplers import create_pruner, create_sampler
    from tuner.spec import to_distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {n: to_distribution(p) for n, p in spec.params.items()}
    storage = optuna.storages.InMemoryStorage()
    sampler = create_sampler(spec)
    study = optuna.create_study(
        storage=storage, sampler=sampler, pruner=create_pruner(spec),
        direction=spec.objective.direction, study_name=spec.study)
    sid = storage.get_study_id_from_name(spec.study)
    study.add_trials(trials)
    return study, sampler, dists, sid


# --- the coordinator's bookkeeping, in memory (what _start/_ask_ahead/_stage_ends do) ------------
class Bookkeeping:
    def __init__(self, spec: Any, study: Any, sampler: Any, sid: int) -> None:
        self.spec, self.study, self.sampler, self.sid = spec, study, sampler, sid
        self.storage = study._storage
        self.attrs: dict[str, Any] = {}
        self.held: list[int] = []
        self.seq = 0
        self.kind = spec.trainable.removeprefix("builtin:")

    def sync_study_attrs(self) -> None:
        for key, value in self.study.user_attrs.items():
            if self.attrs.get(key) != value:
                self.attrs[key] = value  # the coordinator hands it to the writer here

    def start(self, trial: Any) -> Any:
        from optuna.trial import TrialState

        from tuner.storage import _optuna as rows

        mem_id = self.storage.get_trial_id_from_study_id_trial_number(self.sid, trial.number)
        self.sync_study_attrs()
        frozen = self.storage.get_trial(mem_id)
        self.seq += 1
        tag = f"bench-{self.seq}"
        return rows.NewTrial(
            uid=tag, state=TrialState.RUNNING, started=rows.utcnow(), params=dict(frozen.params),
            distributions=dict(frozen.distributions), user_attrs=dict(frozen.user_attrs),
            system_attrs={rows.RUN_KEY: tag, **copy.deepcopy(frozen.system_attrs)})

    def ask_ahead(self, trial: Any) -> tuple[Any, ...]:
        from tuner.samplers import trial_stage
        from tuner.training._pack_key import pack_key, pack_widths

        mem_id = self.storage.get_trial_id_from_study_id_trial_number(self.sid, trial.number)
        stage = trial_stage(self.storage.get_trial(mem_id))
        self.sync_study_attrs()
        config = {**self.spec.fixed, **trial.params}
        key = pack_key(config, self.kind)
        widths = pack_widths(config, self.kind) or (0,)
        self.held = (self.held + [mem_id])[-HELD:]
        return (None if key is None else (key, stage), max(widths, default=0))

    def stage_ends(self) -> bool:
        from tuner.samplers import next_stage, trial_stage

        if not self.held:
            return False
        stage = next_stage(self.sampler, self.study)
        return stage is not None and any(
            trial_stage(self.storage.get_trial(i)) != stage for i in self.held)


# --- measuring ---------------------------------------------------------------------------------
def q(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    s = sorted(xs)
    return {"n": len(s), "median": statistics.median(s),
            "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
            "max": s[-1], "mean": statistics.fmean(s)}


def one_round(study: Any, dists: dict[str, Any], book: Bookkeeping, rng: np.random.Generator,
              times: dict[str, list[float]]) -> None:
    pc = time.perf_counter
    t0 = pc()
    trial = study.ask(dists)
    t1 = pc()
    book.start(trial)
    t2 = pc()
    book.stage_ends()
    t3 = pc()
    book.ask_ahead(trial)
    t4 = pc()
    final = float(rng.uniform(0.5, 0.99))
    for e in range(1, EPOCHS + 1):
        trial.report(final - 0.3 * np.exp(-e / 2.5), e)
    study.tell(trial, final)
    t5 = pc()
    for key, value in (("ask", t1 - t0), ("start", t2 - t1), ("stage_ends", t3 - t2),
                       ("ask_ahead", t4 - t3), ("finish", t5 - t4)):
        times[key].append(1000.0 * value)


def measure(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    t_case = time.perf_counter()
    spec = build_spec(kind, n, args.asks)
    t = time.perf_counter()
    trials = make_trials(spec, n)
    make_s = time.perf_counter() - t
    t = time.perf_counter()
    study, sampler, dists, sid = build_study(spec, trials)
    fill_s = time.perf_counter() - t
    del trials
    gc.collect()
    book = Bookkeeping(spec, study, sampler, sid)
    rng = np.random.default_rng(1)
    first: dict[str, list[float]] = {k: [] for k in PARTS}
    one_round(study, dists, book, rng, first)
    first_ask = first["ask"][0]
    # a second probe: the first ask of coarse-to-fine also computes the stage boxes
    probe: dict[str, list[float]] = {k: [] for k in first}
    one_round(study, dists, book, rng, probe)
    per_round = sum(v[0] for v in probe.values())
    out: dict[str, Any] = {"kind": kind, "n": n, "make_trials_s": make_s, "fill_s": fill_s,
                           "first_ask_ms": first_ask, "load_before": load_before}
    if kind == "tpe" and probe["ask"][0] > 1000.0 * args.tpe_cap_s:
        out.update(capped=True, asks=1, times={k: q(v) for k, v in probe.items()},
                   samples={k: v for k, v in probe.items()})
    else:
        k = max(5, min(args.asks, int(1000.0 * args.case_budget_s / max(per_round, 1e-3))))
        times = {key: list(v) for key, v in probe.items()}
        for _ in range(k - 1):
            one_round(study, dists, book, rng, times)
        out.update(capped=False, asks=k, times={key: q(v) for key, v in times.items()},
                   samples={key: [round(x, 4) for x in v] for key, v in times.items()})
    out["case_s"] = time.perf_counter() - t_case
    out["load_after"] = os.getloadavg()[0]
    out["profile"] = None
    if args.profile_this or out["capped"]:
        out["profile"] = profile(study, dists, 1 if kind == "tpe" else args.profile_asks)
    return out


def child(args: argparse.Namespace) -> None:
    """One case in its own process: the trials' memory layout does not depend on what ran
    before (it did: the same case measured 3x faster right after a bigger one was freed)."""
    warm_up(args.kind)
    Path(args.out).write_text(json.dumps(measure(args.kind, args.n, args), default=str))


def run_case(kind: str, n: int, args: argparse.Namespace, tmp: Path, profile_this: bool
             ) -> dict[str, Any]:
    out = tmp / f"{kind}-{n}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--kind", kind, "--n", str(n),
           "--out", str(out), "--asks", str(args.asks), "--case-budget-s", str(args.case_budget_s),
           "--tpe-cap-s", str(args.tpe_cap_s), "--profile-asks", str(args.profile_asks)]
    if profile_this:
        cmd.append("--profile-this")
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not out.exists():
        return {"kind": kind, "n": n, "error": f"rc {proc.returncode}: "
                + (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    r = json.loads(out.read_text())
    r["process_s"] = wall
    return r


def warm_up(kind: str) -> None:
    """A few untimed rounds on a small study: first-use imports are not the study's cost."""
    spec = build_spec(kind, 20, 5)
    study, sampler, dists, sid = build_study(spec, make_trials(spec, 20))
    book = Bookkeeping(spec, study, sampler, sid)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in PARTS}
    for _ in range(5):
        one_round(study, dists, book, rng, times)


def profile(study: Any, dists: dict[str, Any], asks: int, top: int = 8) -> dict[str, Any]:
    """Profile ``asks`` asks (each told right after, outside the profile); the functions with the
    most own time, and the cumulative time of the ones that hold it."""
    prof = cProfile.Profile()
    for _ in range(asks):
        prof.enable()
        trial = study.ask(dists)
        prof.disable()
        study.tell(trial, 0.5)
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, nc, tt, ct, _) in stats.stats.items():  # type: ignore
        rows.append({"function": f"{_short(file)}:{line}({func})", "calls_per_ask": nc / asks,
                     "own_ms_per_ask": 1000.0 * tt / asks, "cum_ms_per_ask": 1000.0 * ct / asks,
                     "own_share": tt / total if total else 0.0})
    by_own = sorted(rows, key=lambda r: -r["own_ms_per_ask"])[:top]
    # below Optuna's ask machinery (Study.ask, Trial.__init__, suggest_*): the sampler's frames
    inner = [r for r in rows if not r["function"].startswith(WRAPPERS)]
    by_cum = sorted(inner, key=lambda r: -r["cum_ms_per_ask"])[:top]
    return {"asks": asks, "total_ms_per_ask": 1000.0 * total / asks, "by_own": by_own,
            "by_cum": by_cum}


def _short(file: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# --- the report ----------------------------------------------------------------------------------
def fmt(x: Any, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def verdict(r: dict[str, Any]) -> str:
    if r["kind"] not in GOAL_KINDS or r["n"] != GOAL_N:
        return ""
    a = r["times"]["ask"]
    if a["p95"] <= GOAL_MS:
        return "**met** (median and p95)"
    if a["median"] <= GOAL_MS:
        return "met on the median, **not on p95**"
    return "**not met**"


def report(rows: list[dict[str, Any]], skipped: list[dict[str, Any]], meta: dict[str, Any],
           args: argparse.Namespace) -> str:
    lines = [
        "# Ask cost as a study grows", "",
        (f"`{meta['command']}` · {meta['date']} · {meta['machine']} · Python {meta['python']} · "
         f"optuna {meta['optuna']} · numpy {meta['numpy']} · scipy {meta['scipy']}"), "",
        (f"Load average (1/5/15 min) at start: {'/'.join(f'{x:.2f}' for x in meta['load_start'])}; "
         f"at end: {'/'.join(f'{x:.2f}' for x in meta['load_end'])}. Whole run: "
         f"{meta['wall_s']:.0f} s."), "",
        ("The coordinator's in-memory study, built as `Coordinator.__init__` builds it from "
         "`search_spaces/digits_mlp.yaml` (5 params) with `sampler.kind` set per row, pre-filled "
         "with N finished trials (87% COMPLETE with a 10-epoch curve, 8% PRUNED, 4.5% FAIL), one "
         "process per case; then "
         "K rounds of ask -> coordinator bookkeeping -> 10 reports + tell, one at a time as under "
         "the coordinator's lock. Times in ms per call; the first ask of each case is shown on its "
         "own and left out of median/p95. x 1k = median ask at N / median ask at 1k trials. "
         "Below ~0.2 ms, run-to-run differences of ~0.1 ms are noise (cache state, what ran "
         "between two asks): random's rows measured 0.09 to 0.21 ms at every N across "
         "repeated runs."), "",
        f"Goal: ask <= {GOAL_MS:g} ms at {GOAL_N:,} trials for random and coarse-to-fine.", "",
        "| sampler | N trials | K asks | ask median | ask p95 | ask max | x 1k | first ask | "
        "10 reports + tell median / p95 | fill s | load 1m before -> after | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    base = {r["kind"]: r["times"]["ask"]["median"] for r in rows if r["n"] == min(args.sizes)}
    for r in rows:
        a, f = r["times"]["ask"], r["times"]["finish"]
        ratio = a["median"] / base[r["kind"]] if r["kind"] in base and base[r["kind"]] else None
        notes = []
        if r["kind"] not in GOAL_KINDS:
            notes.append("no goal")
        if r["capped"]:
            notes.append(f"one ask {a['median'] / 1000:.1f} s > {args.tpe_cap_s:g} s: "
                         "capped, larger N not measured")
        elif r["kind"] == "tpe":
            notes.append(f"under the {args.tpe_cap_s:g} s cap")
        if r["asks"] < args.asks and not r["capped"]:
            notes.append(f"K cut to {r['asks']} (~{args.case_budget_s:g} s per case)")
        note = "; ".join(notes)
        lines.append(
            f"| {r['kind']} | {r['n']:,} | {r['asks']} | {fmt(a['median'])} | {fmt(a['p95'])} | "
            f"{fmt(a['max'])} | {fmt(ratio, '.1f')}x | {fmt(r['first_ask_ms'])} | "
            f"{fmt(f['median'])} / {fmt(f['p95'])} | {r['fill_s']:.1f} | "
            f"{r['load_before']:.2f} -> {r['load_after']:.2f} | "
            f"{'; '.join(x for x in (verdict(r), note) if x)} |")
    for s in skipped:
        lines.append(f"| {s['kind']} | {s['n']:,} | - | not measured: {s['why']} |" + " |" * 8)
    lines += [
        "", "## The coordinator's own bookkeeping per ask (in memory; database writes excluded)",
        "",
        ("`_start` extras: the trial's look-ups, `_sync_study_attrs`, the `NewTrial` it builds. "
         "`_ask_ahead` extras (packs): the same look-ups, `trial_stage`, `pack_key`, "
         "`pack_widths`. "
         f"`_stage_ends` (packs, before each ask ahead): `next_stage` + `trial_stage` of {HELD} "
         "held trials. ms per call, median / p95."), "",
        "| sampler | N trials | `_start` extras | `_ask_ahead` extras | `_stage_ends` | "
        "ask + `_start` extras, median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["times"]
        lines.append(
            f"| {r['kind']} | {r['n']:,} | {fmt(t['start']['median'], '.3f')} / "
            f"{fmt(t['start']['p95'], '.3f')} | {fmt(t['ask_ahead']['median'], '.3f')} / "
            f"{fmt(t['ask_ahead']['p95'], '.3f')} | {fmt(t['stage_ends']['median'], '.3f')} / "
            f"{fmt(t['stage_ends']['p95'], '.3f')} | "
            f"{fmt(t['ask']['median'] + t['start']['median'])} |")
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        lines += ["", "## Where one ask's time goes (cProfile, largest measured N per sampler)", "",
                  ("The profiler slows many small calls more than few large ones (an ask takes "
                   "about twice as long under it): read shares, not absolute times. TPE is Optuna "
                   "5's default for `TPESampler(constant_liar=True)` on one objective: "
                   "multivariate, so its work is in `sample_relative`."), ""]
        for r in profiled:
            p = r["profile"]
            lines += [(f"**{r['kind']}, {r['n']:,} trials** ({p['asks']} asks profiled, "
                       f"{p['total_ms_per_ask']:.2f} ms per ask under the profiler). "
                       "Most own time:"),
                      "", "| function | calls per ask | own ms per ask | share | cum ms per ask |",
                      "|---|---:|---:|---:|---:|"]
            for f in p["by_own"][:6]:
                lines.append(f"| `{f['function']}` | {f['calls_per_ask']:,.0f} | "
                             f"{f['own_ms_per_ask']:.2f} | {100 * f['own_share']:.0f}% | "
                             f"{f['cum_ms_per_ask']:.2f} |")
            lines += ["", ("Most cumulative time (each includes what it calls), Optuna's "
                           "`Study.ask` / `Trial` frames left out:"), "",
                      "| function | calls per ask | cum ms per ask | share of the ask |",
                      "|---|---:|---:|---:|"]
            for f in p["by_cum"][:6]:
                lines.append(f"| `{f['function']}` | {f['calls_per_ask']:,.0f} | "
                             f"{f['cum_ms_per_ask']:.2f} | "
                             f"{100 * f['cum_ms_per_ask'] / p['total_ms_per_ask']:.0f}% |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="pre-filled trial counts N")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--asks", type=int, default=200, help="asks per case (fewer when slow)")
    ap.add_argument("--case-budget-s", type=float, default=20.0,
                    help="about this long per case: sets K for slow asks")
    ap.add_argument("--tpe-cap-s", type=float, default=2.0,
                    help="TPE: stop growing N once one ask takes longer")
    ap.add_argument("--profile-asks", type=int, default=20,
                    help="asks profiled for the fast kinds (TPE: 1)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="sizes 1000,10000 and 50 asks")
    ap.add_argument("--results-name", default="ask_cost",
                    help="write benchmarks/results/NAME.md and .json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--profile-this", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.sizes, args.asks = "1000,10000", 50
    args.sizes = [int(x) for x in str(args.sizes).split(",")]
    kinds = [k.strip() for k in args.kinds.split(",")]

    import optuna
    import scipy

    t_run = time.perf_counter()
    meta: dict[str, Any] = {
        "command": " ".join(["python benchmarks/ask_cost.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": (f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores, "
                    "shared machine"),
        "python": platform.python_version(), "optuna": optuna.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "load_start": list(os.getloadavg()),
    }
    tmp = Path(tempfile.mkdtemp(prefix="ask_cost_", dir="/tmp"))
    rows, skipped = [], []
    for kind in kinds:
        capped_at = None
        for n in args.sizes:
            if capped_at is not None:
                skipped.append({"kind": kind, "n": n,
                                "why": f"TPE capped: one ask took over {args.tpe_cap_s:g} s at "
                                       f"{capped_at:,} trials"})
                continue
            print(f"{kind} N={n:,} ...", flush=True)
            r = run_case(kind, n, args, tmp, not args.no_profile and n == args.sizes[-1])
            if r.get("error"):
                print(f"  failed: {r['error']}", flush=True)
                skipped.append({"kind": kind, "n": n, "why": r["error"]})
                continue
            a = r["times"]["ask"]
            print(f"  K={r['asks']} ask median {a['median']:.2f} ms p95 {a['p95']:.2f} ms, first "
                  f"{r['first_ask_ms']:.1f} ms, fill {r['fill_s']:.1f} s, "
                  f"process {r['process_s']:.1f} s, load {r['load_after']:.2f}", flush=True)
            if r["profile"]:
                print("  profile: " + "; ".join(f"{f['function']} {f['own_ms_per_ask']:.2f} ms"
                                                 for f in r["profile"]["by_own"][:3]), flush=True)
            if r["capped"]:
                capped_at = n
            rows.append(r)
    meta["load_end"] = list(os.getloadavg())
    meta["wall_s"] = time.perf_counter() - t_run
    text = report(rows, skipped, meta, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.md").write_text(text)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(
        {"meta": meta, "args": vars(args), "goal": {"ms": GOAL_MS, "n": GOAL_N,
                                                     "kinds": list(GOAL_KINDS)},
         "verdicts": {r["kind"]: verdict(r) for r in rows if verdict(r)},
         "scratch": str(tmp), "cases": rows, "skipped": skipped}, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
