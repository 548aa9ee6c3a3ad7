"""Long-lived trial workers (one Ray actor each): import once, load data once, train many trials.

Ray Tune's default starts a fresh process per trial (~3.4 s each here); a worker here pulls its
next trial from the coordinator in one round trip and keeps torch, the trainable and the dataset
warm between trials — and, in one driver process, between studies (see ``_pool``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import ray
import torch

from tuner.execution._coordinator import Assignment, TrialResult
from tuner.execution._trial import run_trial
from tuner.spec import StudySpec, parse_spec
from tuner.training import TrialContext, load_dataset, resolve_trainable

__all__ = ["TrialWorker"]


class TrialWorker:
    """Runs trials of a study until the coordinator has none left; then waits for the next study.

    Args:
        threads: torch intra-op threads, pinned to the trial's CPU share.
        use_gpu: the actor holds a GPU (fraction); CUDA_VISIBLE_DEVICES is set by Ray.
        code_dir: the driver's working directory, importable for ``package.module:function``.
    """

    def __init__(self, threads: int, use_gpu: bool, code_dir: str | None = None) -> None:
        torch.set_num_threads(max(1, threads))
        if code_dir and os.path.isdir(code_dir) and code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        use_gpu = use_gpu and torch.cuda.is_available()
        self._device = torch.device("cuda", 0) if use_gpu else torch.device("cpu")
        self._device_name = (
            f"cuda:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')} ({torch.cuda.get_device_name(0)})"
            if use_gpu else "cpu"
        )
        self._host = socket.gethostname()
        self._node: str | None = None
        self._gpu_ids: list[str] = []
        if ray.is_initialized():  # inside an actor; plain-Python use (tests, benchmarks) has none
            rc = ray.get_runtime_context()
            self._node = rc.get_node_id()
            self._gpu_ids = [str(g) for g in rc.get_accelerator_ids().get("GPU", [])]
        # The first torch.optim optimizer of a process imports torch._dynamo (seconds); pay it
        # here, while the coordinator starts, not inside the first trial's measured duration.
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        self._spec_key: str | None = None
        self._spec: StudySpec | None = None
        self._fn: Any = None

    def prepare(self, spec_json: dict[str, Any]) -> None:
        """Import the trainable and load the dataset onto the device before the first trial."""
        key = json.dumps(spec_json, sort_keys=True)
        if key == self._spec_key:
            return
        spec = parse_spec(spec_json)
        self._fn = resolve_trainable(spec.trainable)
        if spec.dataset is not None and spec.trainable.startswith("builtin:"):
            load_dataset(spec.dataset.model_dump(), self._device)
        self._spec, self._spec_key = spec, key

    def run(self, coordinator: Any, spec_json: dict[str, Any], worker_id: str) -> int:
        """Pull-train-push loop; returns how many trials this worker ran."""
        self.prepare(spec_json)
        result: TrialResult | None = None
        done = 0
        while True:
            assignment = ray.get(coordinator.next_trial.remote(worker_id, result))
            if assignment is None:
                return done
            result = self.run_one(assignment, coordinator, worker_id)
            done += 1

    def run_one(self, a: Assignment, coordinator: Any = None, worker_id: str | None = None) -> TrialResult:
        spec = self._spec
        assert spec is not None, "prepare() runs first"  # internal invariant, not user input
        hook = None
        if spec.pruner.kind != "none" and coordinator is not None:
            def hook(epoch: int, value: float) -> bool:
                return bool(ray.get(coordinator.report.remote(a.trial_id, epoch, value)))
        ctx = TrialContext(
            trial_number=a.number, device=self._device, epochs=spec.epochs,
            objective_metric=spec.objective.metric, direction=spec.objective.direction,
            dataset=spec.dataset.model_dump() if spec.dataset else None,
            seed=None if spec.seed is None else spec.seed + a.number, prune_hook=hook,
        )
        result = run_trial(self._fn, {**spec.fixed, **a.params}, ctx, trial_id=a.trial_id)
        result.host, result.device, result.worker = self._host, self._device_name, worker_id
        result.node, result.gpu_ids = self._node, self._gpu_ids
        result.reported = hook is not None
        return result
