"""Spec checks that need no torch: the driver validates a study before Ray or torch start.

Importing torch costs the CLI seconds; ``tuner validate`` and ``tuner submit`` call these before
anything heavy, so they live apart from the data loader and the trainer.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from tuner._errors import SpecError, TunerError
from tuner._text import excerpt
from tuner.samplers import check_search
from tuner.spec import DatasetSpec, StudySpec, parse_dataset
from tuner.training._names import CLASSIFICATION_METRICS, REGRESSION_METRICS
from tuner.training._sources import IMAGE_SETS, SourceInfo, check_source
from tuner.training._values import check_builtin_values

__all__ = [
    "BUILTIN_NAMES", "CNN_PARAM_KEYS", "MLP_PARAM_KEYS", "PARAM_KEYS", "check_builtin_spec",
    "check_builtin_metric", "check_dataset_spec", "check_image_shape", "check_study",
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


def check_dataset_spec(spec: DatasetSpec | Mapping[str, Any]) -> SourceInfo:
    """Fail with a ``SpecError`` if ``spec`` cannot be loaded; cheap enough for ``tuner validate``.

    The options are checked by the one dataset schema, :class:`~tuner.spec.DatasetSpec`. Then:
    that the name is known, that a file exists and is readable, that its header has the
    ``target`` and its first rows the types the loader needs (at most ``SAMPLE_ROWS`` rows are
    read; an npz's array headers, not its data). Returns what it learnt: the task when already
    certain, the feature count, the native image shape.
    """
    return check_source(parse_dataset(spec).model_dump())


def check_study(spec: StudySpec) -> None:
    """Every check ``tuner submit`` makes before Ray starts, but the machine's resources
    (``tuner.spec.check_resources``, which depends on where the study runs): the trainable
    imports, a built-in's keys and values, the dataset loads (header and first rows), the
    objective is reported, and the sampler, pruner and grid can be built.

    Built-in trainables are checked by name, without importing torch (seconds the CLI would
    otherwise spend before Ray even starts); a user's trainable is imported, which runs its
    module's code.
    """
    builtin = spec.trainable.split(":", 1)[1] if spec.trainable.startswith("builtin:") else None
    if builtin is not None and builtin not in BUILTIN_NAMES:
        raise SpecError("trainable", f"unknown built-in {excerpt(spec.trainable)}; use one of "
                        + ", ".join(f"builtin:{n}" for n in BUILTIN_NAMES))
    if builtin is None:
        from tuner.training._resolve import resolve_trainable

        try:
            resolve_trainable(spec.trainable)
        except TunerError as e:
            raise SpecError("trainable", str(e)) from None
    dataset = spec.dataset.model_dump() if spec.dataset else None
    if builtin is not None:
        check_builtin_spec(builtin, dict(spec.params), dict(spec.fixed), dataset,
                           spec.resources.gpus_per_trial)
    if spec.dataset is not None and dataset is not None:
        info = check_dataset_spec(spec.dataset)
        if builtin is not None:
            check_image_shape(builtin, dataset, info)
            check_builtin_metric(builtin, spec.objective.metric, info.task)
    check_search(spec)


def _key(key: str) -> str:
    return key if key.isidentifier() else excerpt(key)
