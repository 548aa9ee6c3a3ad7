"""Study throughput: the same N-trial digits study run by tuner, plain Optuna and Ray Tune.

Usage (from the repo root)::

    python benchmarks/study_throughput.py [--trials 200] [--skip-ray-tune] [--skip-1thread]
        [--skip-replay] [--time-cap-s 900]
    python benchmarks/study_throughput.py --packing [--pack auto] [--trials 200]

``--packing`` runs the packing comparison instead (results in ``study_throughput_packing.md``):
the same study with ``hidden_units`` searched too, log-uniform in [16, 256] (64, the fixed value
of the plain study, is its geometric middle), run as tuner with ``resources.pack`` (default
``auto``), tuner with ``pack: 1`` and plain Optuna at 1 torch thread, each cold, in one run;
ratios are to that plain Optuna run. An unmeasured 4-trial warm-up submit runs first, so the
first measured run does not pay the machine's cold file caches alone.

Each run is a separate subprocess and its wall time is measured around the whole process, so
cold start (Python, torch, Ray start-up) is included:

1. tuner:        ``tuner submit search_spaces/digits_mlp.yaml --trials N --workers 2 ...``.
2. plain Optuna: sequential ``study.optimize`` on a SQLite RDB storage with
   ``RandomSampler(seed=0)``; the objective suggests the spec's five params (momentum as
   1-beta log-uniform in [1e-3, 1e-1]), adds the spec's fixed values, and trains with
   ``tuner.training.fit_mlp`` whose prune hook calls ``trial.report`` every epoch. Run with
   torch's default threads (what a plain user gets) and, unless skipped, with 1 thread.
3. Ray Tune:     ``tune.Tuner`` + ``OptunaSearch`` (Optuna ``RandomSampler(seed=0)``, so the
   configs come from the same distribution), ``max_concurrent_trials=2``, 1 CPU per trial,
   default function trainable (a fresh actor process per trial, no actor reuse), ``tune.report``
   every epoch plus one final report carrying the trial's timings.

Metrics. Per-trial start/end stamps are the framework's own: Optuna's ``datetime_start`` /
``datetime_complete`` (plain Optuna and tuner, read from storage) and Tune callbacks
``on_trial_start`` / ``on_trial_complete`` in the driver. ``span`` = first start -> last end.
In-trainable compute is ``fit_mlp``'s time with the dataset already loaded, minus the time spent
in the per-epoch report hook (that is framework work). Per-trial framework overhead is
``(span * concurrency - sum(compute)) / n``. tuner's workers cannot be instrumented from outside,
so for tuner sum(compute) is replaced by sum(duration_s) (coordinator: assignment -> result
stored), i.e. its number is the *gap* overhead between trials; the in-trial part is estimated as
mean(duration_s) - mean(plain Optuna compute_s). As a config-matched check, tuner's own 200
configs are then re-trained in one warm 1-thread process ("replay", not part of any wall time) and
(span * 2 - replay sum) / n is reported as tuner's total overhead. Start-up = process start ->
first trial start. Ratios are to plain Optuna (default threads) measured in the same run.

The machine is shared: each run's 1-minute load average is recorded before and after it, and the
baselines are capped (``--time-cap-s``) so that one pathological run cannot stall the benchmark.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BATCH_SIZES, ROOT, config_from, fmt, markdown_table, per_worker_gaps, python, quantiles,
    run_timed, spec_values, summarize, timed_fit, ts,
)

GOAL_SPEEDUP, GOAL_OVERHEAD_MS = 1.7, 3.0
GOAL_PACKED = 3.0
HIDDEN = (16, 256)  # --packing: hidden_units searched log-uniform in this range


# --- children (each runs in its own measured process) ------------------------------------------
def child_optuna(args: argparse.Namespace) -> None:
    import optuna
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sv = spec_values()
    study = optuna.create_study(storage=f"sqlite:///{args.db}", study_name="plain-optuna",
                                sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    fits = []

    def objective(trial: optuna.Trial) -> float:
        config = config_from(
            trial.suggest_float("lr", 1e-4, 1.0, log=True),
            trial.suggest_float("one_minus_momentum", 1e-3, 1e-1, log=True),
            trial.suggest_categorical("batch_size", BATCH_SIZES),
            trial.suggest_int("layers", 1, 4), trial.suggest_float("dropout", 0.0, 0.5), sv["fixed"])
        if args.hidden_log:
            config["hidden_units"] = trial.suggest_int("hidden_units", *HIDDEN, log=True)
        fit = timed_fit(config, sv, trial.number, lambda epoch, value: trial.report(value, epoch))
        fits.append(fit)
        return float("nan") if fit["diverged"] else fit["value"]  # nan -> FAIL, like tuner

    study.optimize(objective, n_trials=args.trials, timeout=args.time_cap_s)
    trials = [{"number": t.number, "state": t.state.name, "value": t.value,
               "start": ts(t.datetime_start), "end": ts(t.datetime_complete)}
              for t in study.get_trials(deepcopy=False)]
    Path(args.out).write_text(json.dumps({"trials": trials, "fits": fits}))


def child_replay(args: argparse.Namespace) -> None:
    """Re-train tuner's own configs in one warm process (1 thread, like a tuner worker)."""
    import torch

    torch.set_num_threads(1)
    sv = spec_values()
    fits = [timed_fit({**sv["fixed"], **t["params"]}, sv, t["number"], lambda e, v: None)
            for t in json.loads(Path(args.db).read_text())]
    Path(args.out).write_text(json.dumps({"trials": [], "fits": fits}))


