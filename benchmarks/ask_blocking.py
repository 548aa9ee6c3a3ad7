"""Do slow asks hold up results and pruning reports? The real coordinator, TPE, a grown study.

Usage (from the repo root)::

    python benchmarks/ask_blocking.py [--sizes 1000,10000] [--rounds 12] [--workers 2]

A TPE ask over N finished trials costs ~10 ms at 1k, ~0.1 s at 10k and ~1 s at 100k
(``ask_cost.py``). The coordinator runs asks on its asker thread, off its lock; before that it
asked under the lock, so every result, pruning report and progress poll waited behind an ask.

Each case builds a real :class:`tuner.execution.Coordinator` on a SQLite file (``--workers``
simulated workers, ``search_spaces/digits_mlp.yaml`` with ``sampler.kind: tpe``), adds N
finished trials shaped like a real run's (``ask_cost.make_trials``) to its in-memory study (what
the sampler sees; the database is not filled, which would only cost set-up time), then runs
``--rounds`` trials per worker: each worker takes a trial, reports 10 epochs (``report``: the
pruner's decision), and sends its result with its next-trial call. A monitor thread calls
``progress()`` (which takes the lock) every 10 ms, as the driver polls it. Recorded: each ask's
time (on the asker thread), each ``report`` call's latency and each ``progress`` call's.

Two variants run in the same process, one after the other on equal studies:

- **off the lock** (tuner now);
- **under the lock**: the same coordinator with its asks wrapped in its lock, which is what
  asking under the lock meant (the baseline).

A report can only be as slow as the lock it waits for: under the lock its worst case is one ask;
off the lock it is the coordinator's own bookkeeping. Writes ``benchmarks/results/ask_blocking.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quantiles  # noqa: E402
from ask_cost import make_trials  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "search_spaces" / "digits_mlp.yaml"
OUT = ROOT / "benchmarks" / "results"
EPOCHS = 10


def run_case(n: int, variant: str, rounds: int, workers: int, folder: Path) -> dict[str, Any]:
    import optuna

    from tuner import load_spec
    from tuner.execution import Coordinator, TrialResult
    from tuner.storage import open_storage
    from tuner.storage._runs import begin_run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"block-{variant.replace(' ', '-')}-{n}-{uuid.uuid4().hex[:6]}"
    target = rounds * workers
    spec = load_spec(SPEC, **{"sampler.kind": "tpe", "trials": target, "study": name,
                              "resources.workers": workers})
    url = f"sqlite:///{folder / (name + '.db')}"
    run = begin_run(open_storage(url, create=True), name, resume=False,
                    direction=spec.objective.direction, spec_json=spec.to_json_dict())
    asks: list[float] = []
    original = Coordinator._ask_ahead

    def timed_ask(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            if variant == "under the lock":
                with self._lock:
                    return original(self, *args, **kwargs)
            return original(self, *args, **kwargs)
        finally:
            asks.append(time.perf_counter() - t)

    Coordinator._ask_ahead = timed_ask  # type: ignore[method-assign]
    try:
        c = Coordinator(spec, url, run=run)
        c._mem.add_trials(make_trials(spec, n))  # the grown study the sampler sees
        reports: list[float] = []
        polls: list[float] = []
        stop = threading.Event()

        def monitor() -> None:
            while not stop.wait(0.01):
                t = time.perf_counter()
                c.progress()
                polls.append(time.perf_counter() - t)

        def worker(wid: str) -> None:
            rng = np.random.default_rng(abs(hash(wid)) % 2**32)
            a = c.next_trial(wid)
            while a is not None:
                curve = []
                for epoch in range(1, EPOCHS + 1):
                    value = float(0.5 + 0.04 * epoch + rng.normal(0, 0.01))
                    curve.append({"epoch": epoch, "val_accuracy": value, "val_loss": 1 - value,
                                  "train_loss": 1 - value})
                    t = time.perf_counter()
                    pruned = c.report(a.trial_id, epoch, value)
                    reports.append(time.perf_counter() - t)
                    time.sleep(0.005)  # an epoch of a very small network
                    if pruned:
                        break
                state = "PRUNED" if pruned else "COMPLETE"
                result = TrialResult(trial_id=a.trial_id, number=a.number, state=state,
                                     value=None if pruned else curve[-1]["val_accuracy"],
                                     reason="pruned" if pruned else None, curve=curve, host="b",
                                     device="cpu", worker=wid, reported=True)
                a = c.next_trial(wid, result)

        mon = threading.Thread(target=monitor, daemon=True)
        mon.start()
        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        stop.set()
        mon.join()
        final = c.close()
    finally:
        Coordinator._ask_ahead = original  # type: ignore[method-assign]
    timed = asks[1:] or asks  # the first ask ran before the study was filled
    return {"n": n, "variant": variant, "trials": final["complete"] + final["pruned"],
            "target": target, "wall_s": wall, "ask_ms": _ms(timed),
            "report_ms": _ms(reports), "progress_ms": _ms(polls)}


def _ms(seconds: list[float]) -> dict[str, float]:
    q = quantiles(seconds) or {}
    return {k: (v if k == "n" else 1000 * v) for k, v in q.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tuner-ask-blocking-") as tmp:
        for n in [int(x) for x in args.sizes.split(",")]:
            for variant in ("under the lock", "off the lock"):
                row = run_case(n, variant, args.rounds, args.workers, Path(tmp))
                rows.append(row)
                print(f"N={n:>6} {variant:>15}: ask {row['ask_ms']['median']:.1f} ms, report "
                      f"p99 {row['report_ms']['p99']:.1f} / max {row['report_ms']['max']:.1f} ms, "
                      f"progress max {row['progress_ms']['max']:.1f} ms", flush=True)
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": platform.node(),
            "cores": os.cpu_count(), "load_start": load_start, "load_end": os.getloadavg(),
            "command": "python benchmarks/ask_blocking.py " + " ".join(sys.argv[1:])}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ask_blocking.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (OUT / "ask_blocking.md").write_text(report(rows, meta))
    print((OUT / "ask_blocking.md").read_text())


def report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Slow asks against results and pruning reports (TPE)", "",
        f"`{meta['command']}` · {meta['date']} · {meta['cores']} cores, shared machine · load "
        f"{meta['load_start'][0]:.2f} -> {meta['load_end'][0]:.2f}", "",
        "The real coordinator on SQLite, 2 simulated workers (10 reports per trial, 5 ms per "
        "epoch), a monitor polling `progress()` every 10 ms; the in-memory study holds N finished "
        "trials. *under the lock* wraps each ask in the coordinator's lock (how it asked before); "
        "*off the lock* is tuner now. Times in ms.", "",
        "| N trials | asks | ask median | report median | report p99 | report max | "
        "progress p99 | progress max | report max / ask median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, rep, p = r["ask_ms"], r["report_ms"], r["progress_ms"]
        lines.append(f"| {r['n']:,} | {r['variant']} | {a['median']:.1f} | {rep['median']:.2f} | "
                     f"{rep['p99']:.1f} | {rep['max']:.1f} | {p['p99']:.1f} | {p['max']:.1f} | "
                     f"{rep['max'] / a['median']:.2f} |")
    off = [r for r in rows if r["variant"] == "off the lock"]
    lines += ["", "Goal: TPE never blocks results or pruning reports, i.e. off the lock a "
              "report's worst case stays well below one ask: " + ", ".join(
                  f"N={r['n']:,}: report max {r['report_ms']['max']:.1f} ms vs ask "
                  f"{r['ask_ms']['median']:.1f} ms" for r in off), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
