"""Start-up: what a `tuner submit` costs beyond the trials, cold and on the head of `tuner up`.

Usage (from the repo root)::

    python benchmarks/startup.py [--rounds 3] [--trials 2]

Every measurement is a fresh process, run one after another in this run, ``rounds`` times
interleaved (so the machine's noise falls on all of them alike); the table shows medians:

- **Ray alone**: ``python -c "import ray; ray.init(address='local'); ray.shutdown()"``, what
  Ray itself costs a driver that starts and stops a local Ray (the floor for a cold submit).
- **cold submit**: ``tuner submit search_spaces/quickstart.yaml --trials N --quiet`` with no
  head up; its own local Ray starts and stops. The first round runs with an empty data-set cache
  (a machine's first study), later rounds with it filled.
- **tuner up**, then **warm submit** (the same command, joining the head) ``rounds`` times,
  then **tuner down**.

*wall* is the process's wall time. *to first trial* is the first trial's ``datetime_start`` in
the database (written when the trial is created, just before a worker starts it) minus the
moment the process was started. Goals (issue 12): a cold submit within Ray's own cost + 2 s; a
second submit on a running head with its first trial within 1.5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "search_spaces" / "quickstart.yaml"
OUT = ROOT / "benchmarks" / "results"
RAY_ONLY = ("import logging, ray; ray.init(address='local', include_dashboard=False, "
            "logging_level=logging.WARNING); ray.shutdown()")


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1:]}")
    return start, wall, proc


def _first_trial_s(url: str, study: str, started: float) -> float:
    import optuna

    trials = optuna.load_study(study_name=study, storage=url).trials
    first = min(t.datetime_start for t in trials if t.datetime_start is not None)
    return first.replace(tzinfo=dt.timezone.utc).timestamp() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuner-startup-"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(TUNER_STATE_DIR=str(work / "state"), TUNER_CACHE_DIR=str(work / "cache"),
               RAY_USAGE_STATS_ENABLED="0")
    url = f"sqlite:///{work / 'startup.db'}"
    tuner = [sys.executable, "-m", "tuner"]
    rows: dict[str, list[dict[str, float]]] = {"Ray alone": [], "cold submit": [],
                                               "cold submit, empty data cache": [],
                                               "tuner up": [], "warm submit": [], "tuner down": []}

    def submit(name: str) -> dict[str, float]:
        start, wall, _ = _run([*tuner, "submit", str(SPEC), "--trials", str(args.trials),
                               "--name", name, "--storage", url, "--quiet"], env, work)
        return {"wall": wall, "first": _first_trial_s(url, name, start)}

    for r in range(args.rounds):
        _, wall, _ = _run([sys.executable, "-c", RAY_ONLY], env, work)
        rows["Ray alone"].append({"wall": wall})
        key = "cold submit, empty data cache" if r == 0 else "cold submit"
        rows[key].append(submit(f"cold-{r}"))
        print(f"round {r}: Ray alone {rows['Ray alone'][-1]['wall']:.1f} s, {key} "
              f"{rows[key][-1]['wall']:.1f} s", flush=True)
    _, wall, _ = _run([*tuner, "up", "--idle-minutes", "10"], env, work)
    rows["tuner up"].append({"wall": wall})
    try:
        for r in range(args.rounds + 1):
            result = submit(f"warm-{r}")
            if r > 0:  # the first study on a new head starts its workers: that is a cold start
                rows["warm submit"].append(result)
            print(f"warm submit {r}: {result['wall']:.1f} s, first trial at "
                  f"{result['first']:.2f} s", flush=True)
    finally:
        _, wall, _ = _run([*tuner, "down"], env, work)
        rows["tuner down"].append({"wall": wall})

    med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in rows.items() if v}
    ray_s = med["Ray alone"]["wall"]
    lines = [
        "# Start-up: `tuner submit` of the 2-trial quickstart, cold and on `tuner up`'s head", "",
        f"{dt.datetime.now():%Y-%m-%d %H:%M} · {platform.node()} · {platform.machine()} · "
        f"{os.cpu_count()} cores, shared machine · {args.rounds} rounds, medians", "",
        "| run | n | wall s | wall / Ray alone | to first trial s |", "|---|---|---|---|---|"]
    for k, v in med.items():
        first = f"{v['first']:.2f}" if "first" in v else "-"
        lines.append(f"| {k} | {len(rows[k])} | {v['wall']:.2f} | {v['wall'] / ray_s:.2f}x | {first} |")
    cold, warm = med["cold submit"], med["warm submit"]
    lines += ["", "## Goals", "",
              f"- cold submit {cold['wall']:.1f} s against Ray alone {ray_s:.1f} s + 2 s = "
              f"{ray_s + 2:.1f} s: **{'MET' if cold['wall'] <= ray_s + 2 else 'NOT MET'}** "
              f"({cold['wall'] - ray_s:+.1f} s over Ray's own cost)",
              f"- warm submit, first trial at {warm['first']:.2f} s after the command started "
              f"(goal <= 1.5 s): **{'MET' if warm['first'] <= 1.5 else 'NOT MET'}**; its wall "
              f"time is {warm['wall'] / cold['wall']:.2f}x a cold submit's"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "startup.md").write_text("\n".join(lines) + "\n")
    (OUT / "startup.json").write_text(json.dumps({"rounds": rows, "medians": med}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
