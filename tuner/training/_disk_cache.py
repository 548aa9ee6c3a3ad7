"""Prepared arrays of data sets that are the same on every run, kept on disk between processes.

A starting worker that builds one of scikit-learn's bundled sets (or a synthetic one) imports
``sklearn`` and scipy for the loader and the stratified split: about 2.5 s of CPU, more than most
trials on these sets take, and paid again by every worker of every study. The prepared arrays
are a few hundred kB, so the first build keeps them in the cache directory and later workers
read them. Files named by the user are never cached: they change under the same name.

The directory is ``TUNER_CACHE_DIR``, else ``$XDG_CACHE_HOME/tuner`` or ``~/.cache/tuner``. A cache
that cannot be written or read is only slower, never wrong: keys hold the prepared spec and
scikit-learn's version, files are written beside and renamed into place, and a broken file is
built again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "read_arrays", "write_arrays"]

MAX_BYTES = 64 * 2**20
"""Larger prepared sets (big synthetic ones) are not worth a disk copy: generating is fast."""


def cache_dir() -> Path:
    """Where tuner keeps prepared data sets."""
    root = os.environ.get("TUNER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tuner")
    return Path(root) / "datasets"


def _path(key: str) -> Path | None:
    try:
        sk = version("scikit-learn")
    except PackageNotFoundError:
        return None
    digest = hashlib.sha256(f"{key}|scikit-learn {sk}".encode()).hexdigest()[:32]
    return cache_dir() / f"{digest}.npz"


def read_arrays(key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``key``, or None (not cached, unreadable or broken)."""
    path = _path(key)
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def write_arrays(key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` under ``key``; two writers at once both leave a whole file."""
    path = _path(key)
    if path is None or sum(a.nbytes for a in arrays.values()) > MAX_BYTES:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:  # a read-only home, a full disk: build from the source each time
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
