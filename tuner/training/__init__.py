"""Training: the trial context, the built-in ``builtin:mlp`` / ``builtin:cnn`` trainables and
their data layer.

A trainable is any ``fn(config: dict, ctx: TrialContext) -> float | dict``; ``resolve_trainable``
finds one from the spec's string; ``fit_mlp`` and ``fit_cnn`` are the ones tuner ships.

Names are imported lazily: the spec checks (``_checks``) need no torch, and the CLI should not
pay seconds of torch import to validate a spec or read a study.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ACTIVATIONS", "BUILTIN_NAMES", "BUILTIN_TRAINABLES", "CLASSIFICATION_METRICS",
    "DATASET_NAMES", "Dataset", "INITS", "LR_DECAYS", "MLP_PARAM_KEYS", "OPTIMIZERS",
    "REGRESSION_METRICS", "Trainable", "TrialContext", "build_mlp", "build_optimizer",
    "build_scheduler", "check_dataset_spec", "check_study", "clear_dataset_cache", "fit_mlp", "load_dataset",
    "resolve_trainable", "CNN_PARAM_KEYS", "POOLS", "build_cnn", "fit_cnn",
]

_WHERE = {
    "TrialContext": "_context",
    "DATASET_NAMES": "_sources",
    "BUILTIN_NAMES": "_checks", "MLP_PARAM_KEYS": "_checks", "check_dataset_spec": "_checks",
    "check_study": "_checks",
    "Dataset": "_data", "clear_dataset_cache": "_data", "load_dataset": "_data",
    "ACTIVATIONS": "_mlp", "INITS": "_mlp", "build_mlp": "_mlp",
    "LR_DECAYS": "_optim", "OPTIMIZERS": "_optim", "build_optimizer": "_optim",
    "build_scheduler": "_optim",
    "BUILTIN_TRAINABLES": "_resolve", "Trainable": "_resolve", "resolve_trainable": "_resolve",
    "CLASSIFICATION_METRICS": "_trainer", "REGRESSION_METRICS": "_trainer", "fit_mlp": "_trainer",
    "fit_cnn": "_trainer", "CNN_PARAM_KEYS": "_checks", "POOLS": "_cnn", "build_cnn": "_cnn",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tuner.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tuner.training' has no attribute {name!r}")