def child_ray_tune(args: argparse.Namespace) -> None:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    sv = spec_values()
    ray.init(include_dashboard=False, logging_level="WARNING")
    stamps: dict[str, dict[str, float]] = {}

    class Stamps(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            stamps.setdefault(trial.trial_id, {})["start"] = time.time()

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            stamps.setdefault(trial.trial_id, {})["end"] = time.time()

        on_trial_error = on_trial_complete

    def trainable(config: dict) -> None:
        t_enter = time.time()
        suffix = tune.get_context().get_trial_id().rsplit("_", 1)[-1]
        number = int(suffix) if suffix.isdigit() else 0
        cfg = config_from(config["lr"], config["one_minus_momentum"], config["batch_size"],
                          config["layers"], config["dropout"], sv["fixed"])
        fit = timed_fit(cfg, sv, number, lambda e, v: tune.report({"val_accuracy": v, "epoch": e}))
        value = float("nan") if fit["diverged"] else fit["value"]
        tune.report({**fit, "val_accuracy": value, "t_enter": t_enter, "t_exit": time.time()})

    space = {"lr": tune.loguniform(1e-4, 1.0), "one_minus_momentum": tune.loguniform(1e-3, 1e-1),
             "batch_size": tune.choice(BATCH_SIZES), "layers": tune.randint(1, 5),
             "dropout": tune.uniform(0.0, 0.5)}
    search = OptunaSearch(metric="val_accuracy", mode="max",
                          sampler=optuna.samplers.RandomSampler(seed=0))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=args.trials,
                                    max_concurrent_trials=2, time_budget_s=args.time_cap_s),
        run_config=tune.RunConfig(name="bench", storage_path=str(Path(args.db).parent / "ray_results"),
                                  verbose=0, callbacks=[Stamps()]),
    )
    grid = tuner.fit()
    trials = []
    for r in grid:
        m = r.metrics or {}
        tid = m.get("trial_id")
        trials.append({**{k: m.get(k) for k in ("trial_id", "value", "fit_s", "hook_s", "compute_s",
                                               "threads", "t_enter", "t_exit", "diverged")},
                       **stamps.get(tid, {}), "error": None if r.error is None else str(r.error)[:300]})
    Path(args.out).write_text(json.dumps({"trials": trials}))


# --- the parent --------------------------------------------------------------------------------
def run_child(kind: str, args: argparse.Namespace, tmp: Path, threads: int | None = None,
              db: Path | None = None) -> dict:
    tag = kind + (f"-{threads}t" if threads else "")
    out, db = tmp / f"{tag}.json", db or tmp / f"{tag}.db"
    cmd = [python(), __file__, "--child", kind, "--trials", str(args.trials), "--out", str(out),
           "--db", str(db), "--time-cap-s", str(args.time_cap_s)] + (["--threads", str(threads)] if threads else [])
    if args.packing:
        cmd.append("--hidden-log")
    run = run_timed(cmd, tmp / f"{tag}.log", env={"PYTHONPATH": f"{ROOT / 'benchmarks'}:{ROOT}"})
    data = json.loads(out.read_text()) if out.exists() else {"trials": []}
    return {"run": run, **data}


