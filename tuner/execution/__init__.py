"""Execution on Ray: coordinator (owns the study), workers (train trials), driver (runs both).

Workers import torch; the coordinator must not (it would cost its process seconds of start-up),
so the worker-side names are attached lazily.
"""

from __future__ import annotations

import lazy_loader as lazy

from tuner.execution._coordinator import INFRA_REASONS, Assignment, Coordinator, TrialResult

__all__ = [
    "Coordinator", "Assignment", "TrialResult", "INFRA_REASONS", "TrialWorker", "run_trial",
    "run_study", "ensure_ray", "release_workers",
]

# Workers and the driver import torch and Ray's driver side; a coordinator's process and the
# CLI's read commands import this package and must not pay for that: attached lazily.
__getattr__, _, _ = lazy.attach(__name__, submod_attrs={
    "_worker": ["TrialWorker"], "_trial": ["run_trial"], "_driver": ["run_study", "ensure_ray"],
    "_pool": ["release_workers"],
})


def __dir__() -> list[str]:
    return sorted(__all__)
