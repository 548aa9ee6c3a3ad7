"""Samplers that know tuner's scales, and the spec -> sampler/pruner factory."""

from tuner.samplers._base import same_distribution
from tuner.samplers._check import MAX_GRID, check_search
from tuner.samplers._coarse_to_fine import (
    LEGACY_STAGE_ATTR,
    STAGE_ATTR,
    CoarseToFineSampler,
    box_values,
    decode_box,
    next_stage,
    stored_boxes,
    trial_stage,
)
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
    "grid_size", "same_distribution", "STAGE_ATTR", "LEGACY_STAGE_ATTR", "trial_stage", "next_stage",
    "stored_boxes", "decode_box", "box_values", "check_search", "MAX_GRID",
]
