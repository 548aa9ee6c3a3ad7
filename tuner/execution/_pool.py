"""Warm workers kept between studies run from one driver process (notebooks, test sessions).

A worker costs seconds to start (a process, torch, the dataset); a second ``tuner.submit`` in the
same Python session reuses the first one's workers when their resources match. Idle pooled
workers hold their Ray resources, so the pool keeps one resource shape only and gives the rest
back, and it is emptied when the Ray session changes or after ``IDLE_S`` without a study (idle
workers would otherwise hold CPUs that other drivers and Ray jobs on the cluster wait for).
"""

from __future__ import annotations

import threading
from typing import Any

import ray

__all__ = ["take_workers", "return_workers", "release_workers"]

IDLE_S = 60.0
_pool: list[Any] = []
_key: tuple[Any, ...] | None = None
_generation = 0
_timer: threading.Timer | None = None
_lock = threading.RLock()


def _session() -> str:
    return ray.get_runtime_context().get_job_id()


def take_workers(n: int, shape: tuple[Any, ...]) -> list[Any]:
    """Up to ``n`` pooled workers of ``shape``; pooled workers of another shape are killed."""
    with _lock:
        return _take(n, shape)


def _take(n: int, shape: tuple[Any, ...]) -> list[Any]:
    global _key, _generation
    _generation += 1  # an idle timer that fires now finds nothing of its own to release
    if _key is None or _key != (_session(), *shape):
        release_workers()
        _key = (_session(), *shape)
    taken, rest = _pool[:n], _pool[n:]
    _pool[:] = []
    for actor in rest:
        ray.kill(actor)
    return taken


def return_workers(actors: list[Any], idle_s: float = IDLE_S) -> None:
    """Keep ``actors`` for the next study; if none comes within ``idle_s``, give them back so
    their CPUs/GPUs are free for other drivers and jobs on the cluster."""
    global _generation, _timer
    with _lock:
        _pool.extend(actors)
        _generation += 1
        if _timer is not None:
            _timer.cancel()
        _timer = threading.Timer(idle_s, _expire, args=(_generation,))
        _timer.daemon = True
        _timer.start()


def _expire(generation: int) -> None:
    with _lock:
        if generation == _generation and _pool:
            release_workers()


def release_workers() -> None:
    """Kill every pooled worker (frees their CPUs/GPUs in Ray)."""
    global _key
    if ray.is_initialized():
        for actor in _pool:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - the actor's Ray session may be gone already
                pass
    _pool[:] = []
    _key = None
