"""Samplers that know tuner's scales, and the spec -> sampler/pruner factory."""

from tuner.samplers._coarse_to_fine import CoarseToFineSampler
from tuner.samplers._factory import (
    GridSampler,
    create_pruner,
    create_sampler,
    grid_search_space,
    grid_size,
)
from tuner.samplers._random import ScaledRandomSampler, draw

__all__ = [
    "ScaledRandomSampler", "GridSampler", "CoarseToFineSampler", "draw", "create_sampler", "create_pruner", "grid_search_space",
    "grid_size",
]
