"""The names the built-in trainables accept, without torch.

``tuner validate`` checks a spec's optimizer, activation, init, pool, schedule and AMP names
before Ray or torch start (importing torch costs the CLI seconds), so the lists live here and the
torch modules that build from them (``_optim``, ``_mlp``, ``_cnn``) import them from here.
"""

from __future__ import annotations

__all__ = ["OPTIMIZERS", "LR_DECAYS", "ACTIVATIONS", "INITS", "POOLS", "AMP_MODES",
           "CLASSIFICATION_METRICS", "REGRESSION_METRICS", "MAX_LAYERS", "MAX_WIDTH", "MAX_KERNEL"]

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta")
LR_DECAYS = ("none", "inverse", "exponential", "step", "cosine", "warmup")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "tanh", "sigmoid")
INITS = ("he", "xavier")
POOLS = ("max", "avg", "none")
AMP_MODES = ("none", "bf16")
"""Mirrors ``_trainer._AMP``; tests/test_hostile_input.py keeps the two equal."""
CLASSIFICATION_METRICS = ("train_loss", "val_loss", "val_accuracy")
REGRESSION_METRICS = ("train_loss", "val_loss", "val_mse", "val_rmse", "val_r2")
"""Mirror ``_trainer``'s lists of what each task reports; a test keeps them equal."""

MAX_LAYERS = 1000
MAX_WIDTH = 1_000_000
MAX_KERNEL = 1000
"""Upper bounds of ``layers``, ``hidden_units``/``channels`` and ``kernel_size``: far past any
network these trainables are for, but a bound, so a typo of 10**12 layers is an error, not a
worker that builds layers until the machine runs out of memory."""
