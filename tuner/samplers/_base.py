"""The shared shape of tuner's samplers: independent draws on each parameter's own scale."""

from __future__ import annotations

from typing import Any, Mapping

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from tuner.spec import ParamSpec

__all__ = ["ScaleAwareSampler"]


class ScaleAwareSampler(BaseSampler):
    """Samples each spec parameter with ``_sample`` and anything else with Optuna's random sampler.

    No relative (joint) search space: tuner's scales make every parameter's draw independent, and
    a plain Optuna objective that suggests names outside the spec still works.
    """

    def __init__(self, space: Mapping[str, ParamSpec], seed: int | None) -> None:
        self._space = dict(space)
        self._fallback = RandomSampler(seed=seed)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        param = self._space.get(param_name)
        if param is None:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        return self._sample(study, trial, param_name, param)

    def _sample(self, study: Study, trial: FrozenTrial, name: str, param: ParamSpec) -> Any:
        raise NotImplementedError
