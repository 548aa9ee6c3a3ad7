"""What a trainable gets besides its config: where to run, what to report, when to stop.

The same object is handed to the built-in trainables and to user code (``def fit(config, ctx)``),
so it is the whole contract between tuner and a training function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
import torch

from tuner._errors import Diverged

__all__ = ["TrialContext"]

PruneHook = Callable[[int, float], bool]
"""``hook(epoch, objective_value) -> should_prune``; supplied by the executor."""


@dataclass
class TrialContext:
    """Per-trial handle passed to every trainable.

    ``report`` records one point of the learning curve; when the study's pruner says the trial is
    hopeless it raises :class:`optuna.TrialPruned`, which the trainable should let propagate.
    """

    trial_number: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    epochs: int = 10
    objective_metric: str = "val_loss"
    direction: str = "minimize"
    dataset: dict[str, Any] | None = None
    seed: int | None = None  # per-trial seed (spec seed + trial number), or None
    prune_hook: PruneHook | None = None
    curve: list[dict[str, float]] = field(default_factory=list)

    def report(self, epoch: int, **metrics: float) -> None:
        """Record ``metrics`` for ``epoch``; raise ``Diverged`` on NaN loss, ``TrialPruned`` if told.

        Several calls for one epoch (training metrics, then validation metrics) merge into one
        curve point. Values are converted to plain floats here so that trainables may pass 0-d
        tensors and the single host sync happens once per epoch, not per step.
        """
        epoch = int(epoch)
        values = {name: float(value.item() if isinstance(value, torch.Tensor) else value)
                  for name, value in metrics.items()}
        if self.curve and self.curve[-1]["epoch"] == epoch:
            self.curve[-1].update(values)
        else:
            self.curve.append({"epoch": epoch, **values})
        for name in ("train_loss", "val_loss"):
            if name in values and not math.isfinite(values[name]):
                raise Diverged(epoch, name)
        objective = values.get(self.objective_metric)
        if objective is not None and not math.isfinite(objective):
            raise Diverged(epoch, self.objective_metric)
        if self.prune_hook is not None and objective is not None:
            if self.prune_hook(epoch, objective):
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
