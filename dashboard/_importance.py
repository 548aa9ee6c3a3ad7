"""Parameter importance: a cheap fANOVA (first-order effects) on the complete trials.

fANOVA's first-order importance of a parameter is the variance of the objective's mean as a
function of that parameter alone, as a share of the objective's variance. With trials drawn
uniformly on each parameter's own scale (random search, coarse-to-fine stages) that is estimated
directly: cut the parameter's sampling coordinate (log10 lr, log10(1-beta), log2 batch size, the
category) into bins, take the variance between the bins' mean objectives, and subtract the part
that noise alone would put there (epsilon squared, clipped at 0).

Why not ``optuna.importance``: it needs an Optuna study, and loading a 100,000-trial study
through Optuna takes minutes; even rebuilt in memory from the plot sample, its random-forest
fANOVA took 3-7 s on this 2-core machine. This takes milliseconds on the same sample, and it
reads each parameter on the scale it was sampled on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tuner._dashboard._axes import Axis

__all__ = ["MIN_TRIALS", "importance"]

MIN_TRIALS = 2
"""Fewer complete trials than this: there is nothing to attribute variance to."""
_BINS = 10


def _bins(coord: pd.Series, categorical: bool) -> pd.Series:
    """Bin labels: one per category (or distinct value, when few), else equal-count bins."""
    if categorical or coord.nunique() <= _BINS:
        return coord.astype(str)
    return pd.qcut(coord.rank(method="first"), _BINS, labels=False).astype(str)


def _effect(y: np.ndarray, groups: pd.Series) -> float:
    """Epsilon squared: between-group variance beyond what chance gives, over total variance."""
    total = float(((y - y.mean()) ** 2).sum())
    k, n = groups.nunique(), len(y)
    if total <= 0 or k < 2 or n <= k:
        return 0.0
    frame = pd.DataFrame({"y": y, "g": groups.to_numpy()})
    stats = frame.groupby("g")["y"].agg(["mean", "count"])
    between = float((stats["count"] * (stats["mean"] - y.mean()) ** 2).sum())
    within = (total - between) / (n - k)
    return max(0.0, (between - (k - 1) * within) / total)


def importance(frame: pd.DataFrame, axes: Sequence[Axis]) -> dict[str, float]:
    """``{param: share}`` over the parameters that vary (shares sum to 1), most important first.

    ``{}`` with fewer than :data:`MIN_TRIALS` complete trials, when no parameter varies, or when
    no parameter explains more of the objective than noise would.
    """
    done = frame[frame["value"].notna()]
    if "state" in done:
        done = done[done["state"] == "COMPLETE"]
    y = pd.to_numeric(done["value"], errors="coerce")
    done, y = done[np.isfinite(y)], y[np.isfinite(y)].to_numpy(dtype=float)
    if len(done) < MIN_TRIALS:
        return {}
    raw: dict[str, float] = {}
    for axis in axes:
        column = f"params_{axis.name}"
        if column not in done:
            continue
        coord = axis.coordinate(done[column])
        known = coord.notna().to_numpy()  # a parameter that some trials lack: rate it on the rest
        if known.sum() < MIN_TRIALS or coord[known].nunique() < 2:
            continue
        raw[axis.name] = _effect(y[known], _bins(coord[known], axis.kind == "category"))
    total = sum(raw.values())
    if not raw or total <= 0 or not math.isfinite(total):
        return {}
    return dict(sorted(((k, v / total) for k, v in raw.items()), key=lambda kv: -kv[1]))
