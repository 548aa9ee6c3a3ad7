"""Where a dataset's numbers come from: bundled sklearn sets, synthetic generators, user files.

Everything here returns raw NumPy arrays; splitting, scaling and moving to a device happen in
``_data.py`` so that every source gets exactly the same treatment.
"""

from __future__ import annotations

import errno
import importlib.util
import math
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lazy_loader as lazy
import numpy as np

from tuner._errors import SpecError
from tuner._text import excerpt, one_line

# Only csv and parquet files need pandas (0.8 s to import): a worker training on a bundled or
# synthetic set, and `tuner validate` of such a spec, never load it.
pd = lazy.load("pandas")

__all__ = ["DATASET_NAMES", "IMAGE_SETS", "SAMPLE_ROWS", "RawData", "SourceInfo", "check_source",
           "is_user_file", "read_raw"]

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
SAMPLE_ROWS = 1000
"""Rows of a csv/parquet file that ``tuner validate`` reads to check column types."""
_MAX_SYNTHETIC_VALUES = 10**9
"""Largest synthetic data set (n_samples x n_features): 8 GB as float64."""
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
        "dataset.name", f"unknown dataset {excerpt(name)}; choose one of: {', '.join(DATASET_NAMES)}"
    )


def _shown(path: Path) -> str:
    """A path as an error quotes it: short, escaped, never more than the user wrote."""
    return excerpt(str(path), 60)


def is_user_file(name: object) -> bool:
    """``csv:``/``npz:``/``parquet:`` names: data that can change under the same name."""
    return user_file(name) is not None


def user_file(name: object) -> Path | None:
    """The file a ``csv:``/``npz:``/``parquet:`` name reads (as opened: relative to the working
    directory); None for bundled and synthetic sets."""
    return _split_name(name)[1]


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
        if "\0" in path:
            raise SpecError("dataset.name", f"the path {excerpt(path, 60)} holds a NUL byte, which "
                            "no file name can; fix the path")
        try:
            return kind, Path(path).expanduser()
        except RuntimeError:  # ~user of an unknown user
            return kind, Path(path)
    if not sep and name in (*_CLASSIFICATION_SETS, *_REGRESSION_SETS, *_SYNTHETIC):
        return name, None
    raise _unknown_name(name)


def _require_file(kind: str, path: Path) -> None:
    """The path names a readable, non-empty regular file; each way it can fail is one line."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise SpecError(
            "dataset.name", f"file {_shown(path)} does not exist; give a path relative to the "
            "spec's folder or an absolute one") from None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise SpecError("dataset.name", f"the path {_shown(path)} is too long for this system "
                            f"({len(str(path)):,} characters; a file name takes at most 255 "
                            "bytes); shorten it") from None
        raise SpecError("dataset.name", f"file {_shown(path)} cannot be read "
                        f"({e.strerror or type(e).__name__}); check the path and its "
                        "permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError("dataset.name", f"{_shown(path)} is a directory; name the .{kind} file "
                        "in it")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError("dataset.name", f"{_shown(path)} is not a regular file; name a .{kind} "
                        "data file")
    if info.st_size == 0:  # also every /proc file, which is no data set either
        raise SpecError("dataset.name", f"file {_shown(path)} is empty; write a header row and "
                        "data rows into it")
    if kind == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise SpecError("dataset.name", "parquet needs pyarrow: pip install 'tuner[parquet]'")


def _unreadable(kind: str, path: Path, e: BaseException) -> SpecError:
    """A reader's exception as one line that names the file and the kind, never its contents."""
    if isinstance(e, SpecError):
        return e
    if isinstance(e, pd.errors.EmptyDataError):
        return SpecError("dataset.name", f"file {_shown(path)} has no header row; write the "
                         "column names on its first line")
    if isinstance(e, UnicodeDecodeError):
        return SpecError("dataset.name", f"file {_shown(path)} is not UTF-8 text; save it as "
                         "UTF-8 CSV")
    if isinstance(e, OSError) and e.strerror:
        return SpecError("dataset.name", f"file {_shown(path)} cannot be read ({e.strerror}); "
                         "check its permissions")
    fix = {"csv": "comma-separated text with one header row",
           "parquet": "a Parquet file (e.g. pandas DataFrame.to_parquet)",
           "npz": "an npz archive (numpy.savez)"}[kind]
    return SpecError("dataset.name", f"file {_shown(path)} is not a readable {kind} file "
                     f"({type(e).__name__}); it must be {fix}")


