"""Scaling: workers 1 -> 2 on this machine, and scheduling overhead per trial on 2/4/8 Ray nodes.

Usage (from the repo root)::

    python benchmarks/scaling.py [--trials 100] [--epochs 5] [--nodes 2,4,8] [--per-worker 30]
        [--sleep-s 0.2] [--skip-local] [--skip-cluster]

Every measurement is a separate subprocess (its own Ray), timed around the whole process like
``study_throughput.py``, so one run's leftovers cannot slow the next.

Part A, this machine (local Ray started by tuner): the digits study (``search_spaces/
digits_mlp.yaml``: builtin:mlp, ``cpus_per_trial: 1``, random sampler with seed 0, so trial
``i`` gets the same config in both runs) with ``--trials`` trials of ``--epochs`` epochs, run with
``workers=1`` and then ``workers=2``; before, between and after them a CPU check times a
pure-Python loop alone and two copies at once (what 2 processes can get from the machine right
now: the ceiling for the speed-up on a shared machine). Reported: process wall time, ``tuner.submit`` time, span
(first trial start -> last trial end), steady-state trials/min = (n - 1) completions over first
completion -> last completion (start-up and the first trial excluded), the speed-up 2 vs 1
workers on that rate (ideal 2.0x on 2 cores), and the per-worker gap (a trial's
``datetime_complete`` -> the same worker's next ``datetime_start``).

Part B, simulated nodes (``ray.cluster_utils.Cluster`` on this machine): a head node with
``num_cpus=0`` (it hosts the driver and the 0-CPU coordinator, never a trial) plus N worker nodes
with ``num_cpus=1`` each, for N in ``--nodes``; tuner joins it (``ray.init(address=...)`` before
``tuner.submit``) and runs a study with ``workers=N`` and ``N * --per-worker`` trials of a trivial
user trainable (``scaling_trainable:fit``, written to a scratch dir that is the process's cwd) that
sleeps ``--sleep-s`` and returns the time it actually slept, so trial cost is known exactly.
Reported, per N:

- gap: per-worker ``datetime_complete`` -> next ``datetime_start`` (median, p95). Both stamps are
  taken by the coordinator inside one ``next_trial`` call (tell, then ask), so this is the
  coordinator's own bookkeeping between two trials, *not* the network/actor round trip;
- in-trial overhead: ``duration_s - slept`` (median, p95): the assignment's trip to the worker,
  the worker's per-trial setup and the result's trip back, i.e. one round trip plus worker work;
- overhead per trial per worker: (sum over workers of (last end - first start) - n * sleep) / n
  (each worker's busy span, so the staggered worker start-up is excluded);
- the brief's amortised figure: (span - n * sleep / N) / n, span = first start -> last end over
  all workers (includes the stagger of worker start-up);
- distinct Ray nodes that ran trials (trial user attribute ``ray_node``, recorded by the worker);
- coordinator round trip: a probe coordinator (same spec, a separate ``-probe`` study in the same
  database) is called ``next_trial(worker, result)`` in a loop, exactly as a worker calls it
  between trials, from a 0-CPU task pinned to a worker node: once from one node alone ("solo")
  and once from all N nodes at the same time ("concurrent"). Timed with ``perf_counter`` around
  ``ray.get``; the first 3 calls of each caller are warm-up and dropped.

The machine is shared (2 cores): the 1-minute load average is recorded at the start and end of
the whole run and around each measured process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ROOT,
    SPEC,
    fmt,
    per_worker_gaps,
    python,
    quantiles,
    run_timed,
    tuner_trials,
)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TRAINABLE = '''\
"""Trivial trainable for benchmarks/scaling.py: known cost, no compute."""
import time

SLEEP_S = {sleep_s!r}


def fit(config, ctx):
    t = time.perf_counter()
    time.sleep(SLEEP_S)
    return {{"value": float(config["x"]), "slept_s": time.perf_counter() - t}}
'''
WARMUP_CALLS = 3


# --- children (each runs in its own measured process) ------------------------------------------
def child_local(args: argparse.Namespace) -> None:
    import ray

    import tuner
    from tuner.execution import release_workers

    url = f"sqlite:///{args.db}"
    t0 = time.time()
    tuner.submit(SPEC, storage=url, name=args.name, trials=args.trials, workers=args.workers,
                 epochs=args.epochs)
    t1 = time.time()
    resources = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    release_workers()
    ray.shutdown()
    Path(args.out).write_text(json.dumps({
        "t_submit_start": t0, "t_submit_end": t1, "submit_s": t1 - t0, "ray_resources": resources,
        "trials": tuner_trials(args.name, url)}))


def child_cluster(args: argparse.Namespace) -> None:
    import ray
    from ray.cluster_utils import Cluster

    import tuner
    from tuner.execution import release_workers

    code = Path(args.db).parent / f"code_{args.nodes}"
    code.mkdir(parents=True, exist_ok=True)
    (code / "scaling_trainable.py").write_text(TRAINABLE.format(sleep_s=args.sleep_s))
    os.chdir(code)  # run_study ships os.getcwd() to the workers as their code dir
    url = f"sqlite:///{args.db}"
    out: dict[str, Any] = {"nodes": args.nodes, "code_dir": str(code)}
    t0 = time.time()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING)
        out["cluster_start_s"] = time.time() - t0
        head = ray.get_runtime_context().get_node_id()
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        out.update(head_node=head, worker_nodes=[n for n in alive if n != head],
                   ray_resources={k: v for k, v in ray.cluster_resources().items() if k == "CPU"})
        spec = {
            "study": args.name, "trainable": "scaling_trainable:fit",
            "objective": {"metric": "value", "direction": "maximize"},
            "sampler": {"kind": "random", "seed": 0}, "pruner": {"kind": "none"},
            "trials": args.nodes * args.per_worker, "epochs": 1,
            "resources": {"workers": args.nodes, "cpus_per_trial": 1, "gpus_per_trial": 0},
            "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        }
        t1 = time.time()
        tuner.submit(spec, storage=url)
        t2 = time.time()
        out.update(t_submit_start=t1, t_submit_end=t2, submit_s=t2 - t1,
                   actor_nodes=actor_nodes(("Coordinator", "TrialWorker")))
        release_workers()  # frees the N CPUs; the probe needs none, but start it from a clean pool
        out["trials"] = tuner_trials(args.name, url)
        out["probe"] = probe_round_trips(spec, url, out["worker_nodes"], args.probe_calls)
    finally:
        release_workers()
        ray.shutdown()
        cluster.shutdown()
    Path(args.out).write_text(json.dumps(out))


def actor_nodes(classes: tuple[str, ...]) -> dict[str, list[str]] | None:
    """class name -> node ids of its actors so far, dead ones included (Ray's GCS table; a
    private API, so None when it is not there)."""
    try:
        import ray._private.state as ray_state

        out: dict[str, list[str]] = {}
        for a in ray_state.actors().values():
            if a.get("ActorClassName") in classes:
                out.setdefault(a["ActorClassName"], []).append(a.get("Address", {}).get("NodeID"))
        return out
    except Exception:  # noqa: BLE001 - only a label
        return None


def probe_round_trips(spec: dict[str, Any], url: str, nodes: list[str], calls: int) -> dict[str, Any]:
    """``next_trial(worker, result)`` round trips to a coordinator from tasks on worker nodes."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from tuner.execution import Coordinator
    from tuner.spec import parse_spec

    n = len(nodes)
    probe_spec = parse_spec({**spec, "study": spec["study"] + "-probe"}).to_json_dict()
    coord = ray.remote(Coordinator).options(num_cpus=0, max_concurrency=2 * n + 8).remote(
        probe_spec, url, trials=(calls + 2 * WARMUP_CALLS) * (n + 1) + 10)
    ray.get(coord.progress.remote())

    @ray.remote(num_cpus=0)
    def caller(coord: Any, wid: str, k: int, start_at: float = 0.0) -> dict[str, Any]:
        from tuner.execution import TrialResult

        while time.time() < start_at:  # all callers of a round start together
            time.sleep(0.001)
        lat, result = [], None
        for _ in range(k + WARMUP_CALLS):
            t = time.perf_counter()
            a = ray.get(coord.next_trial.remote(wid, result))
            lat.append(time.perf_counter() - t)
            result = TrialResult(a.number, "COMPLETE", value=0.5, worker=wid)
        # the trial handed out last stays RUNNING; stop() below fails it (it is a probe study)
        return {"node": ray.get_runtime_context().get_node_id(), "lat_s": lat[WARMUP_CALLS:]}

    def on(node: str) -> Any:
        return caller.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))

    # A warm-up round starts (and imports tuner in) one task process per node; Ray reuses those
    # processes, so the timed rounds below do not share the CPUs with interpreter start-ups.
    ray.get([on(node).remote(coord, f"warm-{i}", 0) for i, node in enumerate(nodes)])
    solo = ray.get(on(nodes[-1]).remote(coord, "probe-solo", calls))
    start_at = time.time() + 1.0
    conc = ray.get([on(node).remote(coord, f"probe-{i}", calls, start_at)
                    for i, node in enumerate(nodes)])
    try:
        coord_node = ray.get(coord.__ray_call__.remote(
            lambda self: ray.get_runtime_context().get_node_id()))
    except Exception:  # noqa: BLE001 - only a label
        coord_node = None
    ray.get(coord.stop.remote())
    ray.get(coord.close.remote())
    ray.kill(coord)
    return {"coordinator_node": coord_node, "solo_s": solo["lat_s"],
            "concurrent_s": [x for c in conc for x in c["lat_s"]],
            "caller_nodes": sorted({c["node"] for c in conc})}


