"""Hyperparameter declarations: what a user writes under ``params:``.

Each parameter carries its *scale*, the coordinate system in which sampling is uniform. The scale
is what makes random search good (learning rate in log10, momentum beta in log10(1-beta),
batch sizes as powers of two), so it is validated here, once, with messages that say how to fix it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuner._text import excerpt

__all__ = ["FloatParam", "IntParam", "CategoricalParam", "ParamSpec", "powers_of_two"]


class StrictModel(BaseModel):
    """The base of every spec model. Unknown keys are errors (a misspelt ``epocs:`` silently
    ignored would cost someone a night of GPU time); NaN and infinities are never a usable
    setting, bound, step or choice (samplers do arithmetic on them, and JSON would store null)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Param(StrictModel):
    # frozen: one declaration is shared by the spec and every sampler built from it
    model_config = ConfigDict(frozen=True)


_INT64_MAX = 2**63 - 1


def _check_step(low: float, high: float, step: float | None) -> None:
    if step is not None and step > high - low:
        raise ValueError(f"step {step} is larger than the range high - low = {high - low}; "
                         "lower step or widen the range")


def powers_of_two(low: int, high: int) -> list[int]:
    """All powers of two in ``[low, high]``, ascending."""
    start = max(0, math.ceil(math.log2(max(low, 1))))
    out = []
    exp = start
    while 2**exp <= high:
        if 2**exp >= low:
            out.append(2**exp)
        exp += 1
    return out


class FloatParam(_Param):
    """A real-valued hyperparameter; ``one_minus_log`` samples ``1 - x`` uniformly in log10."""

    type: Literal["float"]
    low: float
    high: float
    scale: Literal["linear", "log", "one_minus_log"] = "linear"
    step: float | None = Field(default=None, gt=0)
    grid_points: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(
                f"low < high must hold, got low={self.low}, high={self.high}; swap them or widen the range"
            )
        if not math.isfinite(self.high - self.low):
            raise ValueError(
                f"high - low must be a finite number, got low={self.low:g}, high={self.high:g}; "
                "narrow the range (e.g. within +-1e300)"
            )
        _check_step(self.low, self.high, self.step)
        if self.scale == "log" and self.low <= 0:
            raise ValueError(
                f"log scale needs low > 0, got low={self.low}; use a positive low such as 1e-5"
                " or scale: linear"
            )
        if self.scale == "one_minus_log" and not (self.high < 1):
            raise ValueError(
                f"one_minus_log samples 1-x in log10, so high must be < 1, got high={self.high};"
                " use e.g. high: 0.999"
            )
        if self.step is not None and self.scale != "linear":
            raise ValueError(f"step only works with scale: linear, got scale: {self.scale}; drop step")
        return self


class IntParam(_Param):
    """An integer hyperparameter; ``pow2`` draws only powers of two (mini-batch sizes)."""

    type: Literal["int"]
    low: int
    high: int
    scale: Literal["linear", "log", "pow2"] = "linear"
    step: int | None = Field(default=None, ge=1)
    grid_points: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(
                f"low < high must hold, got low={self.low}, high={self.high}; swap them or widen the range"
            )
        if self.high - self.low > _INT64_MAX or max(abs(self.low), abs(self.high)) > _INT64_MAX:
            raise ValueError(
                f"high - low must fit in a 64-bit integer, got low={self.low}, high={self.high}; "
                "narrow the range"
            )
        _check_step(self.low, self.high, self.step)
        if self.scale in ("log", "pow2") and self.low <= 0:
            raise ValueError(
                f"{self.scale} scale needs low >= 1, got low={self.low}; use low: 1 or scale: linear"
            )
        if self.scale == "pow2" and not powers_of_two(self.low, self.high):
            raise ValueError(
                f"no power of two lies in [{self.low}, {self.high}]; widen the range to include"
                " one (e.g. 32..512)"
            )
        if self.step is not None and self.scale != "linear":
            raise ValueError(f"step only works with scale: linear, got scale: {self.scale}; drop step")
        return self

    @property
    def choices(self) -> list[int]:
        """The values a ``pow2`` parameter can take."""
        return powers_of_two(self.low, self.high)


class CategoricalParam(_Param):
    """A choice among listed values (optimizer names, activation, booleans)."""

    type: Literal["categorical"]
    choices: list[Union[str, int, float, bool, None]] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        seen: set[str] = set()
        for choice in self.choices:
            if repr(choice) in seen:
                raise ValueError(f"choices must be distinct, {excerpt(choice)} is listed twice; "
                                 "remove the repeats")
            seen.add(repr(choice))
            if isinstance(choice, int) and not -_INT64_MAX - 1 <= choice <= _INT64_MAX:
                raise ValueError(f"choice {excerpt(choice)} is outside the 64-bit integer range; "
                                 "use a smaller number")
        return self


ParamSpec = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]

