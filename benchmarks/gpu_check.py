"""GPU check of the real path, run by hand on a CUDA machine (``python benchmarks/gpu_check.py``).

1. Trainer throughput on CUDA: ``fit_mlp`` samples/s in fp32 and with ``amp: bf16``, against the
   same network's plain CPU run in the same process (ratios, not absolute claims).
2. A real study on a local Ray with ``gpus_per_trial: 0.25`` and 4 workers: how many trials ran at
   once on the one GPU (never more than 1 / 0.25 = 4), the device each trial recorded, and the
   GPU utilisation sampled by nvidia-smi while it ran.
3. CUDA out-of-memory: a trial whose network cannot fit fails with reason ``oom`` and the same
   worker goes on to finish the next trial.

Run it from ``benchmarks/`` (the OOM trainable is imported from this file).
Writes ``benchmarks/results/gpu_check.md`` (or ``$OUT/gpu_check.md`` when OUT is set).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

import tuner
from tuner.training import TrialContext, fit_mlp

DATA = {"name": "synthetic_classification", "n_samples": 40000, "n_features": 64, "n_classes": 10,
        "n_informative": 32}


def trainer_rate(device: str, amp: str, epochs: int = 5) -> float:
    cfg = {"optimizer": "adam", "lr": 1e-3, "layers": 3, "hidden_units": 512, "batch_size": 256,
           "amp": amp}
    ctx = TrialContext(device=torch.device(device), epochs=1, objective_metric="val_accuracy",
                       direction="maximize", dataset=DATA, seed=0)
    fit_mlp(cfg, ctx)  # warm-up: data to device, kernels, allocator
    if device == "cuda":
        torch.cuda.synchronize()
    ctx = TrialContext(device=torch.device(device), epochs=epochs, objective_metric="val_accuracy",
                       direction="maximize", dataset=DATA, seed=0)
    t0 = time.perf_counter()
    fit_mlp(cfg, ctx)
    if device == "cuda":
        torch.cuda.synchronize()
    n_train = int(DATA["n_samples"] * 0.8)
    return n_train * epochs / (time.perf_counter() - t0)


def sample_gpu(stop: threading.Event, out: list[int]) -> None:
    while not stop.is_set():
        try:
            txt = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout
            out.append(int(txt.strip().splitlines()[0]))
        except Exception:  # noqa: BLE001 - sampling is best effort
            pass
        time.sleep(0.5)


def packed_study(url: str) -> dict:
    spec = {
        "study": "gpu-pack", "trainable": "builtin:mlp", "dataset": DATA,
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": {"kind": "random", "seed": 0}, "trials": 24, "epochs": 6,
        "resources": {"workers": 4, "cpus_per_trial": 1, "gpus_per_trial": 0.25},
        "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "scale": "log"},
                   "batch_size": {"type": "int", "low": 128, "high": 1024, "scale": "pow2"},
                   "layers": {"type": "int", "low": 2, "high": 4}},
        "fixed": {"optimizer": "adam", "hidden_units": 512},
    }
    util: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(stop, util), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    study = tuner.submit(spec, storage=url)
    wall = time.perf_counter() - t0
    stop.set()
    trials = study.trials()
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials if t.datetime_complete)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    busy = [u for u in util if u > 0]
    return {"wall_s": wall, "complete": study.counts()["COMPLETE"], "peak_concurrent": peak,
            "devices": sorted({t.device for t in trials}), "best": study.best_trial.value,
            "gpu_util_mean": sum(busy) / len(busy) if busy else 0.0, "gpu_util_max": max(util or [0])}


def oom_fit(config: dict, ctx: TrialContext) -> dict:
    """A trainable whose first trial asks the GPU for far more than it has (run from benchmarks/)."""
    if config["gigabytes"] > 1000:
        torch.empty(int(config["gigabytes"] * 2**30), dtype=torch.uint8, device=ctx.device)
    return fit_mlp({"optimizer": "adam", "layers": 2}, ctx)


def oom_study(url: str) -> dict:
    spec = {
        "study": "gpu-oom", "trainable": "gpu_check:oom_fit", "dataset": {"name": "digits"},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": {"kind": "grid"}, "trials": 3, "epochs": 2,
        "resources": {"workers": 1, "gpus_per_trial": 1},
        "params": {"gigabytes": {"type": "categorical", "choices": [4000, 1, 2]}},
    }
    study = tuner.submit(spec, storage=url)
    return [(t.params["gigabytes"], t.state, t.reason, t.device) for t in study.trials()]


def main() -> None:
    out_dir = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# GPU check — {torch.cuda.get_device_name(0)}, torch {torch.__version__}", ""]
    cpu = trainer_rate("cpu", "none", epochs=2)
    fp32 = trainer_rate("cuda", "none")
    bf16 = trainer_rate("cuda", "bf16")
    lines += ["## Trainer (3x512 MLP, 32k samples, batch 256)", "",
              "| run | samples/s | vs CPU |", "|---|---|---|",
              f"| CPU ({torch.get_num_threads()} threads) | {cpu:,.0f} | 1.00 |",
              f"| CUDA fp32 | {fp32:,.0f} | {fp32 / cpu:.1f}x |",
              f"| CUDA bf16 autocast | {bf16:,.0f} | {bf16 / cpu:.1f}x |", ""]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/gpu.db"
        pack = packed_study(url)
        oom = oom_study(url)
    lines += ["## Fractional GPUs (gpus_per_trial 0.25, 4 workers, 24 trials)", "",
              f"- complete: {pack['complete']}, wall {pack['wall_s']:.1f} s, best {pack['best']:.4f}",
              f"- peak trials running at once on the one GPU: {pack['peak_concurrent']} (limit 4)",
              f"- devices recorded: {pack['devices']}",
              f"- GPU utilisation while busy: mean {pack['gpu_util_mean']:.0f}%, max {pack['gpu_util_max']}%",
              "", "## CUDA out-of-memory", ""]
    lines += [f"- trial asking {gb} GB: {state} reason={reason} device={dev}" for gb, state, reason, dev in oom]
    lost = sum(1 for *_, reason, _ in oom if reason == "worker_lost")
    lines.append(f"- trials lost with their worker: {lost} (the one worker survived the OOM)")
    text = "\n".join(lines) + "\n"
    (out_dir / "gpu_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
