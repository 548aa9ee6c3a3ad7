"""Pruning: the same study with no pruner, median, percentile, ASHA and Hyperband, each given the
same wall-time budget; trials per hour and the best value reached within it.

Usage (from the repo root)::

    python benchmarks/pruning.py [--budget-s 100] [--seeds 0 1] [--epochs 24]

The study (written to a temporary spec): digits, ``builtin:mlp``, maximise ``val_accuracy``,
random sampler, 2 workers x 1 CPU, ``--epochs`` epochs per trial, and a deliberately wide space in
which most configurations are bad (lr 1e-5..10 on a log scale with SGD or Adam: too small learns
nothing in time, too large diverges; batch sizes 32..512; 1-3 layers of 16-256 units; dropout up
to 0.5), as a first, coarse pass over an unfamiliar problem is. Pruners:

- ``median``: ``n_startup_trials: 5, n_warmup_steps: 2``
- ``percentile``: keep the best 25% (``percentile: 25``), same start-up and warm-up
- ``asha``: ``min_resource: 1, reduction_factor: 3`` (rungs at epochs 1, 3, 9)
- ``hyperband``: ``min_resource: 1, reduction_factor: 3, max_resource: epochs`` (3 brackets)

Each run is ``tuner submit`` in its own process (its own local Ray) with an unreachable trial
count. The clock starts at the first trial's start (so Ray's start-up is not in the budget), and
the process gets SIGTERM (tuner's clean stop) once ``--budget-s`` seconds have passed; only trials
that *finished* inside the window count. With one sampler seed every run draws the same sequence
of configurations (trial n gets the n-th draw), so a pruner that gets further through it sees a
superset of what the unpruned run saw, unless it pruned the eventual winner: that is what
"best value at equal wall time" measures. Ratios are to the no-pruner run of the same seed, in the
same invocation. The machine is shared: each run's 1-minute load average is recorded.

Writes ``benchmarks/results/pruning.md`` and ``pruning.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PRUNERS: dict[str, dict[str, Any]] = {
    "none": {"kind": "none"},
    "median": {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 2},
    "percentile": {"kind": "percentile", "percentile": 25, "n_startup_trials": 5,
                   "n_warmup_steps": 2},
    "asha": {"kind": "asha", "min_resource": 1, "reduction_factor": 3},
    "hyperband": {"kind": "hyperband", "min_resource": 1, "reduction_factor": 3},
}
GOAL_RATIO = 2.0


def spec(name: str, pruner: dict[str, Any], seed: int, epochs: int) -> dict[str, Any]:
    return {
        "study": name, "trainable": "builtin:mlp",
        "dataset": {"name": "digits", "validation_fraction": 0.2, "normalize": "zscore"},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": {"kind": "random", "seed": seed}, "pruner": pruner,
        "trials": 1_000_000, "epochs": epochs,
        "resources": {"workers": 2, "cpus_per_trial": 1, "gpus_per_trial": 0},
        "params": {
            "lr": {"type": "float", "low": 1e-5, "high": 10.0, "scale": "log"},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            "batch_size": {"type": "int", "low": 32, "high": 512, "scale": "pow2"},
            "layers": {"type": "int", "low": 1, "high": 3},
            "hidden_units": {"type": "int", "low": 16, "high": 256, "scale": "pow2"},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
        "fixed": {"momentum": 0.9, "activation": "relu"},
    }


def _first_start(db: Path, name: str) -> float | None:
    """Unix time of the study's first trial start (naive local time, as Optuna stores it)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as con:
            row = con.execute(
                "select min(t.datetime_start) from trials t join studies s on s.study_id = "
                "t.study_id where s.study_name = ?", (name,)).fetchone()
    except sqlite3.Error:
        return None
    return None if not row or row[0] is None else dt.datetime.fromisoformat(row[0]).timestamp()


def run_one(key: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    name = f"prune-{key}-s{seed}"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec(name, PRUNERS[key], seed, args.epochs)))
    db = tmp / "bench.db"
    exe = str(Path(sys.executable).parent / "tuner")
    cmd = [exe, "submit", str(path), "--storage", f"sqlite:///{db}", "--quiet"]
    load0 = os.getloadavg()[0]
    t_proc = time.time()
    with open(tmp / f"{name}.log", "w") as log:
        # RAY_ADDRESS=local: a fresh local Ray per run, never one another process `ray start`ed
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "RAY_ADDRESS": "local"})
        start, loads, next_load = None, [], 0.0
        try:
            while proc.poll() is None:
                start = start or _first_start(db, name)
                now = time.time()
                if start is not None and now >= start + args.budget_s:
                    break
                if start is not None and now >= next_load:  # the load *during* the window
                    loads.append(os.getloadavg()[0])
                    next_load = now + 5.0
                time.sleep(0.2)
        finally:  # also when this benchmark is stopped: never leave a study running behind
            proc.send_signal(signal.SIGTERM)  # tuner's clean stop: running trials -> interrupted
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    return {"key": key, "seed": seed, "study": name, "rc": rc, "first_start": start,
            "startup_s": None if start is None else start - t_proc,
            "loadavg_before": load0, "loadavg_after": os.getloadavg()[0],
            "loadavg_window": statistics.fmean(loads) if loads else None,
            **collect(db, name, start, args.budget_s)}


