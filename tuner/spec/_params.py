"""Hyperparameter declarations: what a user writes under ``params:``.

Each parameter carries its *scale*, the coordinate system in which sampling is uniform. The scale
is what makes random search good (DOMAIN.md: learning rate in log10, momentum beta in log10(1-beta),
batch sizes as powers of two), so it is validated here, once, with messages that say how to fix it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FloatParam", "IntParam", "CategoricalParam", "ParamSpec", "powers_of_two"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class FloatParam(_Strict):
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


class IntParam(_Strict):
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


class CategoricalParam(_Strict):
    """A choice among listed values (optimizer names, activation, booleans)."""

    type: Literal["categorical"]
    choices: list[Union[str, int, float, bool, None]] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices must be distinct, got {self.choices}; remove the repeats")
        return self


ParamSpec = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]

