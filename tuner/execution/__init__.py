"""Execution on Ray: coordinator (owns the study), workers (train trials), driver (runs both).

Workers import torch; the coordinator must not (it would cost its process seconds of start-up),
so the worker-side names are imported lazily.
"""

from __future__ import annotations

from typing import Any

from tuner.execution._coordinator import INFRA_REASONS, Assignment, Coordinator, TrialResult

__all__ = [
    "Coordinator", "Assignment", "TrialResult", "INFRA_REASONS", "TrialWorker", "run_trial",
    "run_study", "ensure_ray", "release_workers",
]

_LAZY = {
    "TrialWorker": "tuner.execution._worker",
    "run_trial": "tuner.execution._trial",
    "run_study": "tuner.execution._driver",
    "ensure_ray": "tuner.execution._driver",
    "release_workers": "tuner.execution._pool",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner.execution' has no attribute {name!r}")
