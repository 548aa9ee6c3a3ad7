"""Training: the trial context, the built-in ``builtin:mlp`` trainable and its data layer.

A trainable is any ``fn(config: dict, ctx: TrialContext) -> float | dict``; ``resolve_trainable``
finds one from the spec's string, and ``fit_mlp`` is the one tuner ships.
"""

from __future__ import annotations

from tuner.training._context import TrialContext
from tuner.training._data import (
    DATASET_NAMES,
    Dataset,
    check_dataset_spec,
    clear_dataset_cache,
    load_dataset,
)
from tuner.training._mlp import ACTIVATIONS, INITS, build_mlp
from tuner.training._optim import LR_DECAYS, OPTIMIZERS, build_optimizer, build_scheduler
from tuner.training._resolve import BUILTIN_TRAINABLES, Trainable, resolve_trainable
from tuner.training._trainer import (
    CLASSIFICATION_METRICS,
    MLP_PARAM_KEYS,
    REGRESSION_METRICS,
    fit_mlp,
)

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_TRAINABLES",
    "CLASSIFICATION_METRICS",
    "DATASET_NAMES",
    "Dataset",
    "INITS",
    "LR_DECAYS",
    "MLP_PARAM_KEYS",
    "OPTIMIZERS",
    "REGRESSION_METRICS",
    "Trainable",
    "TrialContext",
    "build_mlp",
    "build_optimizer",
    "build_scheduler",
    "check_dataset_spec",
    "clear_dataset_cache",
    "fit_mlp",
    "load_dataset",
    "resolve_trainable",
]
