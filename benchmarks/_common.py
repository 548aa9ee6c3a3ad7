"""Helpers shared by the benchmarks: the digits study's search space, timed fits, summaries.

Everything here runs either in the benchmark's parent process (``run_timed``, ``summarize``,
``markdown_table``) or inside a measured child (``spec_values``, ``timed_fit``), so imports of
torch / tuner.training happen lazily inside the functions that need them.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "search_spaces" / "digits_mlp.yaml"
BATCH_SIZES = [32, 64, 128, 256, 512]


def spec_values() -> dict[str, Any]:
    """What the hand-written baselines copy from the spec: fixed params, epochs, dataset, metric."""
    from tuner.spec import load_spec

    spec = load_spec(SPEC)
    return {
        "fixed": dict(spec.fixed), "epochs": spec.epochs, "seed": spec.seed,
        "dataset": spec.dataset.model_dump(), "metric": spec.objective.metric,
        "direction": spec.objective.direction,
    }


def config_from(lr: float, one_minus_beta: float, batch_size: int, layers: int, dropout: float,
                fixed: dict[str, Any]) -> dict[str, Any]:
    """The same five tuned params as the spec (momentum drawn as 1-beta log-uniform)."""
    return {**fixed, "lr": lr, "momentum": 1.0 - one_minus_beta, "batch_size": int(batch_size),
            "layers": int(layers), "dropout": dropout}


def timed_fit(config: dict[str, Any], sv: dict[str, Any], number: int,
              on_epoch: Callable[[int, float], None]) -> dict[str, Any]:
    """Run ``fit_mlp`` like a tuner worker would and time it.

    The dataset is loaded (cached per process) *before* the clock starts, so ``compute_s`` is the
    training itself; ``hook_s`` is the time spent in the framework's per-epoch report call, which
    is framework overhead even though it happens inside ``fit_mlp``. A diverged trial is an
    outcome (``diverged: True``), as in tuner.
    """
    import torch
    from tuner._errors import Diverged
    from tuner.training import TrialContext, fit_mlp, load_dataset

    hook_s = 0.0

    def hook(epoch: int, value: float) -> bool:
        nonlocal hook_s
        t = time.perf_counter()
        on_epoch(epoch, value)
        hook_s += time.perf_counter() - t
        return False

    ctx = TrialContext(
        trial_number=number, device=torch.device("cpu"), epochs=sv["epochs"],
        objective_metric=sv["metric"], direction=sv["direction"], dataset=sv["dataset"],
        seed=None if sv["seed"] is None else sv["seed"] + number, prune_hook=hook,
    )
    load_dataset(sv["dataset"], ctx.device)
    t0 = time.perf_counter()
    try:
        out, diverged = fit_mlp(config, ctx), False
    except Diverged:
        out, diverged = {}, True
    fit_s = time.perf_counter() - t0
    return {"number": number, "value": out.get(sv["metric"]), "diverged": diverged,
            "fit_s": fit_s, "hook_s": hook_s, "compute_s": fit_s - hook_s,
            "threads": torch.get_num_threads()}


def ts(t: dt.datetime | None) -> float | None:
    """A naive local datetime (what Optuna stores) as a Unix timestamp."""
    return None if t is None else t.timestamp()


def run_timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` to completion; wall time is measured around the whole process."""
    load0 = os.getloadavg()[0]
    t0 = time.time()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})})
    t1 = time.time()
    return {"cmd": " ".join(cmd), "rc": rc, "t_proc_start": t0, "t_proc_end": t1, "wall_s": t1 - t0,
            "loadavg_1m_before": load0, "loadavg_1m_after": os.getloadavg()[0], "log": str(log)}