def _read_frame(kind: str, path: Path, rows: int | None = None) -> pd.DataFrame:
    """The csv/parquet table (its first ``rows`` rows if given); failures are one line."""
    try:
        if kind == "csv":
            return pd.read_csv(path, nrows=rows)
        if rows is None:
            return pd.read_parquet(path)
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as file:
            batch = next(file.iter_batches(batch_size=rows), None)
            if batch is None:
                return file.schema_arrow.empty_table().to_pandas()
            return batch.to_pandas()
    except Exception as e:  # noqa: BLE001 - pandas and pyarrow raise many types; all mean "unreadable"
        raise _unreadable(kind, path, e) from None


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype in an npz, read from the .npy headers, not the data."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy format {version}")
                out[member[: -len(".npy")]] = (tuple(shape), np.dtype(dtype))
    except Exception as e:  # noqa: BLE001 - zipfile and numpy's header parser raise many types
        raise _unreadable("npz", path, e) from None
    return out


def _check_npz(path: Path, arrays: dict[str, tuple[tuple[int, ...], np.dtype]],
               target: str | None) -> None:
    """What the npz reader needs, from headers: x and y present, numeric, matching lengths."""
    y_key = target or "y"
    x_key = "x" if "x" in arrays else "X"
    if x_key not in arrays or y_key not in arrays:
        raise SpecError(
            "dataset.name",
            f"{_shown(path)} must hold arrays 'x' (or 'X') and {excerpt(y_key)}; it has "
            f"{len(arrays)} array(s) without them",
        )
    for key in (x_key, y_key):
        if arrays[key][1].hasobject:
            raise SpecError("dataset.name", f"array {excerpt(key)} of {_shown(path)} holds "
                            "pickled Python objects, which tuner does not load (allow_pickle is "
                            "off); save plain numeric arrays")
    (x_shape, x_dtype), (y_shape, _) = arrays[x_key], arrays[y_key]
    if not x_shape or not (np.issubdtype(x_dtype, np.number) or x_dtype == np.bool_):
        raise SpecError("dataset.name", f"{_shown(path)}: x must be a numeric array [n, ...], "
                        f"got dtype {x_dtype} and shape {x_shape}")
    y_rows = y_shape[0] if len(y_shape) == 1 or (len(y_shape) == 2 and y_shape[1] == 1) else None
    if y_rows != x_shape[0]:
        raise SpecError("dataset.name", f"{_shown(path)}: y must be 1-D with one value per row "
                        f"of x; got x {x_shape}, y {y_shape}")


def _check_columns(kind: str, path: Path, columns: list[str], target: str | None) -> None:
    """The target names a column and there is a feature besides it. Column names are the
    file's contents, so messages give their count, never the names."""
    count = f"{len(columns)} column(s)"
    if not target:
        raise SpecError(
            "dataset.target", f"{kind} datasets need target: the label column's name "
            f"({_shown(path)} has {count})")
    if target not in columns:
        raise SpecError(
            "dataset.target", f"no column {excerpt(target)} in {_shown(path)} (it has "
            f"{count}); use the header's exact spelling")
    if len(columns) < 2:
        raise SpecError("dataset.name", f"{_shown(path)} has no feature columns besides "
                        f"{excerpt(target)}")


@dataclass(frozen=True)
class SourceInfo:
    """What the cheap checks learn about a data set without loading it: its task when certain,
    its number of features and its rows' native image shape (None: not known, or plain rows)."""

    task: str | None
    n_features: int | None
    image_shape: tuple[int, int, int] | None = None


_BUNDLED_FEATURES = {"digits": 64, "wine": 13, "breast_cancer": 30, "iris": 4, "diabetes": 10}


def check_source(spec: dict[str, Any]) -> SourceInfo:
    """The cheap checks: the name is known, a file exists, is readable and has the target, its
    first rows have the types the loader needs. Reads headers and at most ``SAMPLE_ROWS`` rows.

    The task is known when certain, else None (an integer target of a file with ``task: auto``:
    its number of distinct values decides).
    """
    kind, path = _split_name(spec.get("name"))
    requested = spec.get("task", "auto")
    if path is None:
        if kind in _SYNTHETIC:
            _check_synthetic(kind, spec)
        default = "regression" if kind in (*_REGRESSION_SETS, "synthetic_regression") else \
            "classification"
        features = int(spec["n_features"]) if kind in _SYNTHETIC else _BUNDLED_FEATURES[kind]
        return SourceInfo(default if requested == "auto" else requested, features,
                          IMAGE_SETS.get(kind))
    _require_file(kind, path)
    image_shape = None
    if kind == "npz":
        arrays = _npz_headers(path)
        _check_npz(path, arrays, spec.get("target"))
        x_shape = arrays["x" if "x" in arrays else "X"][0]
        y_dtype = arrays[spec.get("target") or "y"][1]
        sure = None if np.issubdtype(y_dtype, np.integer) else (
            "regression" if np.issubdtype(y_dtype, np.floating) else "classification")
        features = math.prod(x_shape[1:])
        image_shape = (1, *x_shape[1:]) if len(x_shape) == 3 else (
            tuple(x_shape[1:]) if len(x_shape) == 4 else None)
    else:
        frame = _read_frame(kind, path, SAMPLE_ROWS)
        if frame.empty:
            _check_columns(kind, path, [str(c) for c in frame.columns], spec.get("target"))
            raise SpecError("dataset.name", f"{_shown(path)} has a header but no data rows; add "
                            "rows")
        _, y = _from_frame(kind, frame, path, spec.get("target"))
        labels = pd.Series(y).dtype
        sure = "classification" if not pd.api.types.is_numeric_dtype(labels) or \
            pd.api.types.is_bool_dtype(labels) else None
        _resolve_task(y, requested, "auto")  # a non-numeric target cannot be regressed on
        features = len(frame.columns) - 1
    return SourceInfo(sure if requested == "auto" else requested, features,
                      image_shape)  # type: ignore[arg-type]


