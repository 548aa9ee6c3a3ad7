"""Scales: the coordinate in which each parameter is sampled, and its Optuna distribution.

Optuna stores the value the network used (beta, not 1-beta), so every distribution here is over
the *value*; the scale lives beside it and tells tuner's samplers where uniform means uniform.

``to_internal``/``from_internal`` map between the value and the sampling coordinate:

============== ======================= =====================================
scale          internal coordinate     example
============== ======================= =====================================
linear         x                       dropout in [0, 0.5]
log            log10(x)                lr in [1e-4, 1] -> [-4, 0]
one_minus_log  log10(1 - x)            beta in [0.9, 0.999] -> [-3, -1]
pow2           log2(x)                 batch size 32..512 -> 5..9
categorical    index into choices
============== ======================= =====================================
"""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.spec._params import CategoricalParam, FloatParam, IntParam

__all__ = ["to_distribution", "internal_bounds", "to_internal", "from_internal", "grid_values"]

Param = FloatParam | IntParam | CategoricalParam


def to_distribution(param: Param) -> BaseDistribution:
    """The Optuna distribution that records ``param``'s values (what ``load_study`` shows)."""
    if isinstance(param, CategoricalParam):
        return CategoricalDistribution(list(param.choices))
    if isinstance(param, IntParam):
        if param.scale == "pow2":
            return CategoricalDistribution(param.choices)
        return IntDistribution(param.low, param.high, log=param.scale == "log", step=param.step or 1)
    return FloatDistribution(param.low, param.high, log=param.scale == "log", step=param.step)


def internal_bounds(param: Param) -> tuple[float, float]:
    """``(lo, hi)`` of the sampling coordinate, lo < hi (categoricals: index range)."""
    if isinstance(param, CategoricalParam):
        return 0.0, float(len(param.choices) - 1)
    if isinstance(param, IntParam) and param.scale == "pow2":
        exps = [math.log2(c) for c in param.choices]
        return exps[0], exps[-1]
    if param.scale == "log":
        return math.log10(param.low), math.log10(param.high)
    if param.scale == "one_minus_log":
        return math.log10(1.0 - param.high), math.log10(1.0 - param.low)
    return float(param.low), float(param.high)


def to_internal(param: Param, value: Any) -> float:
    """Map a stored value to the sampling coordinate."""
    if isinstance(param, CategoricalParam):
        return float(param.choices.index(value))
    if isinstance(param, IntParam) and param.scale == "pow2":
        return math.log2(value)
    if param.scale == "log":
        return math.log10(value)
    if param.scale == "one_minus_log":
        return math.log10(max(1.0 - value, 1e-300))
    return float(value)


def from_internal(param: Param, u: float) -> Any:
    """Map a sampling coordinate back to a legal value (rounded, stepped and clipped)."""
    if isinstance(param, CategoricalParam):
        return param.choices[min(max(int(round(u)), 0), len(param.choices) - 1)]
    if isinstance(param, IntParam):
        if param.scale == "pow2":
            choices = param.choices
            lo, hi = math.log2(choices[0]), math.log2(choices[-1])
            return int(2 ** int(round(min(max(u, lo), hi))))
        x = 10**u if param.scale == "log" else u
        step = param.step or 1
        x = param.low + round((x - param.low) / step) * step
        return int(min(max(x, param.low), param.high - (param.high - param.low) % step))
    if param.scale == "log":
        x = 10**u
    elif param.scale == "one_minus_log":
        x = 1.0 - 10**u
    else:
        x = u
        if param.step is not None:
            x = param.low + round((x - param.low) / param.step) * param.step
    return float(min(max(x, param.low), param.high))


def grid_values(param: Param, points: int | None = None) -> list[Any]:
    """Evenly spaced values on the parameter's own scale (all choices for discrete scales)."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, IntParam) and param.scale == "pow2":
        return param.choices
    n = points or param.grid_points or 4
    lo, hi = internal_bounds(param)
    raw = [from_internal(param, lo + (hi - lo) * i / max(n - 1, 1)) for i in range(n)]
    out: list[Any] = []
    for v in raw:
        if v not in out:
            out.append(v)
    return sorted(out)