# --- the parent --------------------------------------------------------------------------------
BURN = ("import time\nt = time.perf_counter()\nx = 0\nfor i in range({n}): x += i\n"
        "print(time.perf_counter() - t)")


def calibrate(n: int = 15_000_000) -> dict[str, Any]:
    """What 2 processes get from this machine right now: a pure-Python CPU loop timed alone, then
    two copies at once. 2 x alone / together is the speed-up a perfect framework would reach."""
    import subprocess

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([python(), "-c", BURN.format(n=n)], stdout=subprocess.PIPE, text=True)

    single = float(start().communicate()[0])
    procs = [start(), start()]
    pair = [float(p.communicate()[0]) for p in procs]
    return {"single_s": single, "pair_s": pair,
            "parallel_speedup": 2 * single / statistics.fmean(pair), "load_1m": os.getloadavg()[0]}


def run_child(kind: str, tag: str, tmp: Path, extra: list[str]) -> dict[str, Any]:
    out, db = tmp / f"{tag}.json", tmp / f"{tag}.db"
    cmd = [python(), __file__, "--child", kind, "--out", str(out), "--db", str(db),
           "--name", f"scaling-{tag}", *extra]
    run = run_timed(cmd, tmp / f"{tag}.log", env={"PYTHONPATH": f"{ROOT / 'benchmarks'}:{ROOT}",
                                                  "RAY_USAGE_STATS_ENABLED": "0"})
    data = json.loads(out.read_text()) if out.exists() else {"trials": []}
    if run["rc"] != 0 or not out.exists():
        data["error"] = f"exit code {run['rc']}, see {run['log']}"
    return {"run": run, **data}


