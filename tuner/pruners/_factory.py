"""A spec's ``pruner`` section -> an Optuna pruner (the only place that maps pruner names).

Steps are epochs counted from 1, so ``n_warmup_steps: 2`` means no pruning before epoch 2 and
``min_resource: 1`` puts the first successive-halving rung after one epoch.
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner

from tuner.pruners._hyperband import HyperbandPruner
from tuner.spec import StudySpec

__all__ = ["create_pruner"]

PERCENTILE_DEFAULT = 25.0


def create_pruner(spec: StudySpec) -> BasePruner:
    """The pruner a spec asks for; ``none`` is Optuna's ``NopPruner``.

    Fields a kind does not set take that kind's default (``None`` in the spec). The spec has
    already checked the settings against ``epochs`` (``PrunerSpec.check``).
    """
    p = spec.pruner
    interval = p.interval_steps or 1
    if p.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps,
            interval_steps=interval,
        )
    if p.kind == "percentile":
        return optuna.pruners.PercentilePruner(
            PERCENTILE_DEFAULT if p.percentile is None else p.percentile,
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps,
            interval_steps=interval,
        )
    r, eta, boot = p.min_resource or 1, p.reduction_factor or 3, p.bootstrap_count or 0
    if p.kind in ("successive_halving", "asha"):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=r, reduction_factor=eta,
            min_early_stopping_rate=p.min_early_stopping_rate or 0, bootstrap_count=boot,
        )
    if p.kind == "hyperband":
        return HyperbandPruner(
            min_resource=r, max_resource=p.max_resource or spec.epochs, reduction_factor=eta,
            bootstrap_count=boot,
        )
    return optuna.pruners.NopPruner()