def collect(db: Path, name: str, start: float | None, budget_s: float) -> dict[str, Any]:
    """Trials that finished inside [start, start + budget] and what they reached."""
    import tuner

    if start is None:
        return {"error": "no trial started"}
    end = start + budget_s
    rows = []
    for t in tuner.load_study(name, f"sqlite:///{db}").trials():
        done = None if t.datetime_complete is None else t.datetime_complete.timestamp()
        if done is None or done > end or t.state not in ("COMPLETE", "PRUNED", "FAIL"):
            continue
        if t.reason in ("interrupted", "worker_lost"):
            continue
        rows.append({"number": t.number, "state": t.state, "value": t.value, "done_s": done - start,
                     "epochs_run": t.epochs_run, "reason": t.reason, "params": t.params})
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    best_at = {}
    for frac in (0.25, 0.5, 0.75, 1.0):
        values = [r["value"] for r in complete if r["done_s"] <= frac * budget_s]
        best_at[str(frac)] = max(values) if values else None
    best = max(complete, key=lambda r: r["value"]) if complete else None
    return {
        "finished": len(rows), "complete": len(complete),
        "pruned": sum(r["state"] == "PRUNED" for r in rows),
        "failed": sum(r["state"] == "FAIL" for r in rows),
        "trials_per_hour": 3600.0 * len(rows) / budget_s,
        "epochs_trained": sum(r["epochs_run"] or 0 for r in rows),
        "mean_epochs_per_trial": statistics.fmean(r["epochs_run"] or 0 for r in rows) if rows else None,
        "best": None if best is None else best["value"],
        "best_trial": None if best is None else {k: best[k] for k in ("number", "params", "done_s")},
        "best_at_fraction": best_at,
        "trials": [{k: r[k] for k in ("number", "state", "value", "done_s", "epochs_run")}
                   for r in rows],
    }


def _f(x: Any, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    import optuna
    import ray
    import torch

    lines = [
        f"# Pruning: the same study under an equal wall-time budget ({args.budget_s:.0f} s each)", "",
        (f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · 2 cores, shared · torch "
        f"{torch.__version__} · optuna {optuna.__version__} · ray {ray.__version__} · digits, "
        f"builtin:mlp, {args.epochs} epochs, random sampler, 2 workers x 1 CPU, seeds "
        f"{', '.join(map(str, args.seeds))}"), "",
        ("| seed | pruner | finished (complete / pruned / failed) | trials/hour | vs none | "
         "epochs/trial | trials per 1000 epochs, vs none | best val_acc | best - none | "
         "best at 25% / 50% / 75% of the budget | start-up s | load avg in window |"),
        "|" + "---|" * 12,
    ]
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], {})[r["key"]] = r
    for seed, rs in by_seed.items():
        ref = rs.get("none", {})
        for key, r in rs.items():
            if r.get("error"):
                lines.append(f"| {seed} | {key} | not measured: {r['error']} |" + " |" * 9)
                continue
            ratio = r["trials_per_hour"] / ref["trials_per_hour"] if ref.get("trials_per_hour") else None
            diff = r["best"] - ref["best"] if r.get("best") is not None and ref.get("best") is not None else None
            at = " / ".join(_f(r["best_at_fraction"][f], ".4f") for f in ("0.25", "0.5", "0.75"))
            per_k = 1000 * r["finished"] / max(r["epochs_trained"], 1)
            ref_k = 1000 * ref["finished"] / max(ref["epochs_trained"], 1) if ref.get("finished") else None
            lines.append(
                f"| {seed} | {key} | {r['finished']} ({r['complete']} / {r['pruned']} / "
                f"{r['failed']}) | {r['trials_per_hour']:,.0f} | {_f(ratio, '.2f')}x | "
                f"{_f(r['mean_epochs_per_trial'])} | {per_k:.0f}, "
                f"{_f(per_k / ref_k if ref_k else None, '.2f')}x | {_f(r['best'], '.4f')} | "
                f"{_f(diff, '+.4f')} | {at} | {_f(r['startup_s'])} | "
                f"{_f(r['loadavg_window'])} |")
    lines += ["", ("finished = COMPLETE + PRUNED + FAIL (diverged) trials that ended inside the window "
              "(the ones running at its end are not counted); best = best COMPLETE val_accuracy "
              "inside the window."), "", "## Goal", ""]
    met_all = True
    for seed, rs in by_seed.items():
        a, n = rs.get("asha", {}), rs.get("none", {})
        if not a.get("trials_per_hour") or not n.get("trials_per_hour"):
            met_all = False
            continue
        ratio = a["trials_per_hour"] / n["trials_per_hour"]
        no_loss = a["best"] is not None and n["best"] is not None and a["best"] >= n["best"]
        met = ratio >= GOAL_RATIO and no_loss
        met_all &= met
        lines.append(f"- seed {seed}: ASHA **{ratio:.2f}x** trials/hour (goal >= {GOAL_RATIO}x), "
                     f"best {_f(a['best'], '.4f')} vs {_f(n['best'], '.4f')} without pruning "
                     f"(goal: no loss): **{'MET' if met else 'NOT MET'}**")
    lines += ["", f"Overall: **{'MET' if met_all else 'NOT MET'}** for every seed measured."]
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=100.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=list(PRUNERS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # kill PID stops the running study too
    tmp = Path(tempfile.mkdtemp(prefix="pruning_"))
    print(f"scratch: {tmp}", flush=True)
    runs = []
    for i, seed in enumerate(args.seeds):
        # alternate the order, so that a drift in the shared machine's load favours no pruner
        for key in args.pruners if i % 2 == 0 else list(reversed(args.pruners)):
            print(f"seed {seed}: {key} ...", flush=True)
            r = run_one(key, seed, args, tmp)
            print(f"  finished {r.get('finished')} (pruned {r.get('pruned')}), best "
                  f"{_f(r.get('best'), '.4f')}, rc {r['rc']}", flush=True)
            runs.append(r)
    text = report(runs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pruning.md").write_text(text)
    (args.out / "pruning.json").write_text(json.dumps(
        {"budget_s": args.budget_s, "epochs": args.epochs, "seeds": args.seeds,
         "pruners": PRUNERS, "scratch": str(tmp), "runs": runs}, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