def summarize(run: dict[str, Any], trials: list[dict[str, Any]], concurrency: int,
              compute_s: float | None) -> dict[str, Any]:
    """Throughput and overhead numbers from per-trial ``start``/``end`` stamps (Unix seconds).

    overhead_ms = (span * concurrency - compute_s) / n, span = first start -> last end.
    """
    done = [t for t in trials if t.get("start") is not None and t.get("end") is not None]
    n = len(done)
    out: dict[str, Any] = {"finished": n, "wall_s": run["wall_s"], "rc": run["rc"],
                           "trials_per_min": 60.0 * n / run["wall_s"] if n else 0.0}
    values = [t["value"] for t in done if t.get("value") is not None and t["value"] == t["value"]]
    out["complete"] = len(values)
    out["best"] = max(values) if values else None
    if not n:
        return out
    first, last = min(t["start"] for t in done), max(t["end"] for t in done)
    out["startup_s"] = first - run["t_proc_start"]
    out["teardown_s"] = run["t_proc_end"] - last
    out["span_s"] = last - first
    out["compute_s"] = compute_s
    if compute_s is not None:
        out["overhead_ms"] = 1000.0 * (out["span_s"] * concurrency - compute_s) / n
    return out


def per_worker_gaps(trials: list[dict[str, Any]]) -> list[float]:
    """Seconds from a trial's end to the next start on the same worker (needs ``worker``)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        if t.get("worker") and t.get("start") is not None and t.get("end") is not None:
            by.setdefault(t["worker"], []).append(t)
    gaps = []
    for rows in by.values():
        rows.sort(key=lambda t: t["start"])
        gaps += [b["start"] - a["end"] for a, b in zip(rows, rows[1:])]
    return gaps


def quantiles(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    xs = sorted(xs)
    return {"min": xs[0], "median": statistics.median(xs), "p95": xs[int(0.95 * (len(xs) - 1))],
            "p99": xs[int(0.99 * (len(xs) - 1))], "max": xs[-1], "mean": statistics.fmean(xs),
            "n": len(xs)}


def fmt(x: Any, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown_table(rows: list[dict[str, Any]], ref: dict[str, Any] | None) -> str:
    head = ("| run | rc | finished (complete) | wall s | wall / plain | trials/min | "
            "trials/min / plain | best val_acc | start-up s | span s | sum compute s | "
            "overhead ms/trial |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['label']} | - | not run: {r['error']} |" + " |" * 9)
            continue
        wr = tr = None
        if ref and ref.get("wall_s") and ref.get("trials_per_min"):
            wr, tr = r["wall_s"] / ref["wall_s"], r["trials_per_min"] / ref["trials_per_min"]
        lines.append(
            f"| {r['label']} | {r['rc']} | {r['finished']} ({r['complete']}) | {fmt(r['wall_s'])} | "
            f"{fmt(wr, '.2f')}x | {fmt(r['trials_per_min'])} | {fmt(tr, '.2f')}x | "
            f"{fmt(r['best'], '.4f')} | {fmt(r.get('startup_s'))} | {fmt(r.get('span_s'))} | "
            f"{fmt(r.get('compute_s'))} | {fmt(r.get('overhead_ms'))} |")
    return "\n".join(lines)


def python() -> str:
    return sys.executable


def tuner_trials(name: str, url: str) -> list[dict[str, Any]]:
    """A tuner study's trials as the benchmarks use them: ``start``/``end`` (Unix seconds, the
    coordinator's ask/tell times), ``duration_s``, ``worker`` (tuner's own table) and the trial
    user attributes (``ray_node`` among them), read through the public API."""
    import tuner

    study = tuner.load_study(name, url)
    recs = study.trials()
    attrs = {t.number: dict(t.user_attrs) for t in study.to_optuna().get_trials(deepcopy=False)}
    workers: dict[int, str] = {}
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///"):]) as con:
            workers = dict(con.execute(
                "select t.number, t.worker from tuner_trials t join tuner_studies s "
                "on s.study_id = t.study_id where s.study_name = ?", (name,)).fetchall())
    return [{"number": r.number, "state": r.state, "value": r.value, "reason": r.reason,
             "params": r.params, "duration_s": r.duration_s, "start": ts(r.datetime_start),
             "end": ts(r.datetime_complete), "worker": workers.get(r.number), "host": r.host,
             "user_attrs": attrs.get(r.number, {})} for r in recs]
