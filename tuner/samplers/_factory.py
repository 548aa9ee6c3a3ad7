"""Names in a spec -> Optuna sampler objects (the only place that maps them; pruners: ``tuner.pruners``)."""

from __future__ import annotations

import math

import optuna
from optuna.samplers import BaseSampler

from tuner.pruners import create_pruner  # re-exported: it used to live here
from tuner.samplers._coarse_to_fine import CoarseToFineSampler
from tuner.samplers._random import ScaledRandomSampler
from tuner.spec import StudySpec, grid_values

__all__ = ["create_sampler", "create_pruner", "grid_search_space", "grid_size", "GridSampler"]


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for ask/tell loops.

    Optuna's version calls ``study.stop()`` when the grid is used up, which raises outside
    ``study.optimize``; tuner caps the trial count at the grid size instead, so that hook is off.
    """

    def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
        return None


def create_sampler(spec: StudySpec) -> BaseSampler:
    """The sampler a spec asks for, seeded from ``sampler.seed``."""
    kind, seed = spec.sampler.kind, spec.sampler.seed
    if kind == "random":
        return ScaledRandomSampler(spec.params, seed=seed)
    if kind == "grid":
        return GridSampler(grid_search_space(spec), seed=seed)
    if kind == "coarse-to-fine":
        c = spec.sampler
        return CoarseToFineSampler(
            spec.params, n_trials=spec.trials, stages=c.stages, top_k=c.top_k,
            trials_per_stage=c.trials_per_stage, margin=c.margin, min_width=c.min_width,
            seed=seed, qmc=c.qmc,
        )
    if kind == "tpe":
        # constant_liar: concurrent workers would otherwise all be sent to the same promising point.
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=spec.sampler.n_startup_trials, constant_liar=True
        )
    raise ValueError(f"unknown sampler kind {kind!r}")  # unreachable: the spec validates kind


def grid_search_space(spec: StudySpec) -> dict[str, list[object]]:
    """Grid values per parameter, evenly spaced on the parameter's own scale."""
    return {name: grid_values(param) for name, param in spec.params.items()}


def grid_size(spec: StudySpec) -> int:
    """Number of distinct configurations in the spec's grid."""
    return math.prod(len(v) for v in grid_search_space(spec).values())
