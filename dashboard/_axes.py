"""Each parameter on its own scale: how to place it on a plot axis.

The scale a parameter is sampled on is the scale it should be looked at on: a learning
rate on a log axis, momentum beta as 1-beta on a log axis (0.9, 0.99, 0.999 evenly spaced), a
power-of-two batch size on a log2 axis. Studies tuner did not create have no spec: numbers go on
a linear axis and anything else on a category axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tuner.spec import CategoricalParam, FloatParam, IntParam, ParamSpec, StudySpec, to_internal

__all__ = ["Axis", "axes_for", "axis_for"]


@dataclass(frozen=True)
class Axis:
    """Where parameter ``name`` goes on a plot.

    ``kind`` is a Plotly axis type (``linear``, ``log`` or ``category``); ``flip`` plots
    ``1 - value`` (one_minus_log); ``ticks`` are explicit tick values (powers of two);
    ``param`` is the spec's declaration, whose scale maps values to the sampling coordinate
    (None for a study without a spec: its numbers are their own coordinate).
    """

    name: str
    label: str
    kind: str
    scale: str
    flip: bool = False
    ticks: tuple[Any, ...] | None = None
    choices: tuple[Any, ...] | None = None
    param: ParamSpec | None = field(default=None, repr=False)

    def plot_values(self, values: pd.Series) -> pd.Series:
        """The values as plotted on this axis (1 - beta for one_minus_log, text for categories)."""
        if self.kind == "category":
            return values.map(lambda v: "—" if v is None else str(v))
        numeric = pd.to_numeric(values, errors="coerce")
        return 1.0 - numeric if self.flip else numeric

    def plot_range(self, lo: float, hi: float) -> tuple[float, float]:
        """A box edge pair ``(lo, hi)`` in values as plot coordinates, ascending."""
        a, b = (1.0 - hi, 1.0 - lo) if self.flip else (lo, hi)
        return (min(a, b), max(a, b))

    def coordinate(self, values: pd.Series) -> pd.Series:
        """The sampling coordinate (``tuner.spec.to_internal``: log10 x, log10(1-x), log2 x, the
        category's index or x); NaN where a value is missing or has none."""
        if self.kind == "category":
            order = list(self.choices) if self.choices else sorted({str(v) for v in values})
            index = {str(c): i for i, c in enumerate(order)}
            return values.map(lambda v: index.get(str(v), math.nan))
        numeric = pd.to_numeric(values, errors="coerce")
        if self.param is None:
            return numeric
        return numeric.map(lambda v: _internal(self.param, v))


def _internal(param: ParamSpec, value: float) -> float:
    """``to_internal`` for a plot: NaN for a missing value or one off the scale (log of <= 0)."""
    if math.isnan(value):
        return math.nan
    try:
        return to_internal(param, value)
    except (ValueError, OverflowError):
        return math.nan


def axis_for(name: str, spec: StudySpec | None, sample: pd.Series | None = None) -> Axis:
    """The axis of parameter ``name``: from the spec when there is one, else from its values."""
    param = spec.params.get(name) if spec is not None else None
    if isinstance(param, CategoricalParam):
        return Axis(name, name, "category", "categorical", choices=tuple(param.choices))
    if isinstance(param, IntParam) and param.scale == "pow2":
        return Axis(name, f"{name} (log2)", "log", "pow2", ticks=tuple(param.choices), param=param)
    if isinstance(param, (FloatParam, IntParam)):
        if param.scale == "log":
            return Axis(name, f"{name} (log)", "log", "log", param=param)
        if param.scale == "one_minus_log":
            return Axis(name, f"1 - {name} (log)", "log", "one_minus_log", flip=True, param=param)
        return Axis(name, name, "linear", "linear", param=param)
    numeric = sample is not None and pd.to_numeric(sample, errors="coerce").notna().all()
    if sample is not None and not numeric:
        return Axis(name, name, "category", "categorical")
    return Axis(name, name, "linear", "linear")


def axes_for(frame: pd.DataFrame, spec: StudySpec | None) -> list[Axis]:
    """One axis per ``params_<name>`` column of a :meth:`Study.param_table` frame."""
    out = []
    for column in frame.columns:
        if column.startswith("params_"):
            name = column[len("params_"):]
            out.append(axis_for(name, spec, frame[column].dropna()))
    return out
