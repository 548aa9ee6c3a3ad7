"""Turn a dataset spec into train/validation tensors that already sit on the training device.

Why the tensors live on the device: the trainer slices mini-batches out of them with an index
tensor, so no DataLoader, worker process or host-to-device copy sits on the step path. Why they
are cached: a long-lived worker runs many trials on the same data, and loading, splitting and
scaling it once per process is enough.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tuner._errors import SpecError
from tuner.spec import DatasetSpec, parse_dataset
from tuner.training._checks import check_dataset_spec
from tuner.training._disk_cache import read_arrays, write_arrays
from tuner.training._sources import DATASET_NAMES, is_user_file, read_raw, user_file

__all__ = ["Dataset", "DATASET_NAMES", "load_dataset", "check_dataset_spec", "clear_dataset_cache",
           "drop_changed_datasets"]

_cache: dict[str, Dataset] = {}  # the validated spec (and device) -> its dataset
_canonical_keys: dict[str, str] = {}  # a spec as given -> the validated spec, validated once
_stamps: dict[str, tuple[str, tuple[int, int] | None]] = {}  # key of a user file's set -> (name, stamp)
_cache_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class Dataset:
    """A split, normalised dataset on one device.

    Features are float32 ``[n, n_features]``. Labels are int64 ``[n]`` in ``0..n_classes-1`` for
    classification. For regression the targets are float32 ``[n]`` *standardised with the train
    split's mean and std*, so losses and ``val_mse``/``val_rmse`` are in units of the target's
    standard deviation and comparable across datasets (``val_r2`` is unaffected by the scaling).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    task: str
    n_features: int
    n_classes: int | None
    name: str
    image_shape: tuple[int, int, int] | None = None
    """(channels, height, width) when rows are flattened images (digits, ``image_shape:``)."""


def _split(x: np.ndarray, y: np.ndarray, task: str, fraction: float, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import train_test_split

    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        n_val = int(np.ceil(fraction * len(y)))
        if counts.min() >= 2 and len(counts) <= min(n_val, len(y) - n_val):
            stratify = y
        else:
            warnings.warn(
                "some class has fewer than 2 samples or the validation split is smaller than the "
                "number of classes; splitting without stratification",
                stacklevel=4,
            )
    try:
        return list(
            train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)
        )
    except ValueError as e:
        raise SpecError("dataset.validation_fraction", f"cannot split {len(y)} rows: {e}") from e


