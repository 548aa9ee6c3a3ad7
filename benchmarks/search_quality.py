"""Search quality at equal trial budgets: coarse-to-fine versus random, grid and TPE.

Every trial is a real ``fit_mlp`` run on a bundled dataset (tiny: a few epochs, one thread), asked
and told in-process with plain Optuna; the sampler is the subject, so there is no Ray here. The
training seed is fixed per (dataset, seed) pair, so within a pair the objective is a deterministic
function of the hyperparameters and every sampler faces the same function.

Budgets: random, grid and TPE run 60 trials once and are read at 30 and 60 (their first 30 trials
*are* a 30-trial run); coarse-to-fine splits its budget into stages, so it runs once per budget.

    python benchmarks/search_quality.py            # runs what is missing, then writes the report
    python benchmarks/search_quality.py --report   # only rewrites the table and the plot

Raw runs are appended to ``benchmarks/results/search_quality_runs.jsonl`` (one line per run, keyed
by dataset, seed, sampler, budget and the coarse-to-fine design), so an interrupted run resumes
and a changed design reruns only coarse-to-fine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from tuner._errors import Diverged
from tuner.samplers import create_sampler, trial_stage
from tuner.samplers._coarse_to_fine import CoarseToFineSampler
from tuner.spec import parse_spec, to_distribution
from tuner.training import TrialContext, fit_mlp

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNS = RESULTS / "search_quality_runs.jsonl"
PLOT = REPO / "docs" / "coarse_to_fine.png"
DATASETS = {"digits": "val_loss", "breast_cancer": "val_loss", "diabetes": "val_rmse"}
SAMPLERS = ("c2f", "random", "grid", "tpe")
BUDGETS = (30, 60)
EPOCHS = 10
PARAMS = {  # search_spaces/digits_mlp.yaml: the five that matter most, each on its own scale
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
    "momentum": {"type": "float", "low": 0.9, "high": 0.999, "scale": "one_minus_log"},
    "batch_size": {"type": "int", "low": 32, "high": 512, "scale": "pow2"},
    "layers": {"type": "int", "low": 1, "high": 4},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}
FIXED = {"optimizer": "sgd", "activation": "relu", "hidden_units": 64}
C2F_REV = 2  # bump when the sampler's code changes, so cached coarse-to-fine runs are redone


def make_spec(dataset: str, kind: str, seed: int, trials: int) -> Any:
    return parse_spec(
        {
            "study": f"{dataset}-{kind}-{seed}",
            "trainable": "builtin:mlp",
            "dataset": {"name": dataset},
            "objective": {"metric": DATASETS[dataset], "direction": "minimize"},
            "sampler": {"kind": "random" if kind == "c2f" else kind, "seed": seed},
            "trials": trials,
            "epochs": EPOCHS,
            "params": PARAMS,
            "fixed": FIXED,
        }
    )


def c2f_design(trials: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """The design a run used (the sampler's effective knobs), also its key in the runs file."""
    probe = CoarseToFineSampler(
        make_spec("digits", "c2f", 0, trials).params, n_trials=trials, seed=0, **overrides
    )
    return {"rev": C2F_REV, **probe.settings}


def run_one(dataset: str, kind: str, seed: int, trials: int, design: dict[str, Any]) -> dict:
    spec = make_spec(dataset, kind, seed, trials)
    if kind == "c2f":
        sampler: optuna.samplers.BaseSampler = CoarseToFineSampler(
            spec.params,
            n_trials=trials,
            seed=seed,
            **{k: v for k, v in design.items() if k != "rev"},
        )
    else:
        sampler = create_sampler(spec)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    dists = {name: to_distribution(p) for name, p in spec.params.items()}
    values: list[float | None] = []
    params: list[dict[str, Any]] = []
    stages: list[int] = []
    started = time.perf_counter()
    for number in range(trials):
        trial = study.ask(dists)
        stage = trial_stage(study.get_trials(deepcopy=False)[trial.number])
        if stage is not None:  # the sampler records it in before_trial
            stages.append(stage)
        ctx = TrialContext(
            trial_number=number,
            epochs=spec.epochs,
            dataset={"name": dataset},
            objective_metric=DATASETS[dataset],
            direction="minimize",
            seed=seed,
        )
        try:
            value = float(fit_mlp({**spec.fixed, **trial.params}, ctx)[DATASETS[dataset]])
        except Diverged:
            value = math.nan
        if math.isfinite(value):
            study.tell(trial, value)
            values.append(round(value, 6))
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            values.append(None)
        params.append(
            {k: (round(v, 8) if isinstance(v, float) else v) for k, v in trial.params.items()}
        )
    record = {
        "dataset": dataset,
        "seed": seed,
        "sampler": kind,
        "trials": trials,
        "design": design if kind == "c2f" else None,
        "values": values,
        "params": params,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if kind == "c2f":
        record["stages"] = stages
        record["boxes"] = {k: v for k, v in study.user_attrs.items() if k.startswith("c2f_box_")}
    return record


def _key(r: dict) -> str:
    return json.dumps(
        [r["dataset"], r["seed"], r["sampler"], r["trials"], r["design"]], sort_keys=True
    )


def load_runs() -> dict[str, dict]:
    if not RUNS.exists():
        return {}
    return {_key(r): r for r in map(json.loads, RUNS.read_text().splitlines()) if r}


def run_missing(
    datasets: list[str],
    seeds: range,
    overrides: dict[str, Any],
    samplers: list[str],
    budgets: list[int],
) -> None:
    runs = load_runs()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        for seed in seeds:
            jobs = [(k, max(BUDGETS)) for k in samplers if k != "c2f"]
            jobs += [("c2f", b) for b in budgets if "c2f" in samplers]
            for kind, trials in jobs:
                design = c2f_design(trials, overrides) if kind == "c2f" else None
                probe = {
                    "dataset": dataset,
                    "seed": seed,
                    "sampler": kind,
                    "trials": trials,
                    "design": design,
                }
                if _key(probe) in runs:
                    continue
                record = run_one(dataset, kind, seed, trials, design or {})
                with RUNS.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                runs[_key(record)] = record
                print(
                    f"{dataset} seed={seed} {kind}@{trials}: best={best(record, trials):.4f} "
                    f"({record['seconds']:.0f}s)",
                    flush=True,
                )


# --- analysis ------------------------------------------------------------------------------------
def best(run: dict, n: int) -> float:
    finite = [v for v in run["values"][:n] if v is not None]
    return min(finite) if finite else math.inf


def trials_to_reach(run: dict, target: float) -> int | None:
    """1-based trial at which the running best first gets to ``target`` (None: never)."""
    running = math.inf
    for i, v in enumerate(run["values"], 1):
        running = min(running, math.inf if v is None else v)
        if running <= target:
            return i
    return None


def collect(datasets: list[str], seeds: int, overrides: dict[str, Any]) -> dict[str, Any]:
    runs = load_runs()
    designs = {b: c2f_design(b, overrides) for b in BUDGETS}

    def get(dataset: str, seed: int, kind: str, trials: int) -> dict:
        design = designs[trials] if kind == "c2f" else None
        return runs[
            _key(
                {
                    "dataset": dataset,
                    "seed": seed,
                    "sampler": kind,
                    "trials": trials,
                    "design": design,
                }
            )
        ]

    rows: list[dict[str, Any]] = []
    for dataset in datasets:
        for seed in range(seeds):
            row: dict[str, Any] = {"dataset": dataset, "seed": seed}
            for kind in SAMPLERS:
                for budget in BUDGETS:
                    run = get(dataset, seed, kind, budget if kind == "c2f" else max(BUDGETS))
                    row[f"{kind}@{budget}"] = best(run, budget)
            target = row[f"random@{max(BUDGETS)}"]
            for kind in SAMPLERS:
                row[f"reach:{kind}"] = trials_to_reach(
                    get(dataset, seed, kind, max(BUDGETS)), target
                )
            row["reach:c2f@30"] = trials_to_reach(get(dataset, seed, "c2f", 30), target)
            rows.append(row)
    return {"designs": {str(b): d for b, d in designs.items()}, "rows": rows, "get": get}


NOTES = [
    "## Notes",
    "",
    (
        "- 30 trials is the hard case. Stage 0 then has 10 trials for 5 parameters, and 10-34% of "
        "random draws diverge (lr near 1 with momentum near 0.999), so the top 3 are a noisy sample. "
        "The best configurations on all three datasets use batch size 32 with lr/(1-momentum) in a "
        "band; when no batch-32 trial of stage 0 has a good learning rate, the box's pow2 axis "
        "shrinks to larger batches and later stages, sampling inside the box, cannot bring 32 back. "
        "Sobol in each stage (each batch exponent drawn about twice in stage 0) and top_k=3 helped most; "
        "a larger first stage ([14, 8, 8]) did not. With 60 trials (20 in stage 0) it happens less."
    ),
    (
        "- The 30-trial win rate on the tuning seeds (90%) is optimistic: the design was picked there. "
        "The held-out seeds are the honest estimate."
    ),
    (
        "- TPE beats coarse-to-fine on most pairs at both budgets: it keeps a density over all trials "
        "instead of a hard box."
    ),
    "",
]


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _median_reach(values: list[int | None]) -> str:
    ordered = sorted(math.inf if v is None else v for v in values)
    m = statistics.median(ordered)
    return ">60" if math.isinf(m) else f"{m:g}"


def report(datasets: list[str], seeds: int, overrides: dict[str, Any]) -> str:
    data = collect(datasets, seeds, overrides)
    rows = data["rows"]
    lines = [
        "# Search quality: coarse-to-fine vs random, grid and TPE",
        "",
        (
            f"Objective: best validation loss found (cross-entropy; RMSE in target std units for "
            f"diabetes), lower is better. builtin:mlp, SGD, {EPOCHS} epochs, the digits-mlp space "
            f"(lr log, momentum one_minus_log, batch_size pow2, layers, dropout). {seeds} seeds per "
            f"dataset; seed s seeds the sampler and the training, so within a (dataset, seed) pair "
            f"every sampler faces the same deterministic objective."
        ),
        "",
        (
            f"Coarse-to-fine design at 30 trials: `{json.dumps(data['designs']['30'])}`; "
            f"at 60: `{json.dumps(data['designs']['60'])}`."
        ),
        "",
        (
            "## Best value found (mean / median over seeds; wins = seeds where coarse-to-fine is "
            "strictly better than that sampler)"
        ),
        "",
        "| dataset | budget | c2f | random | grid | tpe | c2f wins vs random | vs grid | vs tpe |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    totals = {b: {k: 0 for k in SAMPLERS if k != "c2f"} for b in BUDGETS}
    for dataset in datasets:
        sub = [r for r in rows if r["dataset"] == dataset]
        for budget in BUDGETS:
            cells = []
            for kind in SAMPLERS:
                vals = [r[f"{kind}@{budget}"] for r in sub]
                cells.append(f"{_fmt(statistics.mean(vals))} / {_fmt(statistics.median(vals))}")
            wins = []
            for other in SAMPLERS[1:]:
                w = sum(r[f"c2f@{budget}"] < r[f"{other}@{budget}"] for r in sub)
                totals[budget][other] += w
                wins.append(f"{w}/{len(sub)}")
            lines.append(f"| {dataset} | {budget} | " + " | ".join(cells + wins) + " |")
    n = len(rows)
    for budget in BUDGETS:
        t = totals[budget]
        lines.append(
            f"| **all** | {budget} | | | | | **{t['random']}/{n} "
            f"({100 * t['random'] / n:.0f}%)** | {t['grid']}/{n} | {t['tpe']}/{n} |"
        )
    lines += [
        "",
        "## Trials needed to reach random's 60-trial best (same dataset and seed)",
        "",
        (
            "Median over seeds of the 1-based trial at which the running best first gets there, in "
            "each sampler's 60-trial run (`>60`: not reached); `<=30` counts the seeds where it took "
            "at most 30 trials. The last column is the 30-trial coarse-to-fine run (its own "
            "3-stage schedule)."
        ),
        "",
        "| dataset | random | grid | tpe | c2f (60-trial run) | c2f <=30 | c2f 30-trial run reaches it |",
        "|---|---|---|---|---|---|---|",
    ]
    reach30 = within30 = 0
    c2f_reach_all: list[int | None] = []
    for dataset in datasets:
        sub = [r for r in rows if r["dataset"] == dataset]
        cells = [
            _median_reach([r[f"reach:{k}"] for r in sub]) for k in ("random", "grid", "tpe", "c2f")
        ]
        w30 = sum(1 for r in sub if r["reach:c2f"] is not None and r["reach:c2f"] <= 30)
        r30 = sum(1 for r in sub if r["reach:c2f@30"] is not None)
        within30 += w30
        reach30 += r30
        c2f_reach_all += [r["reach:c2f"] for r in sub]
        lines.append(
            f"| {dataset} | " + " | ".join(cells) + f" | {w30}/{len(sub)} | {r30}/{len(sub)} |"
        )
    lines.append(
        f"| **all** | | | | **{_median_reach(c2f_reach_all)}** | {within30}/{n} | {reach30}/{n} |"
    )
    win = {b: totals[b]["random"] / n for b in BUDGETS}
    goal_a = all(w >= 0.8 for w in win.values())
    median_reach = statistics.median(sorted(math.inf if v is None else v for v in c2f_reach_all))
    goal_b = reach30 / n >= 0.5
    lines += [
        "",
        "## Goal (on the benchmark seeds, which the design was tuned on; see the held-out seeds below)",
        "",
        "- Beats random in >= 80% of (dataset, seed) pairs: "
        + ", ".join(f"{100 * win[b]:.0f}% at {b} trials" for b in BUDGETS)
        + f" -> **{'met' if goal_a else 'not met'}**.",
        (
            f"- Reaches random's 60-trial best within 30 trials: the 30-trial run gets there in "
            f"{reach30}/{n} pairs -> **{'met' if goal_b else 'not met'}** for the median pair. "
            f"Read off the 60-trial run instead (whose first 30 trials are stage 0 and half of "
            f"stage 1), the median is {_median_reach(c2f_reach_all)} trials ({within30}/{n} pairs "
            f"within 30)."
        ),
        "",
    ]
    lines += screening(datasets, seeds, data["designs"]) + holdout(datasets, seeds, data["designs"])
    lines += NOTES
    text = "\n".join(lines)
    (RESULTS / "search_quality.md").write_text(text)
    summary = {
        "designs": data["designs"],
        "rows": rows,
        "goal": {
            "win_rate": win,
            "reached_by_30_trial_run": reach30 / n,
            "median_reach_60_trial_run": median_reach,
            "met": goal_a and goal_b,
        },
    }
    (RESULTS / "search_quality.json").write_text(json.dumps(summary, indent=1, default=str))
    plot(datasets, seeds, data["get"])
    return text


def _versus_random(
    datasets: list[str], seeds: range, design: dict[str, Any], budget: int, runs: dict[str, dict]
) -> tuple[int, int, int] | None:
    """(c2f wins over random at ``budget``, c2f's run reaches random's 60-trial best, pairs)."""
    wins = reached = pairs = 0
    for dataset in datasets:
        for seed in seeds:
            keys = [
                {
                    "dataset": dataset,
                    "seed": seed,
                    "sampler": "random",
                    "trials": max(BUDGETS),
                    "design": None,
                },
                {
                    "dataset": dataset,
                    "seed": seed,
                    "sampler": "c2f",
                    "trials": budget,
                    "design": design,
                },
            ]
            if any(_key(k) not in runs for k in keys):
                return None
            base, c2f = (runs[_key(k)] for k in keys)
            pairs += 1
            wins += best(c2f, budget) < best(base, budget)
            reached += trials_to_reach(c2f, best(base, max(BUDGETS))) is not None
    return wins, reached, pairs


def screening(datasets: list[str], seeds: int, chosen: dict[str, Any]) -> list[str]:
    """Every coarse-to-fine design tried on the benchmark seeds at 30 trials, for the record."""
    runs = load_runs()
    designs = {
        json.dumps(r["design"], sort_keys=True): r["design"]
        for r in runs.values()
        if r["sampler"] == "c2f" and r["trials"] == 30 and r["design"].get("rev") == C2F_REV
    }
    lines = [
        "## Designs tried (30 trials, benchmark seeds)",
        "",
        "The default design was chosen from these; the held-out seeds below were not used.",
        "",
        (
            "| top_k | margin | min_width | qmc | trials_per_stage | wins vs random | "
            "reaches random's 60-trial best |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for d in sorted(designs.values(), key=lambda d: json.dumps(d, sort_keys=True)):
        result = _versus_random(datasets, range(seeds), d, 30, runs)
        if result is None:
            continue
        w, r, n = result
        mark = " (default)" if d == chosen["30"] else ""
        lines.append(
            f"| {d['top_k']} | {d['margin']} | {d['min_width']} | {d['qmc']} | "
            f"{d['trials_per_stage']}{mark} | {w}/{n} | {r}/{n} |"
        )
    return lines + [""]


def holdout(datasets: list[str], seeds: int, chosen: dict[str, Any]) -> list[str]:
    """The chosen design against random on seeds that no design choice looked at."""
    runs = load_runs()
    held = sorted({r["seed"] for r in runs.values() if r["seed"] >= seeds})
    if not held:
        return []
    lines = [f"## Held-out seeds {seeds}-{held[-1]} (default design vs random only)", ""]
    for budget in BUDGETS:
        result = _versus_random(
            datasets, range(seeds, held[-1] + 1), chosen[str(budget)], budget, runs
        )
        tuned = _versus_random(datasets, range(seeds), chosen[str(budget)], budget, runs)
        if result is None or tuned is None:
            return []
        w, r, n = result
        both_w, both_r, both_n = w + tuned[0], r + tuned[1], n + tuned[2]
        lines.append(
            f"- {budget} trials: coarse-to-fine beats random in {w}/{n} held-out pairs "
            f"({100 * w / n:.0f}%); its {budget}-trial run reaches random's 60-trial best in "
            f"{r}/{n}. All {both_n} pairs: {both_w}/{both_n} wins ({100 * both_w / both_n:.0f}%), "
            f"{both_r}/{both_n} reach it."
        )
    return lines + [""]


def plot(datasets: list[str], seeds: int, get: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cols = 2
    rows = math.ceil((1 + len(datasets)) / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(6 * cols, 4.6 * rows), squeeze=False)
    axes = list(grid.flat)
    for extra in axes[1 + len(datasets) :]:
        extra.set_visible(False)
    # Left: the stage boxes of one 60-trial run on lr x momentum, in their sampling coordinates.
    run = get(datasets[0], 0, "c2f", 60)
    ax = axes[0]
    colors = ["tab:gray", "tab:blue", "tab:red", "tab:green", "tab:purple"]
    for stage in sorted(set(run["stages"])):
        pts = [p for p, s in zip(run["params"], run["stages"]) if s == stage]
        ax.scatter(
            [math.log10(p["lr"]) for p in pts],
            [math.log10(1 - p["momentum"]) for p in pts],
            s=14,
            color=colors[stage % 5],
            label=f"stage {stage}",
        )
        b = run["boxes"][f"c2f_box_{stage}"]["params"]
        ax.add_patch(
            Rectangle(
                (b["lr"]["low"], b["momentum"]["low"]),
                b["lr"]["high"] - b["lr"]["low"],
                b["momentum"]["high"] - b["momentum"]["low"],
                fill=False,
                lw=1.5,
                color=colors[stage % 5],
            )
        )
    i = min(
        range(len(run["values"])),
        key=lambda j: math.inf if run["values"][j] is None else run["values"][j],
    )
    ax.scatter(
        [math.log10(run["params"][i]["lr"])],
        [math.log10(1 - run["params"][i]["momentum"])],
        marker="*",
        s=160,
        color="gold",
        edgecolor="k",
        zorder=5,
        label="best",
    )
    ax.set_xlabel("log10(lr)")
    ax.set_ylabel("log10(1 - momentum)")
    ax.set_title(f"coarse-to-fine stage boxes ({datasets[0]}, seed 0)")
    ax.legend(fontsize=8, loc="lower left")
    # Right: median best-so-far over seeds, 60-trial runs.
    styles = {"c2f": "tab:red", "random": "tab:blue", "grid": "tab:gray", "tpe": "tab:green"}
    for ax, dataset in zip(axes[1:], datasets):
        for kind in SAMPLERS:
            curves = []
            for seed in range(seeds):
                values, running, curve = get(dataset, seed, kind, 60)["values"], math.inf, []
                for v in values:
                    running = min(running, math.inf if v is None else v)
                    curve.append(running)
                curves.append(curve)
            med = [statistics.median(c[i] for c in curves) for i in range(60)]
            ax.plot(range(1, 61), med, color=styles[kind], label=kind)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"best {DATASETS[dataset]} so far (median of {seeds} seeds)")
        ax.set_title(dataset)
        lo = min(min(line.get_ydata()) for line in ax.get_lines())
        hi = max(line.get_ydata()[9] for line in ax.get_lines())
        ax.set_ylim(lo - 0.05 * (hi - lo), hi)
        ax.legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="also run random and coarse-to-fine on this many further seeds, which "
        "no design choice looked at",
    )
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument(
        "--budgets",
        nargs="+",
        type=int,
        default=list(BUDGETS),
        help="coarse-to-fine budgets to run (the report needs both)",
    )
    parser.add_argument("--c2f", default="{}", help="JSON overrides of the sampler's knobs")
    parser.add_argument("--report", action="store_true", help="only write the table and plot")
    parser.add_argument("--no-report", action="store_true", help="only run what is missing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overrides = json.loads(args.c2f)
    if not args.report:
        run_missing(args.datasets, range(args.seeds), overrides, args.samplers, args.budgets)
        held = range(args.seeds, args.seeds + args.holdout)
        run_missing(
            args.datasets,
            held,
            overrides,
            [k for k in args.samplers if k in ("random", "c2f")],
            args.budgets,
        )
    if not args.no_report:
        print(report(args.datasets, args.seeds, overrides))


if __name__ == "__main__":
    main()
