"""Warm start: run another study's best configurations first.

Hyperparameters go stale as the data changes, so re-running a study is routine; starting it from
the last study's winners costs ``k`` trials and usually finds a good region at once. The donor's
top-k COMPLETE trials are read through the public API (``load_study(...).best_trials(k)``) and
fitted to the new spec's space: a parameter the new space does not have is dropped, a number
outside the new range is clipped to it (and snapped to its step, integer or power of two), a
category the new space does not offer leaves that parameter to the sampler. The coordinator
enqueues the results with Optuna's ``enqueue_trial`` when it creates the study, so every sampler
honours them; each such trial records ``warm_start_from = "<donor>#<number>"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner._errors import SpecError
from tuner._study import load_study
from tuner.storage import Storage
from tuner.spec import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    StudySpec,
    from_internal,
    to_internal,
)

__all__ = ["WarmStart", "fit_params", "plan_warm_start"]

DEFAULT_K = 5


@dataclass
class WarmStart:
    """What to enqueue (``{"params", "source"}`` dicts, best first) and what was changed."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self, donor: str) -> str | None:
        """One line for the user when anything was dropped, clipped or left to the sampler."""
        if not self.notes:
            return None
        return f"warm start from '{donor}': " + "; ".join(self.notes)


def plan_warm_start(spec: StudySpec, donor: str, storage: Storage | str | None,
                    k: int = DEFAULT_K) -> WarmStart:
    """The donor's ``k`` best complete configurations, fitted to ``spec.params``.

    Raises ``StudyNotFoundError`` (one line, exit code 2) when ``donor`` is not in ``storage``
    and ``SpecError`` for a bad ``k`` or a study warm-starting from itself.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError("--warm-start-k", f"must be a whole number >= 1, got {k!r}")
    if donor == spec.study:
        raise SpecError("--warm-start", f"study '{donor}' cannot warm-start from itself; name "
                        "the earlier study, or give this one a new name with --name")
    best = load_study(donor, storage).best_trials(min(k, spec.trials))
    plan = WarmStart()
    if not best:
        plan.notes.append("it has no COMPLETE trial, so nothing was enqueued")
        return plan
    changes: dict[str, set[str]] = {}
    for trial in best:
        params, notes = fit_params(spec.params, trial.params)
        for kind, name in notes:
            changes.setdefault(kind, set()).add(name)
        plan.entries.append({"params": params, "source": f"{donor}#{trial.number}"})
    for kind in ("dropped (not in this space)", "clipped or rounded to this range",
                 "left to the sampler (value not allowed here)", "left to the sampler (new here)"):
        if kind in changes:
            plan.notes.append(f"{kind}: {', '.join(sorted(changes[kind]))}")
    return plan


def fit_params(space: Mapping[str, ParamSpec], params: Mapping[str, Any]
               ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``params`` made legal in ``space``; returns them and ``(what happened, name)`` notes."""
    out: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []
    for name, value in params.items():
        if name not in space:
            notes.append(("dropped (not in this space)", name))
            continue
        fitted, clipped = _fit(space[name], value)
        if fitted is None:
            notes.append(("left to the sampler (value not allowed here)", name))
            continue
        if clipped:
            notes.append(("clipped or rounded to this range", name))
        out[name] = fitted
    for name in space:
        if name not in params:
            notes.append(("left to the sampler (new here)", name))
    return out, notes


def _fit(param: ParamSpec, value: Any) -> tuple[Any, bool]:
    """``(legal value, changed?)``, or ``(None, False)`` when no legal value stands for it."""
    if isinstance(param, CategoricalParam):
        for choice in param.choices:  # 1 == True in Python: match the type too
            if choice == value and type(choice) is type(value):
                return choice, False
        return None, False
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, False
    if not isinstance(param, (FloatParam, IntParam)):
        return None, False
    inside = min(max(float(value), param.low), param.high)
    legal = from_internal(param, to_internal(param, inside))  # round, step, power of two
    if isinstance(param, FloatParam) and param.step is None and inside == value:
        return float(value), False  # keep the donor's exact value (no log round trip)
    changed = not math.isclose(legal, value, rel_tol=1e-12, abs_tol=0.0)
    return legal, changed