def measure_plain(args: argparse.Namespace, tmp: Path, threads: int | None) -> dict:
    d = run_child("optuna", args, tmp, threads)
    compute = [f["compute_s"] for f in d.get("fits", [])]
    s = summarize(d["run"], d["trials"], 1, sum(compute) if compute else None)
    s.update(label=f"plain Optuna ({'torch default' if not threads else threads} thread"
             f"{'s' if not threads else ''}: {d['fits'][0]['threads'] if d.get('fits') else '?'})",
             mean_compute_s=statistics.fmean(compute) if compute else None,
             mean_hook_ms=1000 * statistics.fmean(f["hook_s"] for f in d["fits"]) if compute else None)
    return {"summary": s, "raw": d}


def packing_spec(tmp: Path, pack: str | int) -> Path:
    """digits_mlp.yaml with hidden_units searched (log scale) and ``resources.pack`` set."""
    import yaml

    spec = yaml.safe_load((ROOT / "search_spaces" / "digits_mlp.yaml").read_text())
    spec["fixed"].pop("hidden_units", None)
    spec["params"]["hidden_units"] = {"type": "int", "low": HIDDEN[0], "high": HIDDEN[1],
                                      "scale": "log"}
    spec["resources"]["pack"] = pack if pack == "auto" else int(pack)
    path = tmp / f"digits_mlp_pack_{pack}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def measure_tuner(args: argparse.Namespace, tmp: Path, spec: Path | None = None,
                  tag: str = "tuner", label: str = "tuner (2 workers x 1 thread)") -> dict:
    import tuner

    name, url = f"bench-{tag}-{int(time.time())}", f"sqlite:///{tmp / (tag + '.db')}"
    exe = str(Path(python()).parent / "tuner")
    run = run_timed([exe, "submit", str(spec or "search_spaces/digits_mlp.yaml"), "--trials",
                     str(args.trials), "--workers", "2", "--storage", url, "--name", name,
                     "--quiet"], tmp / f"{tag}.log")
    trials: list[dict] = []
    try:
        loaded = tuner.load_study(name, url)
        recs = loaded.trials()
        attrs = {t.number: t.user_attrs for t in loaded.to_optuna().get_trials(deepcopy=False)}
        with sqlite3.connect(tmp / f"{tag}.db") as con:
            workers = dict(con.execute(
                "select t.number, t.worker from tuner_trials t join tuner_studies s "
                "on s.study_id = t.study_id where s.study_name = ?", (name,)).fetchall())
        trials = [{"number": r.number, "state": r.state, "value": r.value, "reason": r.reason,
                   "params": r.params, "duration_s": r.duration_s, "start": ts(r.datetime_start),
                   "end": ts(r.datetime_complete), "worker": workers.get(r.number),
                   "pack_size": attrs.get(r.number, {}).get("pack_size")} for r in recs]
    except Exception as e:  # noqa: BLE001 - report, do not work around
        run["load_error"] = f"{type(e).__name__}: {e}"
    durations = [t["duration_s"] for t in trials if t["duration_s"] is not None]
    s = summarize(run, trials, 2, sum(durations) if durations else None)
    sizes = [t["pack_size"] for t in trials if t.get("pack_size")]
    s.update(label=label, mean_pack_size=statistics.fmean(sizes) if sizes else None,
             max_pack_size=max(sizes) if sizes else None,
             mean_duration_s=statistics.fmean(durations) if durations else None,
             worker_gap_s=quantiles(per_worker_gaps(trials)),
             failed_reasons=sorted({t["reason"] for t in trials if t["state"] == "FAIL"}))
    if not args.skip_replay and not args.packing and trials and s.get("span_s"):
        params = tmp / "tuner_params.json"
        params.write_text(json.dumps([{"number": t["number"], "params": t["params"]} for t in trials]))
        fits = run_child("replay", args, tmp, db=params).get("fits", [])
        replay = sum(f["compute_s"] for f in fits)
        s.update(replay_compute_s=replay, replay_mean_s=replay / max(len(fits), 1),
                 total_overhead_ms=1000 * (s["span_s"] * 2 - replay) / s["finished"])
    return {"summary": s, "raw": {"run": run, "trials": trials}}


