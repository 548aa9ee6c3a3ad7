"""Long-lived trial workers (one Ray actor each): import once, load data once, train many trials.

Ray Tune's default starts a fresh process per trial (~3.4 s each here); a worker here pulls its
next trial from the coordinator in one round trip and keeps torch, the trainable and the dataset
warm between trials — and, in one driver process, between studies (see ``_pool``).

With ``resources.pack`` > 1 (or ``auto``) and a built-in trainable, a worker asks for packs
(``Coordinator.next_pack``) and trains each as one fused model (``tuner.training._packed``); a
pack of one, and ``pack: 1``, run the single-trial path unchanged.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from typing import Any

from typing import TYPE_CHECKING

import lazy_loader as lazy
import ray

from tuner import training
from tuner.execution._coordinator import Assignment, TrialResult
from tuner.execution._trial import run_trial
from tuner.spec import StudySpec
from tuner.training._pack_key import PACKABLE_KINDS

if TYPE_CHECKING:
    from tuner.training import TrialContext

# The driver imports this module only to hand the class to ``ray.remote``: torch (seconds of
# import) is loaded where trials run, in the worker process, not in every `tuner submit`.
torch = lazy.load("torch")

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
        self._spec: StudySpec | None = None
        self._fn: Any = None
        self._pack = 1

    def prepare(self, spec: StudySpec) -> None:
        """Import the trainable and load the dataset onto the device before the first trial.

        Called when each study starts. A worker kept warm from an earlier study first drops the
        user's modules and data files that changed on disk since it loaded them: the study
        trains the code and data as they are now, not as they were for the study before."""
        changed = training.forget_changed_modules() + training.drop_changed_datasets()
        if spec == self._spec and not changed:
            return
        self._fn = training.resolve_trainable(spec.trainable)
        if spec.dataset is not None and spec.trainable.startswith("builtin:"):
            training.load_dataset(spec.dataset.model_dump(), self._device)
        self._spec = spec
        self._pack = self._pack_size(spec)

    def _pack_size(self, spec: StudySpec) -> int:
        """``resources.pack``: 1 for user trainables; ``auto`` (the default) probes this device
        (about half a second on CPU) with members of the study (see ``_probe_configs``) for
        sizes up to ``_pack_cap``, once per process for a given shape, device and data set: a
        warm worker's next study of the same shape starts at once. A study too small to give
        every worker two packs skips the probe."""
        kind = spec.trainable.removeprefix("builtin:")
        if not spec.trainable.startswith("builtin:") or kind not in PACKABLE_KINDS \
                or spec.dataset is None:
            return 1
        if spec.resources.pack != "auto":
            return int(spec.resources.pack)
        cap = _pack_cap(spec)
        if cap < 2:
            return 1
        speed, memory = _probe_configs(spec)
        dataset = spec.dataset.model_dump()
        share = _device_share(spec, self._device)
        key = json.dumps([kind, speed, memory, dataset, str(self._device), share,
                          spec.objective.metric], sort_keys=True, default=str)
        if key not in _PROBED:  # (the best size under a cap is the best size, capped)
            from tuner.training._packed import probe_pack_size

            ctx = training.TrialContext(device=self._device, epochs=spec.epochs,
                                        objective_metric=spec.objective.metric,
                                        direction=spec.objective.direction, dataset=dataset)
            try:
                _PROBED[key] = probe_pack_size(speed, ctx, kind, share=share,
                                               memory_config=memory)
            except Exception:  # noqa: BLE001 - a config the trainer refuses: trials fail alone
                _PROBED[key] = 1
        return min(_PROBED[key], cap)

    def run(self, coordinator: Any, spec: StudySpec, worker_id: str) -> int:
        """Pull-train-push loop; returns how many trials this worker ran."""
        self.prepare(spec)
        if self._pack > 1:
            return self._run_packs(coordinator, worker_id)
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
        ctx = training.TrialContext(
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

    def _run_packs(self, coordinator: Any, worker_id: str) -> int:
        results: list[TrialResult] | None = None
        done = 0
        while True:
            batch = ray.get(coordinator.next_pack.remote(worker_id, results, self._pack))
            if not batch:
                return done
            results = self.run_pack(batch, coordinator, worker_id)
            done += len(batch)

    def run_pack(self, batch: list[Assignment], coordinator: Any = None,
                 worker_id: str | None = None) -> list[TrialResult]:
        """Train ``batch`` as one fused model; one :class:`TrialResult` per member, each
        classified as :func:`run_trial` classifies a trial run alone."""
        spec = self._spec
        assert spec is not None, "prepare() runs first"  # internal invariant, not user input
        if len(batch) == 1:
            return [self.run_one(batch[0], coordinator, worker_id)]
        from tuner.training._packed import fit_pack

        # A member's stop (pruned, timed out, the study stopping) reaches it through report().
        watched = coordinator is not None and (spec.pruner.kind != "none"
                                               or spec.trial_timeout_s is not None)
        ctxs = [training.TrialContext(
            trial_number=a.number, device=self._device, epochs=spec.epochs,
            objective_metric=spec.objective.metric, direction=spec.objective.direction,
            dataset=spec.dataset.model_dump() if spec.dataset else None,
            seed=None if spec.seed is None else spec.seed + a.number,
            prune_hook=_hook(coordinator, a.trial_id) if watched else None,
        ) for a in batch]
        configs = [{**spec.fixed, **a.params} for a in batch]
        kind = spec.trainable.removeprefix("builtin:")
        try:
            outcomes: list[Any] = list(fit_pack(configs, ctxs, kind))
        except Exception as e:  # noqa: BLE001 - e.g. members that cannot fuse: each fails with it
            outcomes = [e] * len(batch)
        results = []
        for a, config, ctx, outcome in zip(batch, configs, ctxs, outcomes, strict=True):
            result = run_trial(_replay(outcome), config, ctx, trial_id=a.trial_id)
            result.host, result.device, result.worker = self._host, self._device_name, worker_id
            result.node, result.gpu_ids = self._node, self._gpu_ids
            result.reported = watched and spec.pruner.kind != "none"
            results.append(result)
        return results


def _hook(coordinator: Any, trial_id: int) -> Any:
    """A member's prune hook: the coordinator actor's ``report`` (or a plain in-process
    coordinator's, as the scheduling tests drive it)."""
    report = coordinator.report
    if hasattr(report, "remote"):
        def hook(epoch: int, value: float) -> bool:
            return bool(ray.get(report.remote(trial_id, epoch, value)))
    else:
        def hook(epoch: int, value: float) -> bool:
            return bool(report(trial_id, epoch, value))
    return hook


def _replay(outcome: Any) -> Any:
    """A trainable that returns (or raises) what ``fit_pack`` gave one member, so ``run_trial``
    classifies it exactly as it classifies a trial trained alone."""
    def fn(config: dict[str, Any], ctx: TrialContext) -> Any:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    return fn


_WIDTH_KEYS = ("hidden_units", "channels")
_MEMORY_KEYS = (*_WIDTH_KEYS, "batch_size", "layers")  # what makes one member bigger
_PROBED: dict[str, int] = {}  # pack: auto's probe results in this process (see _pack_size)


def _device_share(spec: StudySpec, device: torch.device | str) -> float:
    """The part of its device a worker may fill with a pack: its GPU fraction (a worker with a
    whole GPU or more trains on one), or its CPUs out of the host's on CPU. Ray puts as many
    workers on a device as their shares allow, and they all probe at once."""
    if str(device).startswith("cuda"):
        return min(1.0, spec.resources.gpus_per_trial) or 1.0
    return min(1.0, spec.resources.cpus_per_trial / (os.cpu_count() or 1))


def _probe_configs(spec: StudySpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The members ``pack: auto`` probes with: one for speed, one for memory.

    Speed: each searched number at the middle of its scale (widths at twice that, within the
    range: packs hold members of similar width and compute at their widest), the first of each
    choice, but the batch size at its smallest. Small batches take most steps per epoch, so
    those trials take most of a study's time, and they gain most from packing; a pack of larger
    batches gains less but never trains slower. Memory: the same member with every width, batch
    size and layer count at its largest, so that no pack the coordinator may form outgrows the
    worker's share of its device."""
    speed, memory = dict(spec.fixed), dict(spec.fixed)
    for name, p in spec.params.items():
        if p.type == "categorical":  # (int params list their values as choices too)
            speed[name] = memory[name] = p.choices[0]
            numbers = [c for c in p.choices if isinstance(c, int) and not isinstance(c, bool)]
            if name in _MEMORY_KEYS and len(numbers) == len(p.choices):
                memory[name] = max(numbers)
                if name == "batch_size":
                    speed[name] = min(numbers)
            continue
        low, high = getattr(p, "low", None), getattr(p, "high", None)
        if low is None or high is None:
            continue
        scale = getattr(p, "scale", "linear")
        if scale in ("log", "pow2"):
            mid = math.sqrt(low * high)
            if scale == "pow2":
                mid = 2 ** round(math.log2(mid))
        elif scale == "one_minus_log":
            mid = 1 - math.sqrt((1 - low) * (1 - high))
        else:
            mid = (low + high) / 2
        if name in _WIDTH_KEYS:
            mid = min(2 * mid, high)
        if name == "batch_size":
            mid = low
        whole = isinstance(low, int) and isinstance(high, int)
        speed[name] = int(round(mid)) if whole else mid
        memory[name] = high if name in _MEMORY_KEYS else speed[name]
    return speed, memory


def _pack_cap(spec: StudySpec) -> int:
    """The largest pack ``auto`` may pick: every worker gets at least two packs of the study
    (ten for TPE, whose asks use the results so far: a pack of P holds back P trials' results
    from the sampler, and TPE asks two packs ahead)."""
    rounds = 10 if spec.sampler.kind == "tpe" else 2
    return max(1, spec.trials // (rounds * spec.resources.workers))
