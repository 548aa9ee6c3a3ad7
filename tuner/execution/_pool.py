"""Warm workers kept between studies run from one driver process (notebooks, test sessions).

A worker costs seconds to start (a process, torch, the dataset); a second ``tuner.submit`` in the
same Python session reuses the first one's workers when their resources match. Idle pooled
workers hold their Ray resources, so the pool keeps one resource shape only and gives the rest
back, and it is emptied when the Ray session changes.
"""

from __future__ import annotations

from typing import Any

import ray

__all__ = ["take_workers", "return_workers", "release_workers"]

_pool: list[Any] = []
_key: tuple[Any, ...] | None = None


def _session() -> str:
    return ray.get_runtime_context().get_job_id()


def take_workers(n: int, shape: tuple[Any, ...]) -> list[Any]:
    """Up to ``n`` pooled workers of ``shape``; pooled workers of another shape are killed."""
    global _key
    if _key is None or _key != (_session(), *shape):
        release_workers()
        _key = (_session(), *shape)
    taken, rest = _pool[:n], _pool[n:]
    _pool[:] = []
    for actor in rest:
        ray.kill(actor)
    return taken


def return_workers(actors: list[Any]) -> None:
    _pool.extend(actors)


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