def ms(q: dict[str, float] | None, key: str) -> str:
    return "n/a" if not q else f"{1000 * q[key]:.1f}"


def summarize_local(d: dict[str, Any], workers: int) -> dict[str, Any]:
    done = [t for t in d["trials"] if t["start"] is not None and t["end"] is not None]
    s: dict[str, Any] = {"workers": workers, "wall_s": d["run"]["wall_s"], "rc": d["run"]["rc"],
                         "submit_s": d.get("submit_s"), "finished": len(done),
                         "complete": sum(t["state"] == "COMPLETE" for t in done),
                         "ray_resources": d.get("ray_resources"), "error": d.get("error"),
                         "load_before": d["run"]["loadavg_1m_before"],
                         "load_after": d["run"]["loadavg_1m_after"]}
    if len(done) < 2:
        return s
    first, last = min(t["start"] for t in done), max(t["end"] for t in done)
    ends = sorted(t["end"] for t in done)
    durations = [t["duration_s"] for t in done]
    s.update(
        startup_s=first - d["run"]["t_proc_start"], span_s=last - first,
        trials_per_min_span=60 * len(done) / (last - first),
        steady_trials_per_min=60 * (len(done) - 1) / (ends[-1] - ends[0]),
        mean_duration_s=statistics.fmean(durations), sum_duration_s=sum(durations),
        workers_seen=len({t["worker"] for t in done if t["worker"]}),
        gap_s=quantiles(per_worker_gaps(done)),
        best=max((t["value"] for t in done if t["value"] is not None), default=None),
    )
    return s


