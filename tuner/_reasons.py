"""Why a trial failed, where that decides what it costs.

One set for every component that counts trials (the coordinator's budget, coarse-to-fine's stage
positions): a failure for one of these reasons says nothing about the trial's hyperparameters.
"""

from __future__ import annotations

__all__ = ["INFRA_REASONS", "CLAIMED_ELSEWHERE"]

CLAIMED_ELSEWHERE = "claimed_elsewhere"
"""An in-memory placeholder only: another process took a queued trial first (never stored)."""

INFRA_REASONS = frozenset({"worker_lost", "interrupted", "cancelled", CLAIMED_ELSEWHERE})
"""Failures that use no budget: the trial's params are queued again (or another process runs
them), so a study still ends with exactly ``trials`` outcomes."""
