"""Where a dataset's numbers come from: bundled sklearn sets, synthetic generators, user files.

Everything here returns raw NumPy arrays; splitting, scaling and moving to a device happen in
``_data.py`` so that every source gets exactly the same treatment.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner._errors import SpecError

__all__ = ["DATASET_NAMES", "IMAGE_SETS", "RawData", "check_source", "read_raw"]

_CLASSIFICATION_SETS = ("digits", "wine", "breast_cancer", "iris")
_REGRESSION_SETS = ("diabetes",)
_SYNTHETIC = ("synthetic_classification", "synthetic_regression")
_FILE_KINDS = ("csv", "npz", "parquet")
DATASET_NAMES: tuple[str, ...] = (
    *_CLASSIFICATION_SETS,
    *_REGRESSION_SETS,
    *_SYNTHETIC,
    *(f"{kind}:PATH" for kind in _FILE_KINDS),
)
_MAX_AUTO_CLASSES = 50
IMAGE_SETS = {"digits": (1, 8, 8)}  # bundled sets whose rows are images (channels, h, w)
"""A file's integer/string/bool target with at most this many values is taken as class labels."""


@dataclass(frozen=True)
class RawData:
    """Features ``x`` as float64 ``[n, f]``, targets ``y`` as ``[n]``, and the resolved task.

    ``image_shape`` is ``(channels, height, width)`` when each row is a flattened image (digits,
    or an npz whose ``x`` is ``[n, h, w]`` or ``[n, c, h, w]``), else None.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    image_shape: tuple[int, int, int] | None = None


def _unknown_name(name: object) -> SpecError:
    return SpecError(
        "dataset.name", f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}"
    )


def _split_name(name: object) -> tuple[str, Path | None]:
    """``('digits', None)`` or ``('csv', Path(...))``; unknown names fail here."""
    if not isinstance(name, str):
        raise _unknown_name(name)
    kind, sep, path = name.partition(":")
    if sep and kind in _FILE_KINDS:
        if not path:
            raise SpecError(
                "dataset.name", f"'{kind}:' needs a path after the colon: '{kind}:data.{kind}'"
            )
        return kind, Path(path).expanduser()
    if not sep and name in (*_CLASSIFICATION_SETS, *_REGRESSION_SETS, *_SYNTHETIC):
        return name, None
    raise _unknown_name(name)


def _require_file(kind: str, path: Path) -> None:
    if not path.is_file():
        raise SpecError(
            "dataset.name",
            f"file '{path}' does not exist; give a path relative to the working directory "
            f"({os.getcwd()}) or an absolute one",
        )
    if kind == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise SpecError("dataset.name", "parquet needs pyarrow: pip install 'tuner[parquet]'")


def _file_columns(kind: str, path: Path) -> list[str]:
    """Column names (csv/parquet) or array names (npz) without reading the data."""
    if kind == "csv":
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with np.load(path, allow_pickle=False) as arrays:
        return list(arrays.files)


def _check_columns(kind: str, path: Path, columns: list[str], target: str | None) -> None:
    if kind == "npz":
        y_key = target or "y"
        if not ({"x", "X"} & set(columns)) or y_key not in columns:
            raise SpecError(
                "dataset.name",
                f"'{path}' must hold arrays 'x' (or 'X') and '{y_key}'; "
                f"it has: {', '.join(columns)}",
            )
        return
    shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
    if not target:
        raise SpecError(
            "dataset.target", f"{kind} datasets need target: the label column, one of {shown}"
        )
    if target not in columns:
        raise SpecError(
            "dataset.target", f"column {target!r} is not in '{path}'; columns are: {shown}"
        )
    if len(columns) < 2:
        raise SpecError("dataset.name", f"'{path}' has no feature columns besides {target!r}")


def check_source(spec: dict[str, Any]) -> None:
    """The cheap checks: the name is known, a file exists and has the target; nothing is loaded."""
    kind, path = _split_name(spec.get("name"))
    if path is not None:
        _require_file(kind, path)
        _check_columns(kind, path, _file_columns(kind, path), spec.get("target"))


def _is_label_dtype(values: pd.Series) -> bool:
    dtype = values.dtype
    return bool(
        pd.api.types.is_integer_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def _resolve_task(y: np.ndarray, requested: str, default: str) -> str:
    """Apply ``task: auto`` and refuse a regression on non-numeric targets."""
    series = pd.Series(y)
    numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )
    if requested == "auto":
        if default != "auto":
            return default
        if not _is_label_dtype(series):
            return "regression"
        # Text can't be regressed on, so many distinct strings are still classes.
        few = series.nunique() <= _MAX_AUTO_CLASSES
        return "classification" if few or not numeric else "regression"
    if requested == "regression" and not numeric:
        raise SpecError(
            "dataset.task", f"the target is not numeric ({series.dtype}); use task: classification"
        )
    return requested


def _from_frame(
    kind: str, frame: pd.DataFrame, path: Path, target: str | None
) -> tuple[np.ndarray, np.ndarray]:
    _check_columns(kind, path, [str(c) for c in frame.columns], target)
    y = frame[target]
    features = frame.drop(columns=[target])
    for column in features.columns:
        dtype = features[column].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise SpecError(
                "dataset.name",
                f"feature column {column!r} of '{path}' is not numeric ({dtype}); "
                "encode it as numbers or drop it",
            )
        missing = int(features[column].isna().sum())
        if missing:
            raise SpecError(
                "dataset.name",
                f"feature column {column!r} of '{path}' has {missing} missing values; "
                "fill or drop them",
            )
    if y.isna().any():
        raise SpecError(
            "dataset.target", f"target {target!r} of '{path}' has missing values; drop those rows"
        )
    return features.to_numpy(dtype=np.float64), y.to_numpy()


def _npz_image_shape(x: np.ndarray) -> tuple[int, int, int] | None:
    """``[n, h, w]`` -> ``(1, h, w)``; ``[n, c, h, w]`` -> ``(c, h, w)``; else None."""
    if x.ndim == 3:
        return 1, int(x.shape[1]), int(x.shape[2])
    if x.ndim == 4:
        return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    return None


def _from_npz(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        _check_columns("npz", path, list(arrays.files), target)
        x = np.asarray(arrays["x" if "x" in arrays.files else "X"])
        y = np.asarray(arrays[target or "y"])
    x = x.reshape(len(x), -1) if x.ndim != 2 else x  # images [n, h, w] become [n, h*w]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise SpecError(
            "dataset.name",
            f"'{path}': y must be 1-D with one value per row of x; got x {x.shape}, y {y.shape}",
        )
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise SpecError("dataset.name", f"'{path}': x must be numeric, got dtype {x.dtype}")
    return x.astype(np.float64), y


def _synthetic(name: str, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification, make_regression

    n_samples, n_features = int(spec["n_samples"]), int(spec["n_features"])
    n_informative = min(int(spec["n_informative"]), n_features)
    try:
        if name == "synthetic_regression":
            return make_regression(
                n_samples=n_samples,
                n_features=n_features,
                n_informative=n_informative,
                noise=float(spec["noise"]),
                random_state=int(spec["seed"]),
            )
        # ``noise`` is the fraction of labels flipped at random: the classification analogue.
        return make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            n_redundant=min(2, n_features - n_informative),
            n_classes=int(spec["n_classes"]),
            flip_y=float(spec["noise"]),
            random_state=int(spec["seed"]),
        )
    except ValueError as e:
        raise SpecError("dataset", f"{name} cannot be generated: {e}") from e


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets

    loader: Callable[..., Any] = getattr(sklearn.datasets, f"load_{name}")
    x, y = loader(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def read_raw(spec: dict[str, Any]) -> RawData:
    """Read the arrays ``spec`` names (defaults already applied) and settle the task."""
    kind, path = _split_name(spec.get("name"))
    image_shape = IMAGE_SETS.get(kind) if path is None else None
    if path is None:
        x, y = _synthetic(kind, spec) if kind in _SYNTHETIC else _bundled(kind)
        default = (
            "regression"
            if kind in (*_REGRESSION_SETS, "synthetic_regression")
            else "classification"
        )
    else:
        _require_file(kind, path)
        if kind == "npz":
            with np.load(path, allow_pickle=False) as arrays:
                name = "x" if "x" in arrays.files else "X"
                image_shape = _npz_image_shape(arrays[name]) if name in arrays.files else None
            x, y = _from_npz(path, spec.get("target"))
        else:
            frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
            x, y = _from_frame(kind, frame, path, spec.get("target"))
        default = "auto"
    return RawData(x=x, y=y, task=_resolve_task(y, spec["task"], default), image_shape=image_shape)
