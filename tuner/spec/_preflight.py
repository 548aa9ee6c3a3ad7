"""Whether a study's trials fit the machine it runs on, checked before Ray starts.

On the embedded default (no ``--address``) each trial must fit this machine, as the driver will
demand once Ray is up; counted as Ray counts (cgroup quotas, cpusets, NVML). Nothing here starts
Ray or imports torch.
"""

from __future__ import annotations

import ctypes
import os

from tuner._errors import SpecError
from tuner.spec._model import StudySpec

__all__ = ["check_resources", "local_cpus", "local_gpus"]


def check_resources(spec: StudySpec, address: str | None) -> None:
    """On the embedded default each trial must fit this machine (the driver refuses it once Ray
    is up; here it costs no Ray start). With ``--address`` or ``$RAY_ADDRESS`` the cluster
    decides, and an autoscaler may add a node that fits."""
    if address is not None or os.environ.get("RAY_ADDRESS"):
        return
    res = spec.resources
    cpus = local_cpus()
    if res.cpus_per_trial > cpus:
        raise SpecError("resources.cpus_per_trial", f"{res.cpus_per_trial:g} CPUs per trial, but "
                        f"this machine has {cpus}; lower it to at most {cpus}, or run on a "
                        "cluster with --address")
    if res.gpus_per_trial > 0:
        gpus = local_gpus()
        if res.gpus_per_trial > gpus:
            raise SpecError("resources.gpus_per_trial", f"{res.gpus_per_trial:g} GPUs per "
                            f"trial, but this machine has {gpus} CUDA device(s); set 0 to train "
                            "on the CPU, or run on a GPU cluster with --address")


def local_cpus() -> int:
    """The CPUs a local Ray would declare: the machine's, fewer under a cgroup quota or cpuset
    (a container), as Ray counts them."""
    count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, int(quota)))
    try:
        count = min(count, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        pass
    return max(1, count)


def local_gpus() -> int:
    """NVIDIA GPUs a local Ray would see: NVML's count, limited by ``CUDA_VISIBLE_DEVICES``."""
    count = _nvml_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        count = min(count, len(ids))
    return count


def _nvml_count() -> int:
    """Device count from the NVIDIA driver's own library (what Ray asks), without torch."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    try:
        if lib.nvmlInit_v2() != 0:
            return 0
        n = ctypes.c_uint(0)
        ok = lib.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0
        lib.nvmlShutdown()
        return int(n.value) if ok else 0
    except AttributeError:  # a library without these symbols is no usable driver
        return 0


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v1 or v2 quota, or None when unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, \
                open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
            quota, period = float(q.read()), float(p.read())
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu.max") as f:
                parts = f.read().split()
            if len(parts) != 2 or not parts[0].isnumeric():
                return None
            quota, period = float(parts[0]), float(parts[1])
        except (OSError, ValueError):
            return None
    if quota < 0 or period <= 0:
        return None
    return max(quota / period, 1.0)
