"""Spec checks that need no torch: the driver validates a study before Ray or torch start.

Importing torch costs the CLI seconds; ``tuner validate`` and ``tuner submit`` call these before
anything heavy, so they live apart from the data loader and the trainer.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from tuner._errors import SpecError
from tuner._text import excerpt
from tuner.training import _params
from tuner.training._names import CLASSIFICATION_METRICS, REGRESSION_METRICS
from tuner.training._sources import IMAGE_SETS, SourceInfo, check_source
from tuner.training._values import check_builtin_values

__all__ = [
    "BUILTIN_NAMES", "CNN_PARAM_KEYS", "MLP_PARAM_KEYS", "PARAM_KEYS", "check_builtin_spec",
    "check_builtin_metric", "check_dataset_spec", "check_image_shape", "with_defaults",
]

BUILTIN_NAMES = ("mlp", "cnn")
"""``builtin:<name>`` trainables shipped with tuner."""

MLP_PARAM_KEYS = frozenset({
    # network
    "layers", "hidden_units", "activation", "init", "batch_norm", "dropout",
    # optimizer and schedule
    "optimizer", "lr", "weight_decay", "momentum", "nesterov", "rho", "beta1", "beta2", "eps",
    "lr_decay", "decay_rate", "step_size", "warmup_epochs",
    # loop
    "batch_size", "early_stopping_patience", "amp", "compile",
})  # fmt: skip

CNN_PARAM_KEYS = frozenset({
    # network: conv blocks, then a linear head
    "layers", "channels", "kernel_size", "pool", "activation", "init", "batch_norm", "dropout",
} | (MLP_PARAM_KEYS - {"layers", "hidden_units", "activation", "init", "batch_norm", "dropout"}))
"""``builtin:cnn``: the MLP's optimizer, schedule and loop keys, with conv-net network keys."""

PARAM_KEYS = {"mlp": MLP_PARAM_KEYS, "cnn": CNN_PARAM_KEYS}
_CUDA_ONLY = {"compile": ("true",), "amp": ("bf16",)}
"""Switches that only act on CUDA (values that turn them on)."""

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
    "image_shape": None,
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
    shape = full["image_shape"]
    if shape is not None:
        if (not isinstance(shape, (list, tuple)) or len(shape) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape)):
            raise SpecError("dataset.image_shape", f"must be [channels, height, width], three "
                            f"whole numbers >= 1, got {excerpt(shape)}")
        full["image_shape"] = [int(v) for v in shape]
    return full


def check_builtin_spec(name: str, params: dict[str, Any], fixed: dict[str, Any],
                       dataset: dict[str, Any] | None, gpus_per_trial: float) -> None:
    """What ``builtin:<name>`` can tell without torch or data: known keys, values its trainer
    accepts, CUDA-only switches on a study that has no GPU, and (``cnn``) image-shaped data."""
    keys = PARAM_KEYS[name]
    for section, names in (("params", params), ("fixed", fixed)):
        for key in names:
            if key not in keys:
                close = difflib.get_close_matches(key, sorted(keys), n=3, cutoff=0.5)
                hint = f"closest: {', '.join(close)}" if close else "see README, 'The built-in trainables'"
                raise SpecError(f"{section}.{_key(key)}", f"builtin:{name} has no parameter "
                                f"{excerpt(key)}; use one of its {len(keys)} keys ({hint})")
    check_builtin_values(name, params, fixed)
    if gpus_per_trial <= 0:
        for key, on in _CUDA_ONLY.items():
            asked = [fixed[key]] if key in fixed else list(getattr(params.get(key), "choices", []))
            if any(v is True or (isinstance(v, str) and v.lower() in on) for v in asked):
                where = "fixed" if key in fixed else "params"
                raise SpecError(f"{where}.{key}", "is only turned on on CUDA and this study has "
                                "resources.gpus_per_trial: 0; give trials a GPU or drop it")
    if name == "cnn" and dataset is not None and dataset.get("image_shape") is None \
            and not str(dataset.get("name", "")).startswith(("npz:", *IMAGE_SETS)):
        # other sets have plain rows; an npz's array shape decides (check_image_shape)
        raise SpecError("dataset.image_shape", "builtin:cnn needs image-shaped data (digits is "
                        "1x8x8); for this dataset set image_shape: [channels, height, width]")


def check_image_shape(name: str, dataset: dict[str, Any], info: SourceInfo) -> None:
    """``image_shape`` holds as many values as a row has features; ``builtin:cnn`` has images."""
    shape = dataset.get("image_shape")
    if shape is not None and info.n_features is not None and math.prod(shape) != info.n_features:
        raise SpecError("dataset.image_shape", f"{list(shape)} holds {math.prod(shape)} values "
                        f"but each row has {info.n_features} features; fix the shape")
    if name == "cnn" and shape is None and info.image_shape is None:
        raise SpecError("dataset.image_shape", "builtin:cnn needs image-shaped data, but these "
                        f"rows are {info.n_features} plain features; set image_shape: [channels, "
                        "height, width] or use builtin:mlp")


def check_builtin_metric(name: str, metric: str, task: str | None) -> None:
    """The objective is a metric ``builtin:<name>`` reports on the dataset's task (either task's
    metrics while the task is not known before loading)."""
    metrics = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
    allowed = metrics.get(task or "", tuple(dict.fromkeys(CLASSIFICATION_METRICS + REGRESSION_METRICS)))
    if metric not in allowed:
        on = f"on {task} data it reports" if task else "it reports"
        raise SpecError("objective.metric", f"builtin:{name} does not report {excerpt(metric)}; "
                        f"{on} {', '.join(allowed)}; choose one of them")


def check_dataset_spec(spec: dict[str, Any]) -> SourceInfo:
    """Fail with a ``SpecError`` if ``spec`` cannot be loaded; cheap enough for ``tuner validate``.

    Checks the options, that the name is known, that a file exists and is readable, that its
    header has the ``target`` and its first rows the types the loader needs (at most
    ``SAMPLE_ROWS`` rows are read; an npz's array headers, not its data). Returns what it
    learnt: the task when already certain, the feature count, the native image shape.
    """
    full = with_defaults(spec)
    return check_source(full)


def _key(key: str) -> str:
    return key if key.isidentifier() else excerpt(key)