def summarize_cluster(d: dict[str, Any], nodes: int, per_worker: int, sleep_s: float) -> dict[str, Any]:
    done = [t for t in d["trials"] if t["start"] is not None and t["end"] is not None]
    s: dict[str, Any] = {"nodes": nodes, "wall_s": d["run"]["wall_s"], "rc": d["run"]["rc"],
                         "cluster_start_s": d.get("cluster_start_s"), "submit_s": d.get("submit_s"),
                         "finished": len(done), "error": d.get("error"),
                         "load_before": d["run"]["loadavg_1m_before"],
                         "load_after": d["run"]["loadavg_1m_after"]}
    if len(done) < 2:
        return s
    n = len(done)
    first, last = min(t["start"] for t in done), max(t["end"] for t in done)
    span = last - first
    slept = [t["user_attrs"].get("slept_s") for t in done]
    missing_slept = sum(x is None for x in slept)
    slept_sum = sum(x if x is not None else sleep_s for x in slept)
    by: dict[str, list[dict[str, Any]]] = {}
    for t in done:
        by.setdefault(t["worker"] or "?", []).append(t)
    busy = sum(max(t["end"] for t in ts_) - min(t["start"] for t in ts_) for ts_ in by.values())
    firsts = [min(t["start"] for t in ts_) for ts_ in by.values()]
    nodes_attr = [t["user_attrs"].get("ray_node") for t in done]
    worker_nodes = set(d.get("worker_nodes") or [])
    ran_on = {x for x in nodes_attr if x}
    probe = d.get("probe") or {}
    s.update(
        complete=sum(t["state"] == "COMPLETE" for t in done),
        span_s=span, ideal_span_s=n * sleep_s / nodes,
        amortised_overhead_ms=1000 * (span - n * sleep_s / nodes) / n,
        per_worker_overhead_ms=1000 * (busy - slept_sum) / n,
        gap_s=quantiles(per_worker_gaps(done)),
        in_trial_s=quantiles([t["duration_s"] - (x if x is not None else sleep_s)
                              for t, x in zip(done, slept)]),
        missing_slept=missing_slept,
        trials_per_worker=sorted(len(v) for v in by.values()),
        worker_start_spread_s=max(firsts) - min(firsts),
        ray_nodes_ran=len(ran_on), trials_without_ray_node=sum(x is None for x in nodes_attr),
        ray_nodes_not_worker=len(ran_on - worker_nodes) if worker_nodes else None,
        head_ran_trials=d.get("head_node") in ran_on,
        rtt_solo_s=quantiles(probe.get("solo_s") or []),
        rtt_concurrent_s=quantiles(probe.get("concurrent_s") or []),
        coordinator_on_head=(probe.get("coordinator_node") == d.get("head_node")
                             if probe.get("coordinator_node") else None),
        study_coordinator_on_head=([x == d.get("head_node") for x in
                                    (d.get("actor_nodes") or {}).get("Coordinator", [])] or None),
        probe_caller_nodes=len(probe.get("caller_nodes") or []),
    )
    return s


