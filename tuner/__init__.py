"""tuner: hyperparameter tuning for PyTorch networks — Optuna decides, Ray runs, SQL keeps.

Public API::

    import tuner
    study = tuner.submit("search_spaces/quickstart.yaml", trials=20)
    study.best_trials(5)
    tuner.load_study("quickstart").curve(0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tuner._errors import (
    Diverged,
    SpecError,
    StorageError,
    StudyBusyError,
    StudyCancelled,
    StudyExistsError,
    StudyNotFoundError,
    TrainableError,
    TunerError,
)
from tuner._study import StageInfo, Study, StudySummary, TrialRecord, list_studies, load_study
from tuner._study_reads import TrialPage
from tuner.spec import StudySpec, load_spec

__all__ = [
    "submit", "resume", "load_study", "list_studies", "load_spec", "Study", "StudySummary",
    "TrialRecord", "TrialPage", "StageInfo", "StudySpec", "TrialContext", "TunerError", "SpecError", "StorageError",
    "StudyNotFoundError", "StudyExistsError", "StudyBusyError", "StudyCancelled", "TrainableError", "Diverged",
]


def __getattr__(name: str) -> Any:
    # TrialContext pulls in torch (~2 s); the CLI's read commands should not pay for it.
    if name == "TrialContext":
        from tuner.training import TrialContext

        return TrialContext
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


def submit(
    spec: str | Path | Mapping[str, Any] | StudySpec, *, storage: str | None = None,
    address: str | None = None, name: str | None = None, trials: int | None = None,
    workers: int | None = None, sampler: str | None = None, seed: int | None = None,
    epochs: int | None = None, warm_start: str | None = None, warm_start_k: int = 5,
) -> Study:
    """Run a study to completion and return it. Overrides win over the spec's values.

    ``warm_start="other"`` runs study ``other``'s ``warm_start_k`` best complete configurations
    (fitted to this spec's space; a ``UserWarning`` says what was dropped or clipped) first.
    """
    import warnings

    from tuner._warm_start import plan_warm_start
    from tuner.execution import run_study
    from tuner.spec import check_resources, check_runtime

    parsed = load_spec(spec, **{"study": name, "trials": trials, "resources.workers": workers,
                                "sampler.kind": sampler, "sampler.seed": seed, "epochs": epochs})
    check_runtime(parsed)
    if not _joined_ray():  # a process that already ran ray.init runs the study on that cluster
        check_resources(parsed, address)
    plan = plan_warm_start(parsed, warm_start, storage, warm_start_k) if warm_start else None
    if plan is not None and plan.summary(str(warm_start)):
        warnings.warn(str(plan.summary(str(warm_start))), UserWarning, stacklevel=2)
    run_study(parsed, storage, address=address, warm_start=plan.entries if plan else None)
    return load_study(parsed.study, storage)


def resume(name: str, *, storage: str | None = None, address: str | None = None,
           trials: int | None = None) -> Study:
    """Continue a stored study to its trial count (or ``trials``); interrupted trials re-run."""
    from tuner.execution import run_study

    spec = load_study(name, storage).spec
    if spec is None:
        raise StudyNotFoundError(f"study '{name}' was not created by tuner; it has no spec to resume")
    run_study(spec, storage, address=address, resume=True, trials=trials)
    return load_study(name, storage)


def _joined_ray() -> bool:
    """True when this process already joined a Ray cluster (without importing Ray)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())
