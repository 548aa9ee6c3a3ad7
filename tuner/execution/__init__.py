"""Execution on Ray: coordinator (owns the study), workers (train trials), driver (runs both)."""

from tuner.execution._coordinator import INFRA_REASONS, Assignment, Coordinator, TrialResult
from tuner.execution._driver import absolute_url, ensure_ray, run_study
from tuner.execution._trial import run_trial
from tuner.execution._worker import TrialWorker

__all__ = [
    "Coordinator", "Assignment", "TrialResult", "INFRA_REASONS", "TrialWorker", "run_trial",
    "run_study", "ensure_ray", "absolute_url",
]