def measure_ray_tune(args: argparse.Namespace, tmp: Path) -> dict:
    d = run_child("ray_tune", args, tmp)
    ok = [t for t in d["trials"] if t.get("compute_s") is not None]
    s = summarize(d["run"], d["trials"], 2, sum(t["compute_s"] for t in ok) if ok else None)
    setup = [t["t_exit"] - t["t_enter"] - t["fit_s"] for t in ok]
    s.update(label="Ray Tune + OptunaSearch (2 x 1 CPU, process per trial)",
             mean_setup_s=statistics.fmean(setup) if setup else None,
             errors=sorted({t["error"] for t in d["trials"] if t.get("error")})[:3])
    if d["run"]["rc"] != 0 and not ok:
        s["error"] = f"exit code {d['run']['rc']}, see {d['run']['log']}"
    return {"summary": s, "raw": d}


def report(results: dict, args: argparse.Namespace) -> str:
    import optuna
    import ray
    import torch

    rows = [r["summary"] for r in results.values()]
    ref = results["plain"]["summary"]
    tu = results["tuner"]["summary"]
    speedup = tu["trials_per_min"] / ref["trials_per_min"] if ref.get("trials_per_min") else None
    lines = [f"# Study throughput: {args.trials}-trial digits study, 2 concurrent trials", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · {platform.processor() or platform.machine()}"
             f" · 2 cores assumed, shared machine · torch {torch.__version__} · optuna "
             f"{optuna.__version__} · ray {ray.__version__}", "",
             markdown_table(rows, ref), "",
             "Ratios are to plain Optuna with torch default threads, same run. overhead = "
             "(span x concurrency - sum compute) / n; for tuner sum compute = sum(duration_s) "
             "(gap overhead only; see below). Baselines stop after "
             f"{args.time_cap_s:.0f} s of optimizing (then 'finished' < {args.trials} and trials/min is "
             "the rate over the trials that ran); tuner is never capped.", "", "## Goal", ""]
    gap = tu.get("overhead_ms")
    lines += [f"- tuner trials/min vs plain Optuna: **{fmt(speedup, '.2f')}x** (goal >= {GOAL_SPEEDUP}x): "
              f"**{'MET' if speedup and speedup >= GOAL_SPEEDUP else 'NOT MET'}**"]
    one = results.get("plain_1t", {}).get("summary")
    if one and one.get("trials_per_min"):
        lines += [f"- (vs plain Optuna with 1 torch thread: {tu['trials_per_min'] / one['trials_per_min']:.2f}x)"]
    in_trial = {k: 1000 * (tu["mean_duration_s"] - r["summary"]["mean_compute_s"])
                for k, r in results.items() if k.startswith("plain") and tu.get("mean_duration_s")
                and r["summary"].get("mean_compute_s") is not None}
    lines += [f"- tuner gap overhead between trials: **{fmt(gap, '.1f')} ms/trial** (goal <= "
              f"{GOAL_OVERHEAD_MS} ms): **{'MET' if gap is not None and gap <= GOAL_OVERHEAD_MS else 'NOT MET'}**",
              "- tuner in-trial overhead estimate, mean(duration_s) - mean(plain compute_s): "
              + ", ".join(f"{fmt(v, '.0f')} ms vs {k}" for k, v in in_trial.items())
              + " (different configs and thread counts: indicative only)"]
    if tu.get("total_overhead_ms") is not None:
        lines += [f"- tuner total overhead with its own configs re-trained in one warm 1-thread process "
                  f"(sum {tu['replay_compute_s']:.1f} s, mean {1000 * tu['replay_mean_s']:.0f} ms; vs "
                  f"mean duration_s {1000 * tu['mean_duration_s']:.0f} ms): "
                  f"(span x 2 - replay sum) / n = **{tu['total_overhead_ms']:.1f} ms/trial** (includes "
                  "2-way CPU contention, which the sequential replay does not have)"]
    lines += ["", "## Where the time goes", ""]
    for key, r in results.items():
        s = r["summary"]
        if s.get("error"):
            continue
        extra = [f"start-up {fmt(s.get('startup_s'))} s", f"teardown {fmt(s.get('teardown_s'))} s",
                 f"load avg {r['raw']['run']['loadavg_1m_before']:.2f} -> {r['raw']['run']['loadavg_1m_after']:.2f}"]
        if s.get("mean_compute_s") is not None:
            extra += [f"mean compute {1000 * s['mean_compute_s']:.0f} ms/trial",
                      f"per-epoch trial.report {fmt(s.get('mean_hook_ms'))} ms/trial"]
        if s.get("mean_duration_s") is not None:
            g = s.get("worker_gap_s") or {}
            extra += [f"mean duration_s {1000 * s['mean_duration_s']:.0f} ms",
                      "per-worker end->next start gap ms (min/median/p95/max) "
                      + "/".join(fmt(1000 * g[q], '.1f') if q in g else "n/a" for q in ("min", "median", "p95", "max"))]
            if s.get("failed_reasons"):
                extra += [f"FAIL reasons: {s['failed_reasons']}"]
        if s.get("mean_setup_s") is not None:
            extra += [f"mean in-trainable setup outside fit_mlp (imports, dataset load, reports) "
                      f"{s['mean_setup_s']:.2f} s/trial"]
        if s.get("errors"):
            extra += [f"errors: {s['errors']}"]
        lines += [f"- **{s['label']}**: " + "; ".join(extra)]
    return "\n".join(lines) + "\n"


