"""tuner: hyperparameter tuning for PyTorch networks — Optuna decides, Ray runs, SQL keeps.

Public API::

    import tuner
    study = tuner.submit("search_spaces/quickstart.yaml", trials=20)
    study.best_trials(5)
    tuner.load_study("quickstart").curve(0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import lazy_loader as lazy

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
from tuner._study import (
    StageInfo,
    Study,
    StudySummary,
    TrialPage,
    TrialRecord,
    list_studies,
    load_study,
)
from tuner.spec import StudySpec, load_spec
from tuner.storage import Storage, get_storage

__all__ = [
    "submit", "resume", "validate", "load_study", "list_studies", "load_spec", "Study", "StudySummary",
    "TrialRecord", "TrialPage", "StageInfo", "StudySpec", "TrialContext", "TunerError", "SpecError", "StorageError",
    "StudyNotFoundError", "StudyExistsError", "StudyBusyError", "StudyCancelled", "TrainableError", "Diverged",
]


# TrialContext pulls in torch (~2 s): the CLI's read commands must not pay for it, so it (and
# only it) is attached lazily, with scientific Python's lazy_loader (SPEC 1).
__getattr__, _, _ = lazy.attach(__name__, submod_attrs={"training": ["TrialContext"]})


def __dir__() -> list[str]:
    return sorted(__all__)


def validate(
    spec: str | Path | Mapping[str, Any] | StudySpec, *, address: str | None = None,
    resources: bool = True, storage: Storage | str | None = None, warm_start: str | None = None,
    warm_start_k: int = 5, **overrides: Any,
) -> StudySpec:
    """Load ``spec`` with ``overrides`` (``name``, ``trials``, ``workers``, ``sampler``,
    ``seed``, ``epochs``) and run every check ``submit`` makes before Ray starts; ``resources``
    also checks that each trial fits the embedded default (skipped with an ``address``), and a
    ``warm_start`` donor must be in ``storage``. A spec that validates fails afterwards only for
    runtime reasons: divergence, OOM, the cluster."""
    from tuner.spec import check_resources
    from tuner.training import check_study

    unknown = set(overrides) - set(_OVERRIDES)
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)}; use {', '.join(_OVERRIDES)}")
    parsed = load_spec(spec, **{_OVERRIDES[k]: v for k, v in overrides.items()})
    check_study(parsed)
    if resources:
        check_resources(parsed, address)
    if warm_start is not None:
        from tuner._warm_start import plan_warm_start

        plan_warm_start(parsed, warm_start, storage, warm_start_k)
    return parsed


def submit(
    spec: str | Path | Mapping[str, Any] | StudySpec, *, storage: Storage | str | None = None,
    address: str | None = None, name: str | None = None, trials: int | None = None,
    workers: int | None = None, sampler: str | None = None, seed: int | None = None,
    epochs: int | None = None, warm_start: str | None = None, warm_start_k: int = 5,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_ray: Callable[[], None] | None = None,
) -> Study:
    """Run a study to completion and return it. Overrides win over the spec's values.

    ``warm_start="other"`` runs study ``other``'s ``warm_start_k`` best complete configurations
    (fitted to this spec's space; a ``UserWarning`` says what was dropped or clipped) first.
    ``progress`` is called with the study's counts whenever they change; ``on_ray`` once Ray is
    up (a command line installs its signal handlers there, after Ray's own).
    """
    import warnings

    from tuner._warm_start import plan_warm_start
    from tuner.execution import run_study

    # a process that joined a Ray cluster (ray.init) runs the study there: the cluster decides
    parsed = validate(spec, address=address, resources=not _joined_ray(), name=name,
                      trials=trials, workers=workers, sampler=sampler, seed=seed, epochs=epochs)
    st = get_storage(storage, create=True)  # opened (and migrated) once, here
    plan = plan_warm_start(parsed, warm_start, st, warm_start_k) if warm_start else None
    if plan is not None and plan.summary(str(warm_start)):
        warnings.warn(str(plan.summary(str(warm_start))), UserWarning, stacklevel=2)
    run_study(parsed, st, address=address, warm_start=plan.entries if plan else None,
              on_progress=progress, on_ray=on_ray)
    return load_study(parsed.study, st)


def resume(name: str, *, storage: Storage | str | None = None, address: str | None = None,
           trials: int | None = None, progress: Callable[[dict[str, Any]], None] | None = None,
           on_ray: Callable[[], None] | None = None) -> Study:
    """Continue a stored study to its trial count (or ``trials``); interrupted trials re-run.
    ``progress`` and ``on_ray`` as for :func:`submit`."""
    st = get_storage(storage, create=True)
    spec = load_study(name, st).spec
    if spec is None:
        raise StudyNotFoundError(f"study '{name}' was not created by tuner; it has no spec to resume")
    from tuner.execution import run_study  # Ray: seconds of import, once the study is known

    run_study(spec, st, address=address, resume=True, trials=trials, on_progress=progress,
              on_ray=on_ray)
    return load_study(name, st)


_OVERRIDES = {"name": "study", "trials": "trials", "workers": "resources.workers",
              "sampler": "sampler.kind", "seed": "sampler.seed", "epochs": "epochs"}
"""``validate``/``submit`` keyword -> the spec field it overrides."""


def _joined_ray() -> bool:
    """True when this process already joined a Ray cluster (without importing Ray)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())