def _scale(train: np.ndarray, val: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Fit the scaling on ``train`` only and apply it unchanged to ``val`` (no leakage)."""
    if how == "zscore":
        shift, scale = train.mean(axis=0), train.std(axis=0)
    elif how == "minmax":
        shift, scale = train.min(axis=0), train.max(axis=0) - train.min(axis=0)
    else:
        return train, val
    scale = np.where(scale > 0, scale, 1.0)  # a constant column stays constant instead of NaN
    return (train - shift) / scale, (val - shift) / scale


def _prepare(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Read, split and scale ``spec`` into NumPy arrays (``task``, ``n_classes`` and
    ``image_shape`` ride along as 0-d/1-d arrays so that the whole result can be cached)."""
    raw = read_raw(spec)
    y = raw.y
    n_classes = -1
    if raw.task == "classification":
        classes, y = np.unique(y, return_inverse=True)
        n_classes = len(classes)
        if n_classes < 2:
            raise SpecError("dataset.target", "the target has a single class; nothing to learn")
    else:
        y = y.astype(np.float64)
    x_tr, x_va, y_tr, y_va = _split(raw.x, y, raw.task, spec["validation_fraction"], spec["seed"])
    x_tr, x_va = _scale(x_tr, x_va, spec["normalize"])
    if raw.task == "regression":
        mean, std = y_tr.mean(), y_tr.std()
        std = std if std > 0 else 1.0
        y_tr, y_va = (y_tr - mean) / std, (y_va - mean) / std
    shape = tuple(spec["image_shape"]) if spec.get("image_shape") else raw.image_shape
    if shape is not None and int(np.prod(shape)) != raw.x.shape[1]:
        raise SpecError("dataset.image_shape", f"{list(shape)} holds {int(np.prod(shape))} values "
                        f"but each row has {raw.x.shape[1]} features; fix the shape")
    return {"x_train": x_tr, "y_train": y_tr, "x_val": x_va, "y_val": y_va,
            "task": np.array(raw.task), "n_classes": np.array(n_classes),
            "image_shape": np.array(shape if shape is not None else (), dtype=np.int64)}


def _prepared(spec: dict[str, Any], key: str) -> dict[str, np.ndarray]:
    """:func:`_prepare`, through the disk cache for sets that are the same on every run."""
    if is_user_file(spec["name"]):
        return _prepare(spec)
    arrays = read_arrays(key)
    if arrays is None:
        arrays = _prepare(spec)
        write_arrays(key, arrays)
    return arrays


def _build(spec: dict[str, Any], device: torch.device, key: str) -> Dataset:
    arrays = _prepared(spec, key)
    task = str(arrays["task"])
    n_classes = int(arrays["n_classes"])
    shape = tuple(int(v) for v in arrays["image_shape"])
    y_dtype = torch.int64 if task == "classification" else torch.float32

    def put(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype).to(device)

    return Dataset(
        x_train=put(arrays["x_train"], torch.float32),
        y_train=put(arrays["y_train"], y_dtype),
        x_val=put(arrays["x_val"], torch.float32),
        y_val=put(arrays["y_val"], y_dtype),
        task=task,
        n_features=int(arrays["x_train"].shape[1]),
        n_classes=n_classes if n_classes >= 0 else None,
        name=str(spec["name"]),
        image_shape=(shape[0], shape[1], shape[2]) if shape else None,
    )


def load_dataset(spec: DatasetSpec | Mapping[str, Any], device: torch.device) -> Dataset:
    """Load, split and normalise ``spec`` onto ``device``; the same spec and device give the same
    object for the life of the process (treat its tensors as read-only). A mapping (such as
    ``ctx.dataset``) is validated by :class:`~tuner.spec.DatasetSpec` once, when first loaded."""
    device = _canonical(torch.device(device))
    raw = spec.model_dump() if isinstance(spec, DatasetSpec) else spec
    if not isinstance(raw, Mapping):
        parse_dataset(raw)  # raises the SpecError that says what a dataset section is
    given = json.dumps(dict(raw), sort_keys=True, default=str)
    with _cache_lock:  # one load per key, even with several trials starting at once
        full = _canonical_keys.get(given)
        if full is None:
            full = _canonical_keys[given] = json.dumps(parse_dataset(raw).model_dump(), sort_keys=True)
        key = full + "|" + str(device)
        cached = _cache.get(key)
        if cached is None:
            spec_dict = json.loads(full)
            name = spec_dict["name"]
            stamp = _stamp(name)  # before reading: a write meanwhile shows as a change
            cached = _cache[key] = _build(spec_dict, device, full)
            if is_user_file(name):
                _stamps[key] = (name, stamp)
    return cached


def drop_changed_datasets() -> list[str]:
    """Forget the cached sets of ``csv:``/``npz:``/``parquet:`` files that changed on disk since
    they were loaded (size or modification time); returns their names. A long-lived worker calls
    this when a study starts, so that the study trains on the file as it is now, while the
    trials of one study all see the same data."""
    with _cache_lock:
        changed = [key for key, (name, stamp) in _stamps.items() if _stamp(name) != stamp]
        names = [_stamps.pop(key)[0] for key in changed]
        for key in changed:
            _cache.pop(key, None)
        return names


def _stamp(name: str) -> tuple[int, int] | None:
    path = user_file(name)
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _canonical(device: torch.device) -> torch.device:
    """``cuda`` and ``cuda:0`` are one device (when 0 is current): keep one copy of the data."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def clear_dataset_cache() -> None:
    """Drop every cached dataset, e.g. after a file on disk changed or to free device memory."""
    with _cache_lock:
        _cache.clear()
        _canonical_keys.clear()
        _stamps.clear()
