"""The shared shape of tuner's samplers: independent draws on each parameter's own scale."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from tuner.spec import ParamSpec, to_distribution

__all__ = ["ScaleAwareSampler", "same_distribution"]


def same_distribution(a: BaseDistribution, b: BaseDistribution) -> bool:
    """Whether ``a`` and ``b`` admit exactly the same values: type, bounds, ``log``, ``step``
    and, for categoricals, the same choices in the same order with the same types (Optuna's own
    ``==`` takes ``True`` for ``1``, which would let a draw of ``True`` answer a call for ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, CategoricalDistribution):
        assert isinstance(b, CategoricalDistribution)
        return len(a.choices) == len(b.choices) and all(
            type(x) is type(y) and x == y for x, y in zip(a.choices, b.choices)
        )
    return a == b


class ScaleAwareSampler(BaseSampler):
    """Samples each spec parameter with ``_sample`` and anything else with Optuna's random sampler.

    A spec parameter is drawn on its own scale only when the distribution asked for is exactly
    the one the spec implies (``tuner.spec.to_distribution``); a different one (another range,
    ``suggest_categorical`` for a ``pow2`` int, ...) is drawn by Optuna's ``RandomSampler`` from
    the distribution asked for, because a value from the spec's range could lie outside it and
    Optuna would refuse it. No relative (joint) search space: tuner's scales make every
    parameter's draw independent, and a plain Optuna objective that suggests names outside the
    spec still works.
    """

    _single_objective = False
    """True for samplers that rank trials by one value (coarse-to-fine): a study with several
    objectives is then refused by every entry point, not just some."""

    def __init__(self, space: Mapping[str, ParamSpec], seed: int | None) -> None:
        self._space = dict(space)
        self._declared = {name: to_distribution(p) for name, p in self._space.items()}
        self._fallback = RandomSampler(seed=seed)
        self._warned: set[str] = set()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._check_objectives(study)
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._check_objectives(study)
        param = self._space.get(param_name)
        if param is None:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        if not same_distribution(self._declared[param_name], param_distribution):
            self._warn_off_spec(param_name, param_distribution)
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        return self._sample(study, trial, param_name, param)

    def _sample(self, study: Study, trial: FrozenTrial, name: str, param: ParamSpec) -> Any:
        raise NotImplementedError

    def _check_objectives(self, study: Study) -> None:
        """Refuse a multi-objective study where this sampler needs a single value to rank by."""
        if self._single_objective and len(study.directions) > 1:
            raise ValueError(
                f"{type(self).__name__} ranks trials by one objective, but study "
                f"'{study.study_name}' has {len(study.directions)}; use ScaledRandomSampler or "
                "Optuna's NSGAIISampler for a multi-objective study"
            )

    def _warn_off_spec(self, name: str, asked: BaseDistribution) -> None:
        """Say once per parameter that the spec's scale was not used for it (the draw is still
        a legal value of the distribution asked for)."""
        if name in self._warned:
            return
        self._warned.add(name)
        warnings.warn(
            f"parameter '{name}' was asked as {asked} but the spec declares "
            f"{self._declared[name]}; it is drawn uniformly from what was asked, not on the spec's "
            "scale: suggest exactly the spec's distribution (tuner.spec.to_distribution) to use it",
            UserWarning,
            stacklevel=4,
        )
