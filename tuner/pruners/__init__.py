"""Pruners: Optuna's, configured from the spec; Hyperband wrapped so every sampler still works."""

from tuner.pruners._factory import create_pruner
from tuner.pruners._hyperband import HyperbandPruner

__all__ = ["HyperbandPruner", "create_pruner"]
