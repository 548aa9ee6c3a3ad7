"""Trainer speed: the built-in trainer against a hand-written torch loop and a DataLoader loop.

Usage (from the repo root)::

    python benchmarks/trainer.py [--epochs 10] [--repeats 5] [--threads 1]

The same network (tuner's own ``build_mlp`` / ``build_cnn``, same seed), the same optimizer
(Adam, lr 1e-3), batch size, data split and epochs, and the same per-epoch work (a shuffled pass
over the training split, then the validation loss and accuracy) in four loops:

1. ``builtin``: ``fit_mlp`` / ``fit_cnn`` as a tuner worker calls them (reports per epoch).
2. ``hand-written``: what a careful person writes by hand: the tensors on the device, a
   ``randperm`` per epoch, batches by index slices, default ``torch.optim.Adam``, and the usual
   ``total += loss.item()`` per step.
3. ``hand-written, no per-step sync``: the same without ``.item()`` per step and with the fused
   Adam kernel: the fastest plain loop here, to show what remains between it and the builtin.
4. ``DataLoader``: ``TensorDataset`` + ``DataLoader(shuffle=True)`` (num_workers=0, the fastest
   setting for in-memory data of this size), batches moved with ``.to(device)``, ``.item()`` per
   step, validation through a DataLoader too.

samples/s = training samples x epochs / wall time of the whole call (model and optimizer
construction included, dataset already loaded: a tuner worker loads it once). Each loop runs once
to warm up, then ``--repeats`` times round-robin (so load on a shared machine hits all alike); the
table shows each loop's fastest run (other processes only ever add time, so the fastest run is the
least disturbed) and the ratios of fastest runs, with the ratios of medians beside them, all from
this one run. On CPU torch threads are
pinned (``--threads``, 1 as in a tuner worker). When CUDA is available the same loops also run
on the GPU, plus the builtin with ``amp: bf16`` and with ``compile: true``, and on a larger
synthetic set (40k x 64, 3x512 MLP) where the GPU is not launch-bound. Packing several trials on
one GPU (fractional ``gpus_per_trial``) and the utilisation it reaches are measured by
``benchmarks/gpu_check.py``.

Writes ``benchmarks/results/trainer.md`` and ``trainer.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from tuner.training import TrialContext, build_cnn, build_mlp, fit_cnn, fit_mlp, load_dataset

ROOT = Path(__file__).resolve().parent.parent
DIGITS = {"name": "digits"}
LARGE = {"name": "synthetic_classification", "n_samples": 40000, "n_features": 64,
         "n_classes": 10, "n_informative": 32}
CASES = {  # name: (dataset, builtin kind, network config, batch size)
    "MLP 1x32, digits, batch 64": (DIGITS, "mlp", {"layers": 1, "hidden_units": 32}, 64),
    "MLP 2x64, digits, batch 32": (DIGITS, "mlp", {"layers": 2, "hidden_units": 64}, 32),
    "MLP 2x128, digits, batch 64": (DIGITS, "mlp", {"layers": 2, "hidden_units": 128}, 64),
    "MLP 2x128, digits, batch 256": (DIGITS, "mlp", {"layers": 2, "hidden_units": 128}, 256),
    "CNN 2x16ch, digits 1x8x8, batch 64": (DIGITS, "cnn", {"layers": 2, "channels": 16}, 64),
}
GPU_CASES = {"MLP 3x512, synthetic 40k x 64, batch 256": (LARGE, "mlp", {"layers": 3, "hidden_units": 512}, 256)}
GOAL_HAND, GOAL_LOADER = 1.0, 3.0
LR = 1e-3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model(kind: str, net: dict[str, Any], data: Any, device: torch.device, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # the builtin seeds the same way before building its network
    if kind == "cnn":
        return build_cnn(net, data.image_shape, data.n_classes).to(device)
    return build_mlp(net, data.n_features, data.n_classes).to(device)


def run_builtin(case: tuple, device: torch.device, epochs: int, extra: dict[str, Any]) -> None:
    dataset, kind, net, batch = case
    ctx = TrialContext(device=device, epochs=epochs, objective_metric="val_accuracy",
                       direction="maximize", dataset=dataset, seed=0)
    fit = fit_cnn if kind == "cnn" else fit_mlp
    fit({**net, "optimizer": "adam", "lr": LR, "batch_size": batch, **extra}, ctx)


def run_hand(case: tuple, device: torch.device, epochs: int, item_per_step: bool) -> None:
    dataset, kind, net, batch = case
    data = load_dataset(dataset, device)
    model = _model(kind, net, data, device, 0)
    fused = {} if item_per_step else {"fused": True}
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **fused)
    x, y, n = data.x_train, data.y_train, data.x_train.shape[0]
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, device=device)
        total = 0.0 if item_per_step else torch.zeros((), device=device)
        for start in range(0, n, batch):
            index = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            if item_per_step:
                total += loss.item() * index.shape[0]
            else:
                total += loss.detach() * index.shape[0]
        model.eval()
        with torch.inference_mode():
            out = model(data.x_val)
            val_loss = F.cross_entropy(out, data.y_val)
            accuracy = (out.argmax(1) == data.y_val).float().mean()
        _ = [float(total) / n, val_loss.item(), accuracy.item()]


def run_loader(case: tuple, device: torch.device, epochs: int) -> None:
    dataset, kind, net, batch = case
    data = load_dataset(dataset, torch.device("cpu"))
    model = _model(kind, net, data, device, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    pin = device.type == "cuda"
    train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch, shuffle=True,
                       pin_memory=pin)
    val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=batch, pin_memory=pin)
    for _ in range(epochs):
        model.train()
        total = 0.0
        for xb, yb in train:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * xb.shape[0]
        model.eval()
        val_loss, correct = 0.0, 0
        with torch.inference_mode():
            for xb, yb in val:
                xb, yb = xb.to(device), yb.to(device)
                out = model(xb)
                val_loss += F.cross_entropy(out, yb, reduction="sum").item()
                correct += int((out.argmax(1) == yb).sum().item())


def measure(loops: dict[str, Callable[[], None]], device: torch.device, n_samples: int,
            repeats: int) -> dict[str, dict[str, Any]]:
    """Warm up every loop, then time them round-robin; samples/s per run and the median."""
    for fn in loops.values():
        fn()
        _sync(device)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: {"seconds": ts, "median_s": statistics.median(ts), "best_s": min(ts),
                   "samples_per_s": n_samples / min(ts),
                   "samples_per_s_median": n_samples / statistics.median(ts)}
            for name, ts in times.items()}


def bench_device(device: torch.device, cases: dict[str, tuple], epochs: int, repeats: int
                 ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, case in cases.items():
        n = load_dataset(case[0], device).x_train.shape[0] * epochs
        loops: dict[str, Callable[[], None]] = {
            "builtin": lambda c=case: run_builtin(c, device, epochs, {}),
            "hand-written": lambda c=case: run_hand(c, device, epochs, True),
            "hand-written, no per-step sync": lambda c=case: run_hand(c, device, epochs, False),
            "DataLoader": lambda c=case: run_loader(c, device, epochs),
        }
        if device.type == "cuda":
            loops["builtin, amp: bf16"] = lambda c=case: run_builtin(c, device, epochs, {"amp": "bf16"})
            loops["builtin, compile: true"] = lambda c=case: run_builtin(c, device, epochs,
                                                                         {"compile": True})
        print(f"  {device.type}: {label} ...", flush=True)
        out[label] = measure(loops, device, n, repeats)
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [("| device | network, data | loop | samples/s (fastest run) | builtin / this | "
             "same from medians | runs s |"), "|---|---|---|---|---|---|---|"]
    for device, cases in results.items():
        for label, loops in cases.items():
            ref = loops["builtin"]
            for name, r in loops.items():
                runs = ", ".join(f"{t:.2f}" for t in r["seconds"])
                lines.append(f"| {device} | {label} | {name} | {r['samples_per_s']:,.0f} | "
                             f"{ref['samples_per_s'] / r['samples_per_s']:.2f}x | "
                             f"{ref['samples_per_s_median'] / r['samples_per_s_median']:.2f}x | "
                             f"{runs} |")
    return lines


def goals(results: dict[str, Any]) -> list[str]:
    lines = []
    for label, loops in results["cpu"].items():
        b = loops["builtin"]["samples_per_s"]
        hand = b / loops["hand-written"]["samples_per_s"]
        tuned = b / loops["hand-written, no per-step sync"]["samples_per_s"]
        loader = b / loops["DataLoader"]["samples_per_s"]
        lines += [
            (f"- {label}: builtin vs hand-written **{hand:.2f}x** (goal >= {GOAL_HAND:.1f}x, "
            f"i.e. no slower): **{'MET' if hand >= GOAL_HAND else 'NOT MET'}**; vs the no-sync "
            f"fused-Adam loop {tuned:.2f}x; vs DataLoader **{loader:.2f}x** (goal >= "
            f"{GOAL_LOADER:.1f}x): **{'MET' if loader >= GOAL_LOADER else 'NOT MET'}**")]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import warnings

    warnings.filterwarnings("ignore", message=".*is ignored on cpu")
    results: dict[str, Any] = {"cpu": bench_device(torch.device("cpu"), CASES, args.epochs,
                                                   args.repeats)}
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        results["cuda"] = bench_device(torch.device("cuda"), {**CASES, **GPU_CASES}, args.epochs,
                                       args.repeats)
    import os

    load = os.getloadavg()
    lines = [
        "# Trainer speed: built-in trainer vs hand-written loops vs DataLoader", "",
        (f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · torch {torch.__version__} · CPU "
        f"threads pinned to {args.threads} · {args.epochs} epochs per run, fastest of "
        f"{args.repeats} round-robin runs after a warm-up · GPU: "
        f"{gpu or 'none here (CUDA not available), so only CPU rows'} · load average at the end "
        f"{load[0]:.1f} (shared machine)"), "",
        *table(results), "",
        ("\"builtin / this\" > 1 means the built-in trainer is faster than that loop. Every loop "
        "trains the same network from the same seed with Adam (lr 1e-3) and evaluates the "
        "validation split every epoch; see the docstring of benchmarks/trainer.py."), "",
        "## Goals (CPU)", "", *goals(results), "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer.md").write_text("\n".join(lines))
    (args.out / "trainer.json").write_text(json.dumps(
        {"epochs": args.epochs, "repeats": args.repeats, "threads": args.threads, "gpu": gpu,
         "torch": torch.__version__, "results": results}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
