"""Hyperband that leaves the sampler alone: Optuna's bracket logic, the whole study for sampling.

Optuna's ``HyperbandPruner`` does two things. It runs one successive-halving pruner per bracket
(a trial's bracket follows from a hash of the study name and its number), which is Hyperband.
And, because Optuna checks ``isinstance(study.pruner, HyperbandPruner)`` before every sampler
call (``optuna.pruners._filter_study``), it also hands the *sampler* a restricted view of the
study: only the current trial's bracket, and only a few attributes. tuner's coarse-to-fine
sampler reads and writes study user attributes (its stage boxes) and counts every trial of the
study to know its stage, so under that view it fails (``AttributeError``) or zooms on the wrong
trials; the random and grid samplers gain nothing from it; TPE models a fraction of the history.

This pruner holds an Optuna ``HyperbandPruner`` and delegates ``prune`` to it, so the pruning
decisions are Optuna's exactly, but it is not an instance of that class: samplers see the study.
"""

from __future__ import annotations

import binascii
import math
from typing import TYPE_CHECKING

import optuna
from optuna.pruners import BasePruner

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

__all__ = ["HyperbandPruner"]


class HyperbandPruner(BasePruner):
    """Optuna's Hyperband decisions without its sampler filtering (see the module docstring).

    Args:
        min_resource: epochs before a trial's first rung in the most aggressive bracket.
        max_resource: the most epochs a trial trains (tuner passes the spec's ``epochs``).
        reduction_factor: at each rung, the best 1 in ``reduction_factor`` go on.
        bootstrap_count: trials a rung needs before any is promoted.
    """

    def __init__(self, min_resource: int = 1, max_resource: int = 1,
                 reduction_factor: int = 3, bootstrap_count: int = 0) -> None:
        self._inner = optuna.pruners.HyperbandPruner(
            min_resource=min_resource, max_resource=max_resource,
            reduction_factor=reduction_factor, bootstrap_count=bootstrap_count,
        )
        self.min_resource, self.max_resource = min_resource, max_resource
        self.reduction_factor, self.bootstrap_count = reduction_factor, bootstrap_count

    @property
    def n_brackets(self) -> int:
        """floor(log_eta(max_resource / min_resource)) + 1, computed as Optuna computes it."""
        return math.floor(math.log(self.max_resource / self.min_resource, self.reduction_factor)) + 1

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        return self._inner.prune(study, trial)

    def bracket_of(self, study_name: str, number: int) -> int:
        """The bracket (0 = most aggressive) of trial ``number``, for reports and tests.

        Bracket ``s`` prunes like successive halving with ``min_early_stopping_rate = s``, among
        the trials of bracket ``s`` only. Optuna's rule, from its documentation and source: each
        bracket gets a share ``ceil(n * eta**(n-1-s) / (n-s))`` of a wheel and a trial lands at
        ``crc32(f"{study_name}_{number}") % wheel``. Optuna keeps this in a private method, so it
        is restated here; ``tests/test_pruners.py`` checks it against Optuna's decisions.
        """
        n, eta = self.n_brackets, self.reduction_factor
        shares = [math.ceil(n * eta ** (n - 1 - s) / (n - s)) for s in range(n)]
        slot = binascii.crc32(f"{study_name}_{number}".encode()) % sum(shares)
        for bracket, share in enumerate(shares):
            slot -= share
            if slot < 0:
                return bracket
        return n - 1  # unreachable: the slot is below the sum of the shares