def report(local: list[dict[str, Any]], clus: list[dict[str, Any]], args: argparse.Namespace,
           load: dict[str, Any], calib: list[dict[str, Any]] | None = None) -> str:
    import optuna
    import ray
    import torch

    lines = [(f"# Scaling: workers 1 -> 2 on this machine; overhead per trial on {args.nodes} "
             "simulated Ray nodes"), "",
             (f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · "
             f"{platform.processor() or platform.machine()} · {os.cpu_count()} cores, shared machine · "
             f"torch {torch.__version__} · optuna {optuna.__version__} · ray {ray.__version__}"), "",
             (f"Load average (1/5/15 min) at start: {'/'.join(f'{x:.2f}' for x in load['start'])}; "
             f"at end: {'/'.join(f'{x:.2f}' for x in load['end'])}."), ""]
    peak = max([load["start"][0], load["end"][0]]
               + [r[k] for r in local + clus for k in ("load_before", "load_after")])
    if peak > (os.cpu_count() or 1):
        lines += [(f"**Loaded machine**: the 1-minute load average reached {peak:.1f} on "
                  f"{os.cpu_count()} cores during this run (other processes), so trials competed "
                  "for CPU with work outside the benchmark: the 1 -> 2 worker speed-up below is "
                  "bounded by what the machine gave two processes at the time (see the CPU check "
                  "under the table), and times in B include waiting for a core. "
                  "Rerun when `uptime` shows a load under ~2 for the representative figure."), ""]
    if local:
        ref = next((r for r in local if r["workers"] == 1), None)
        lines += [(f"## A. This machine: digits study, {args.trials} trials x {args.epochs} epochs, "
                  "builtin:mlp, 1 CPU per trial"), "",
                  ("| workers | rc | finished (complete) | wall s | submit s | start-up s | span s | "
                  "trials/min (span) | steady trials/min | speed-up vs 1 | mean duration s | "
                  "gap ms median / p95 / max | load 1m before -> after |"),
                  "|" + "---|" * 13]
        for r in local:
            if r.get("span_s") is None:
                lines.append(f"| {r['workers']} | {r['rc']} | not measured: {r.get('error')} |"
                             + " |" * 10)
                continue
            sp = (r["steady_trials_per_min"] / ref["steady_trials_per_min"]
                  if ref and ref.get("steady_trials_per_min") else None)
            g = r["gap_s"]
            lines.append(
                f"| {r['workers']} | {r['rc']} | {r['finished']} ({r['complete']}) | {fmt(r['wall_s'])} | "
                f"{fmt(r['submit_s'])} | {fmt(r['startup_s'])} | {fmt(r['span_s'])} | "
                f"{fmt(r['trials_per_min_span'])} | {fmt(r['steady_trials_per_min'])} | "
                f"{fmt(sp, '.2f')}x | {fmt(r['mean_duration_s'], '.2f')} | "
                f"{ms(g, 'median')} / {ms(g, 'p95')} / {ms(g, 'max')} | "
                f"{r['load_before']:.2f} -> {r['load_after']:.2f} |")
        lines += ["", ("Ideal speed-up is 2.0x (2 cores, 1 CPU per trial). wall = the whole process "
                  "(Python, torch, Ray start-up, the study); submit = `tuner.submit`; start-up = process "
                  "start -> first trial start; span = first trial start -> last trial end; steady = "
                  "(n - 1) completions over first completion -> last completion. gap = a trial's "
                  "`datetime_complete` -> its worker's next `datetime_start`: both are taken by the "
                  "coordinator inside one `next_trial` call, so it is the coordinator's bookkeeping "
                  "between trials; the worker<->coordinator round trip is inside `duration_s` (see B).")]
        if calib:
            lines += ["", "What 2 processes got from this machine at the time (a pure-Python CPU loop "
                      "alone, then two copies at once; before, between and after the runs above): "
                      + "; ".join(f"{c['single_s']:.2f} s alone, {statistics.fmean(c['pair_s']):.2f} s "
                                  f"each in a pair -> {c['parallel_speedup']:.2f}x (load {c['load_1m']:.1f})"
                                  for c in calib)
                      + ". That is the ceiling for the 1 -> 2 worker speed-up here: on an idle 2-core "
                      "machine it is 2.0x."]
        if any(r.get("workers_seen") != r["workers"] for r in local if r.get("span_s")):
            lines += ["", "Note: the number of distinct `worker` ids in the stored trials differs from "
                      "`workers`: " + ", ".join(f"{r['workers']} -> {r.get('workers_seen')}" for r in local)]
    if clus:
        lines += ["", (f"## B. Simulated nodes (`ray.cluster_utils.Cluster`): head `num_cpus=0` + N "
                  f"nodes x 1 CPU, workers = N, {args.per_worker} trials per worker, trainable "
                  f"sleeps {args.sleep_s} s"), "",
                  ("| nodes N | rc | trials | Ray nodes that ran trials | cluster start s | span s | "
                  "ideal s | (span - n·sleep/N) / n ms | overhead per trial per worker ms | "
                  "gap ms median / p95 | in-trial (duration - sleep) ms median / p95 | "
                  "coordinator round trip ms, 1 caller median / p95 | N callers median / p95 | "
                  "load 1m before -> after |"),
                  "|" + "---|" * 14]
        for r in clus:
            if r.get("span_s") is None:
                lines.append(f"| {r['nodes']} | {r['rc']} | not measured: {r.get('error')} |" + " |" * 11)
                continue
            lines.append(
                f"| {r['nodes']} | {r['rc']} | {r['finished']} | {r['ray_nodes_ran']} of {r['nodes']} | "
                f"{fmt(r['cluster_start_s'])} | {fmt(r['span_s'], '.2f')} | {fmt(r['ideal_span_s'], '.2f')} | "
                f"{fmt(r['amortised_overhead_ms'])} | {fmt(r['per_worker_overhead_ms'])} | "
                f"{ms(r['gap_s'], 'median')} / {ms(r['gap_s'], 'p95')} | "
                f"{ms(r['in_trial_s'], 'median')} / {ms(r['in_trial_s'], 'p95')} | "
                f"{ms(r['rtt_solo_s'], 'median')} / {ms(r['rtt_solo_s'], 'p95')} | "
                f"{ms(r['rtt_concurrent_s'], 'median')} / {ms(r['rtt_concurrent_s'], 'p95')} | "
                f"{r['load_before']:.2f} -> {r['load_after']:.2f} |")
        lines += ["", ("All N nodes are processes on this 2-core machine, so N > 2 measures how the "
                  "framework behaves with more workers than cores (their sleeps overlap, their "
                  "bookkeeping does not). span = first trial start -> last trial end over all "
                  "workers (includes the staggered start of the worker processes); ideal = "
                  "n·sleep/N. Overhead per trial per worker = (sum over workers of their own first "
                  "start -> last end - sum of measured sleeps) / n: the time a worker spends per "
                  "trial on anything but the trial. in-trial = `duration_s` - the sleep the trainable "
                  "measured: the assignment's trip to the worker, the worker's per-trial setup and "
                  "the result's trip back. Round trip = `next_trial(worker, result)` on a probe "
                  "coordinator from 0-CPU tasks pinned to worker nodes, first "
                  f"{WARMUP_CALLS} calls dropped, {args.probe_calls} calls per caller."), ""]
        for r in clus:
            if r.get("span_s") is None:
                continue
            notes = [f"trials per worker {r['trials_per_worker']}",
                     f"first trials of the N workers spread over {r['worker_start_spread_s']:.2f} s",
                     f"head node ran trials: {r['head_ran_trials']}",
                     f"trials without `ray_node`: {r['trials_without_ray_node']}",
                     f"study's coordinator on head: {r['study_coordinator_on_head']}",
                     f"probe coordinator on head: {r['coordinator_on_head']}",
                     f"submit {fmt(r['submit_s'])} s", f"process wall {fmt(r['wall_s'])} s"]
            if r["missing_slept"]:
                notes.append(f"{r['missing_slept']} trials without `slept_s` (assumed {args.sleep_s} s)")
            lines.append(f"- N={r['nodes']}: " + "; ".join(notes))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="part A: digits trials per run")
    ap.add_argument("--epochs", type=int, default=5, help="part A: epochs per trial")
    ap.add_argument("--workers", default="1,2", help="part A: worker counts")
    ap.add_argument("--nodes", default="2,4,8", help="part B: simulated node counts")
    ap.add_argument("--per-worker", type=int, default=30, help="part B: trials per worker")
    ap.add_argument("--sleep-s", type=float, default=0.2, help="part B: the trainable's cost")
    ap.add_argument("--probe-calls", type=int, default=100, help="part B: round trips per caller")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--results-name", default="scaling",
                    help="write benchmarks/results/NAME.md and .json")
    ap.add_argument("--child", choices=["local", "cluster"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "local":
            args.workers = int(args.workers)
        else:
            args.nodes = int(args.nodes)
        {"local": child_local, "cluster": child_cluster}[args.child](args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="scaling_", dir="/tmp"))
    print(f"scratch: {tmp}", flush=True)
    load = {"start": list(os.getloadavg())}
    local, clus, raw = [], [], {}
    calib: list[dict[str, Any]] = []
    if not args.skip_local:
        calib.append(calibrate())
        for w in (int(x) for x in args.workers.split(",")):
            print(f"part A: workers={w} ...", flush=True)
            d = run_child("local", f"local-w{w}", tmp, ["--workers", str(w), "--trials", str(args.trials),
                                                       "--epochs", str(args.epochs)])
            raw[f"local-w{w}"] = d
            local.append(summarize_local(d, w))
            print(f"  wall {fmt(d['run']['wall_s'])} s, {len(d['trials'])} trials "
                  f"{d.get('error') or ''}", flush=True)
            calib.append(calibrate())
    if not args.skip_cluster:
        for n in (int(x) for x in args.nodes.split(",")):
            print(f"part B: nodes={n} ...", flush=True)
            d = run_child("cluster", f"nodes-{n}", tmp, [
                "--nodes", str(n), "--per-worker", str(args.per_worker), "--sleep-s", str(args.sleep_s),
                "--probe-calls", str(args.probe_calls)])
            raw[f"nodes-{n}"] = d
            clus.append(summarize_cluster(d, n, args.per_worker, args.sleep_s))
            print(f"  wall {fmt(d['run']['wall_s'])} s, {len(d['trials'])} trials "
                  f"{d.get('error') or ''}", flush=True)
    load["end"] = list(os.getloadavg())
    text = report(local, clus, args, load, calib)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_name
    (out_dir / f"{stem}.md").write_text(text)
    (out_dir / f"{stem}.json").write_text(json.dumps(
        {"args": vars(args), "scratch": str(tmp), "loadavg": load, "calibration": calib,
         "local": local, "cluster": clus,
         "raw": raw}, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