def report_packing(results: dict, args: argparse.Namespace) -> str:
    import optuna
    import ray
    import torch

    ref = results["plain_1t"]["summary"]
    rows = [r["summary"] for r in results.values()]
    lines = [f"# Packed trials: {args.trials}-trial digits study, hidden_units log-uniform in "
             f"[{HIDDEN[0]}, {HIDDEN[1]}]", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · "
             f"{platform.processor() or platform.machine()} · 2 cores, shared machine · torch "
             f"{torch.__version__} · optuna {optuna.__version__} · ray {ray.__version__}", "",
             "Every run is a cold process (Python, torch, Ray start-up and teardown are in its "
             "wall time), one after another in this run. tuner: `tuner submit` with 2 workers x 1 "
             f"CPU; packing on is `resources.pack: {' / '.join(args.pack)}`. Plain Optuna: sequential "
             "`study.optimize` with a hand-written objective calling `fit_mlp`, 1 torch thread, "
             "SQLite. Ratios are to that plain Optuna run.", "",
             markdown_table(rows, ref), "", "## Goal", ""]
    off = results["tuner_nopack"]["summary"]
    lines += [f"- packing off vs plain Optuna (1 thread): "
              f"{fmt(off['trials_per_min'] / ref['trials_per_min'], '.2f')}x"]
    for pack in args.pack:
        on = results[f"tuner_pack_{pack}"]["summary"]
        ratio = on["trials_per_min"] / ref["trials_per_min"] if ref.get("trials_per_min") else None
        lines += [f"- packing on (pack: {pack}) vs plain Optuna (1 thread), trials/min: "
                  f"**{fmt(ratio, '.2f')}x** (goal >= {GOAL_PACKED}x): "
                  f"**{'MET' if ratio and ratio >= GOAL_PACKED else 'NOT MET'}**; vs packing off: "
                  f"{fmt(on['trials_per_min'] / off['trials_per_min'], '.2f')}x"]
        if on.get("span_s") and ref.get("span_s") and off.get("span_s"):
            lines += [f"  - first trial start to last trial end only (start-up and teardown left "
                      f"out): {on['span_s']:.1f} s against packing off {off['span_s']:.1f} s and "
                      f"plain Optuna {ref['span_s']:.1f} s, i.e. {ref['span_s'] / on['span_s']:.2f}x "
                      "plain Optuna"]
    lines += ["", "## Where the time goes", ""]
    for r in results.values():
        s = r["summary"]
        extra = [f"start-up {fmt(s.get('startup_s'))} s", f"teardown {fmt(s.get('teardown_s'))} s",
                 f"load avg {r['raw']['run']['loadavg_1m_before']:.2f} -> "
                 f"{r['raw']['run']['loadavg_1m_after']:.2f}"]
        if s.get("mean_pack_size") is not None:
            extra += [f"pack size mean {s['mean_pack_size']:.1f} (per trial), max {s['max_pack_size']}"]
        if s.get("mean_compute_s") is not None:
            extra += [f"mean compute {1000 * s['mean_compute_s']:.0f} ms/trial"]
        if s.get("failed_reasons"):
            extra += [f"FAIL reasons: {s['failed_reasons']}"]
        lines += [f"- **{s['label']}**: " + "; ".join(extra)]
    return "\n".join(lines) + "\n"