def _check_synthetic(kind: str, spec: dict[str, Any]) -> None:
    """What scikit-learn's generators would refuse at load time, and data too big to hold."""
    n, f = int(spec["n_samples"]), int(spec["n_features"])
    if n * f > _MAX_SYNTHETIC_VALUES:
        raise SpecError("dataset.n_samples", f"{n:,} x {f:,} features is more than "
                        f"{_MAX_SYNTHETIC_VALUES:,} values to generate; lower n_samples or "
                        "n_features")
    informative = min(int(spec["n_informative"]), f)
    classes = int(spec["n_classes"])
    if kind == "synthetic_classification" and informative < 62 and classes * 2 > 2**informative:
        raise SpecError("dataset.n_classes", f"{classes} classes need n_informative >= "
                        f"{math.ceil(math.log2(classes * 2))} (each class is 2 clusters in the "
                        f"informative space), got {informative}; raise n_informative")


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
    columns = [str(c) for c in frame.columns]
    _check_columns(kind, path, columns, target)
    if columns.count(str(target)) > 1:
        raise SpecError("dataset.target", f"{_shown(path)} has {columns.count(str(target))} "
                        f"columns named {excerpt(target)}; rename the extra ones")
    y = frame[target]
    features = frame.drop(columns=[target])
    for i, column in enumerate(features.columns):
        where = f"feature column {i + 1} of {len(features.columns)} in {_shown(path)}"
        dtype = features[column].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise SpecError(
                "dataset.name", f"{where} is not numeric ({dtype}); encode it as numbers or drop it")
        missing = int(features[column].isna().sum())
        if missing:
            raise SpecError(
                "dataset.name", f"{where} has {missing} missing values; fill or drop them")
    if y.isna().any():
        raise SpecError(
            "dataset.target", f"target {excerpt(target)} of {_shown(path)} has missing values; "
            "drop those rows")
    try:
        return features.to_numpy(dtype=np.float64), y.to_numpy()
    except (ValueError, TypeError, OverflowError) as e:
        raise _unreadable(kind, path, e) from None


def _npz_image_shape(x: np.ndarray) -> tuple[int, int, int] | None:
    """``[n, h, w]`` -> ``(1, h, w)``; ``[n, c, h, w]`` -> ``(c, h, w)``; else None."""
    if x.ndim == 3:
        return 1, int(x.shape[1]), int(x.shape[2])
    if x.ndim == 4:
        return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    return None


def _from_npz(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int] | None]:
    """x (rows flattened), y and the image shape of an npz; ``allow_pickle`` stays off."""
    _check_npz(path, _npz_headers(path), target)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            x = np.asarray(arrays["x" if "x" in arrays.files else "X"])
            y = np.asarray(arrays[target or "y"])
    except Exception as e:  # noqa: BLE001 - a damaged member: zlib, zipfile or numpy errors
        raise _unreadable("npz", path, e) from None
    image_shape = _npz_image_shape(x)
    x = x.reshape(len(x), -1) if x.ndim != 2 else x  # images [n, h, w] become [n, h*w]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return x.astype(np.float64), y, image_shape


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
        raise SpecError("dataset", one_line(f"{name} cannot be generated: {e}", 150)) from e


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
            x, y, image_shape = _from_npz(path, spec.get("target"))
        else:
            frame = _read_frame(kind, path)
            if frame.empty:
                raise SpecError("dataset.name", f"{_shown(path)} has no data rows; add rows")
            x, y = _from_frame(kind, frame, path, spec.get("target"))
        default = "auto"
    return RawData(x=x, y=y, task=_resolve_task(y, spec["task"], default), image_shape=image_shape)
