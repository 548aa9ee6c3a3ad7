"""Spec checks that need no torch: the driver validates a study before Ray or torch start.

Importing torch costs the CLI seconds; ``tuner validate`` and ``tuner submit`` call these before
anything heavy, so they live apart from the data loader and the trainer.
"""

from __future__ import annotations

from typing import Any

from tuner._errors import SpecError
from tuner.training import _params
from tuner.training._sources import check_source

__all__ = ["with_defaults", "check_dataset_spec", "BUILTIN_NAMES", "MLP_PARAM_KEYS"]

BUILTIN_NAMES = ("mlp",)
"""``builtin:<name>`` trainables shipped with tuner."""

MLP_PARAM_KEYS = frozenset({
    # network
    "layers", "hidden_units", "activation", "init", "batch_norm", "dropout",
    # optimizer and schedule
    "optimizer", "lr", "weight_decay", "momentum", "nesterov", "rho", "beta1", "beta2", "eps",
    "lr_decay", "decay_rate", "step_size", "warmup_epochs",
    # loop
    "batch_size", "early_stopping_patience", "amp",
})  # fmt: skip

DEFAULTS: dict[str, Any] = {
    "validation_fraction": 0.2,
    "normalize": "zscore",
    "target": None,
    "task": "auto",
    "seed": 0,
    "n_samples": 1000,
    "n_features": 20,
    "n_classes": 2,
    "n_informative": 10,
    "noise": 0.1,
}
_NORMALIZE = ("zscore", "minmax", "none")
_TASKS = ("auto", "classification", "regression")


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check the option values; the dict is also the cache key's source."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise SpecError("dataset.name", "a dataset needs a name, e.g. {name: digits}")
    full = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    section = "dataset"
    _params.real(
        full,
        "validation_fraction",
        0.2,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        section=section,
    )
    full["normalize"] = _params.choice(full, "normalize", _NORMALIZE, "zscore", section=section)
    full["task"] = _params.choice(full, "task", _TASKS, "auto", section=section)
    for key, low in (
        ("seed", 0),
        ("n_samples", 2),
        ("n_features", 1),
        ("n_classes", 2),
        ("n_informative", 1),
    ):
        full[key] = _params.integer(full, key, DEFAULTS[key], low=low, section=section)
    _params.real(full, "noise", 0.1, low=0.0, section=section)
    return full


def check_dataset_spec(spec: dict[str, Any]) -> None:
    """Fail with a ``SpecError`` if ``spec`` cannot be loaded; cheap enough for ``tuner validate``.

    Checks the options, that the name is known, that a file exists, and that csv/parquet files
    have the ``target`` column. It reads at most a file's header, never its data.
    """
    full = with_defaults(spec)
    check_source(full)


