"""Random search on each parameter's own scale.

Optuna's ``RandomSampler`` is uniform in the *value* (or its log): it cannot draw beta so that
1-beta is log-uniform, nor restrict an int to powers of two. This sampler knows the spec's scales
and draws uniformly in each parameter's internal coordinate (see ``tuner.spec._scales``).
Parameters it was not told about fall back to Optuna's ``RandomSampler``, so it also works for a
plain Optuna objective that suggests extra names.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial

from tuner.samplers._base import ScaleAwareSampler
from tuner.spec import CategoricalParam, IntParam, ParamSpec, from_internal, internal_bounds

__all__ = ["ScaledRandomSampler"]


class ScaledRandomSampler(ScaleAwareSampler):
    """Independent uniform draws in each parameter's scale coordinate.

    Args:
        space: parameter name -> tuner ``ParamSpec`` (as in a spec's ``params``).
        seed: seed of the generator; the same seed gives the same sequence of configurations.

    Draws never look at results, so a study may have any number of objectives.
    """

    def __init__(self, space: Mapping[str, ParamSpec], seed: int | None = None) -> None:
        super().__init__(space, seed)
        self._rng = np.random.default_rng(seed)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def _sample(self, study: Study, trial: FrozenTrial, name: str, param: ParamSpec) -> Any:
        return draw(param, self._rng)


def draw(param: ParamSpec, rng: np.random.Generator, box: tuple[float, float] | None = None) -> Any:
    """One value of ``param`` drawn uniformly in its scale coordinate, inside ``box`` if given.

    Discrete scales draw a whole index/exponent so every allowed value is equally likely.
    """
    lo, hi = box if box is not None else internal_bounds(param)
    if isinstance(param, CategoricalParam) or (isinstance(param, IntParam) and param.scale == "pow2"):
        return from_internal(param, float(rng.integers(int(round(lo)), int(round(hi)) + 1)))
    if isinstance(param, IntParam) and param.scale == "linear":
        step = param.step or 1
        n = int((min(hi, param.high) - param.low) // step)
        k0 = int(np.ceil((lo - param.low) / step))
        return param.low + step * int(rng.integers(max(k0, 0), max(n, k0) + 1))
    return from_internal(param, float(rng.uniform(lo, hi)))


