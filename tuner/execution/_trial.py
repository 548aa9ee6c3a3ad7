"""Running one trial inside a worker and classifying how it ended.

Divergence, out-of-memory and exceptions in user code are *outcomes*, not crashes: each becomes a
FAIL with a reason a person can read (``diverged``, ``oom``, ``error: ValueError: ...``) and the
worker goes on to its next trial.
"""

from __future__ import annotations

import logging
import math
import traceback
from typing import Any, Callable

from typing import TYPE_CHECKING

import lazy_loader as lazy
import optuna

from tuner._errors import Diverged
from tuner.execution._coordinator import TrialResult

if TYPE_CHECKING:
    from tuner.training import TrialContext

torch = lazy.load("torch")  # loaded in the worker that runs a trial, not in the driver

__all__ = ["run_trial"]

_log = logging.getLogger(__name__)


def run_trial(fn: Callable[[dict[str, Any], TrialContext], Any], config: dict[str, Any],
              ctx: TrialContext, trial_id: int = -1) -> TrialResult:
    """Call ``fn(config, ctx)`` and turn whatever happens into a :class:`TrialResult`."""
    result = TrialResult(trial_id=trial_id, number=ctx.trial_number, state="FAIL", curve=ctx.curve)
    try:
        out = fn(config, ctx)
        value, metrics = _objective(out, ctx)
        if not math.isfinite(value):
            result.reason = "diverged"
        else:
            result.state, result.value, result.metrics = "COMPLETE", value, metrics
    except optuna.TrialPruned:
        result.state = "PRUNED"
        result.reason = f"pruned at epoch {ctx.curve[-1]['epoch']}" if ctx.curve else "pruned"
    except Diverged:
        result.reason = "diverged"
    except torch.OutOfMemoryError:
        result.reason = "oom"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except MemoryError:
        result.reason = "oom"
    except Exception as e:  # noqa: BLE001 - user code may raise anything; the study goes on
        if _host_oom(e):
            result.reason = "oom"
        else:
            _log.warning("trial %d raised:\n%s", ctx.trial_number, traceback.format_exc())
            result.reason = f"error: {type(e).__name__}: {e}"[:250]
    return result


def _host_oom(e: BaseException) -> bool:
    """torch's CPU allocator reports a failed allocation as a plain RuntimeError."""
    return isinstance(e, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(e)


def _objective(out: Any, ctx: TrialContext) -> tuple[float, dict[str, float]]:
    """A trainable returns the objective value, or a dict of metrics that includes it."""
    if isinstance(out, dict):
        if ctx.objective_metric not in out:
            raise KeyError(
                f"the trainable returned {sorted(out)} but the objective is "
                f"'{ctx.objective_metric}'; return it or change objective.metric"
            )
        metrics = {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}
        return float(out[ctx.objective_metric]), metrics
    if isinstance(out, (int, float)) or (isinstance(out, torch.Tensor) and out.numel() == 1):
        return float(out), {}
    raise TypeError(f"a trainable must return a float or a dict of metrics, got {type(out).__name__}")
