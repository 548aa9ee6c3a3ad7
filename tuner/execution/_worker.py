"""Long-lived trial workers (one Ray actor each): import once, load data once, train many trials.

Ray Tune's default starts a fresh process per trial (~3.4 s each here); a worker here pulls its
next trial from the coordinator in one round trip and keeps torch, the trainable and the dataset
warm between trials.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import ray
import torch

from tuner.execution._coordinator import Assignment, TrialResult
from tuner.execution._trial import run_trial
from tuner.spec import parse_spec
from tuner.training import TrialContext, resolve_trainable

__all__ = ["TrialWorker"]


class TrialWorker:
    """Runs trials of one study until the coordinator has none left."""

    def __init__(self, spec_json: dict[str, Any], worker_id: str, code_dir: str | None = None) -> None:
        self._spec = parse_spec(spec_json)
        self._id = worker_id
        threads = max(1, int(self._spec.resources.cpus_per_trial))
        torch.set_num_threads(threads)
        if code_dir and os.path.isdir(code_dir) and code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        self._fn = resolve_trainable(self._spec.trainable)
        use_gpu = self._spec.resources.gpus_per_trial > 0 and torch.cuda.is_available()
        self._device = torch.device("cuda", 0) if use_gpu else torch.device("cpu")
        self._device_name = (
            f"cuda:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')} ({torch.cuda.get_device_name(0)})"
            if use_gpu else "cpu"
        )
        self._host = socket.gethostname()
        self._prune = self._spec.pruner.kind != "none"

    def run(self, coordinator: Any) -> int:
        """Pull-train-push loop; returns how many trials this worker ran."""
        result: TrialResult | None = None
        done = 0
        while True:
            assignment = ray.get(coordinator.next_trial.remote(self._id, result))
            if assignment is None:
                return done
            result = self.run_one(assignment, coordinator)
            done += 1

    def run_one(self, a: Assignment, coordinator: Any = None) -> TrialResult:
        spec = self._spec
        hook = None
        if self._prune and coordinator is not None:
            def hook(epoch: int, value: float) -> bool:
                return bool(ray.get(coordinator.report.remote(a.number, epoch, value)))
        ctx = TrialContext(
            trial_number=a.number, device=self._device, epochs=spec.epochs,
            objective_metric=spec.objective.metric, direction=spec.objective.direction,
            dataset=spec.dataset.model_dump() if spec.dataset else None,
            seed=None if spec.seed is None else spec.seed + a.number, prune_hook=hook,
        )
        result = run_trial(self._fn, {**spec.fixed, **a.params}, ctx)
        result.host, result.device, result.worker = self._host, self._device_name, self._id
        result.reported = hook is not None
        return result