def main_packing(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="study_throughput_packing_"))
    print(f"scratch: {tmp}", flush=True)
    steps: list = [
        (f"tuner_pack_{pack}", lambda pack=pack: measure_tuner(
            args, tmp, packing_spec(tmp, pack), f"tuner_pack_{pack}",
            f"tuner, packing on (pack: {pack}, 2 workers x 1 thread)"))
        for pack in args.pack]
    steps += [
        ("tuner_nopack", lambda: measure_tuner(args, tmp, packing_spec(tmp, 1), "tuner_nopack",
                                               "tuner, packing off (pack: 1, 2 workers x 1 thread)")),
        ("plain_1t", lambda: measure_plain(args, tmp, 1)),
    ]
    # Unmeasured warm-up: the first cold process of a run would otherwise pay the machine's cold
    # caches (the data set's file cache, torch's and Ray's files in the page cache) alone.
    print("warm-up (not measured) ...", flush=True)
    run_timed([str(Path(python()).parent / "tuner"), "submit", str(packing_spec(tmp, 1)),
               "--trials", "4", "--storage", f"sqlite:///{tmp / 'warmup.db'}", "--name",
               f"warmup-{int(time.time())}", "--quiet"], tmp / "warmup.log")
    results: dict = {}
    for key, fn in steps:
        print(f"running {key} ...", flush=True)
        results[key] = fn()
        s = results[key]["summary"]
        print(f"  {key}: wall {fmt(s.get('wall_s'))} s, finished {s.get('finished')}", flush=True)
    text = report_packing(results, args)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "study_throughput_packing.md").write_text(text)
    (out_dir / "study_throughput_packing.json").write_text(json.dumps(
        {"trials": args.trials, "pack": args.pack, "scratch": str(tmp), "results": results},
        indent=1, default=str))
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--skip-ray-tune", action="store_true")
    ap.add_argument("--skip-1thread", action="store_true", help="skip plain Optuna with 1 thread")
    ap.add_argument("--time-cap-s", type=float, default=900.0,
                    help="stop a baseline (not tuner) after this many seconds of optimizing")
    ap.add_argument("--skip-replay", action="store_true", help="skip re-training tuner's configs")
    ap.add_argument("--packing", action="store_true",
                    help="packing on / off / plain Optuna 1 thread, hidden_units searched")
    ap.add_argument("--pack", nargs="+", default=["auto"],
                    help="--packing: resources.pack of the packed runs (one run each)")
    ap.add_argument("--hidden-log", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["optuna", "ray_tune", "replay"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        {"optuna": child_optuna, "ray_tune": child_ray_tune, "replay": child_replay}[args.child](args)
        return
    if args.packing:
        main_packing(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="study_throughput_"))
    print(f"scratch: {tmp}", flush=True)
    results: dict = {}
    steps = [("tuner", lambda: measure_tuner(args, tmp)),
             ("plain", lambda: measure_plain(args, tmp, None))]
    if not args.skip_1thread:
        steps.append(("plain_1t", lambda: measure_plain(args, tmp, 1)))
    if not args.skip_ray_tune:
        steps.append(("ray_tune", lambda: measure_ray_tune(args, tmp)))
    for key, fn in steps:
        print(f"running {key} ...", flush=True)
        results[key] = fn()
        s = results[key]["summary"]
        print(f"  {key}: wall {fmt(s.get('wall_s'))} s, finished {s.get('finished')}", flush=True)
    text = report(results, args)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "study_throughput.md").write_text(text)
    (out_dir / "study_throughput.json").write_text(json.dumps(
        {"trials": args.trials, "scratch": str(tmp), "results": results}, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
