"""The training loop of ``builtin:mlp`` and ``builtin:cnn``: as fast as a hand-written loop, and
reporting per epoch.

Speed comes from what the step loop does *not* do: the data already sits on the device, a batch
is an index slice of one ``randperm`` (no DataLoader), and nothing in the loop waits for the
device (no ``.item()``): the epoch's loss is summed as a tensor and read once per epoch together
with the validation metrics, in a single host sync. On CUDA two switches can pay for networks
big enough to be compute-bound: ``amp: bf16`` (autocast) and ``compile: true`` (``torch.compile``);
both are off on CPU, where they cost more than they save here. Conv nets on CUDA also turn on
``cudnn.benchmark`` (the fastest convolution algorithm per input shape is picked once).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tuner._errors import SpecError
from tuner.training import _params
from tuner.training._checks import MLP_PARAM_KEYS, PARAM_KEYS
from tuner.training._cnn import build_cnn
from tuner.training._context import TrialContext
from tuner.training._data import Dataset, load_dataset
from tuner.training._mlp import build_mlp
from tuner.training._optim import build_optimizer, build_scheduler

__all__ = ["CLASSIFICATION_METRICS", "MLP_PARAM_KEYS", "REGRESSION_METRICS", "fit_cnn", "fit_mlp"]

CLASSIFICATION_METRICS = ("train_loss", "val_loss", "val_accuracy")
REGRESSION_METRICS = ("train_loss", "val_loss", "val_mse", "val_rmse", "val_r2")
_AMP = ("none", "bf16")
_EVAL_CHUNK = 65536  # rows per validation forward: bounds activation memory on big val sets

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_keys(config: Mapping[str, Any], kind: str) -> None:
    """A misspelt key would silently tune nothing, so unknown keys are an error."""
    keys = PARAM_KEYS[kind]
    for key in config:
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise SpecError(
                f"params.{key}", f"builtin:{kind} has no parameter {key!r}; known: {known}"
            )


def _cuda_only(key: str, device: torch.device) -> None:
    """Say so when a CUDA-only switch meets another device (the spec check catches studies
    without GPUs; this catches a GPU worker without CUDA, or a direct call)."""
    warnings.warn(f"{key} is ignored on {device.type}: tuner only turns it on on CUDA",
                  UserWarning, stacklevel=5)  # the caller of fit_mlp / fit_cnn


def _regression_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output.squeeze(-1).float(), target)


def _autocast(config: Mapping[str, Any], device: torch.device) -> Callable[[], Any]:
    """bf16 autocast around the forward pass on CUDA when ``amp: bf16``; a no-op elsewhere."""
    amp = _params.choice(config, "amp", _AMP, "none")
    if amp == "bf16" and device.type == "cuda":
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if amp == "bf16":
        _cuda_only("amp: bf16", device)
    return contextlib.nullcontext


def _speed_up(model: nn.Module, config: Mapping[str, Any], device: torch.device) -> None:
    """``compile: true`` compiles the model in place on CUDA; conv nets get cudnn.benchmark.

    Compilation costs seconds per new shape and mode (train/eval), so it pays for long trials of
    one architecture; a worker process keeps the compiled graphs for later trials that match.
    """
    if device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        torch.backends.cudnn.benchmark = True
    if not _params.flag(config, "compile", False):
        return
    if device.type != "cuda":
        _cuda_only("compile: true", device)
        return
    model.compile()


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    data: Dataset,
    batch_size: int,
    drop_single: bool,
    autocast: Callable[[], Any],
) -> torch.Tensor:
    """One pass over a fresh permutation; returns the mean training loss as a 0-d tensor."""
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    # BatchNorm cannot normalise a batch of one sample: skip such a leftover batch.
    end = n - 1 if drop_single and n % batch_size == 1 and n > 1 else n
    model.train()
    order = torch.randperm(n, device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    for start in range(0, end, batch_size):
        index = order[start : min(start + batch_size, end)]
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach(), alpha=index.shape[0])  # stays on the device: no sync
    return loss_sum / end


def _evaluate(
    model: nn.Module, loss_fn: LossFn, data: Dataset, autocast: Callable[[], Any]
) -> list[torch.Tensor]:
    """Validation metrics as 0-d tensors, in the order of ``*_METRICS[1:]``."""
    model.eval()
    x, y = data.x_val, data.y_val
    with torch.inference_mode(), autocast():
        output = torch.cat(
            [model(x[i : i + _EVAL_CHUNK]) for i in range(0, x.shape[0], _EVAL_CHUNK)]
        )
        loss = loss_fn(output, y)
        if data.task == "classification":
            accuracy = (output.argmax(dim=1) == y).float().mean()
            return [loss, accuracy]
        total = torch.sum((y - y.mean()) ** 2).clamp_min(torch.finfo(torch.float32).tiny)
        r2 = 1.0 - loss * y.shape[0] / total
        return [loss, loss, loss.sqrt(), r2]


def _prepare(config: Mapping[str, Any], ctx: TrialContext, kind: str) -> Dataset:
    """Check what does not depend on the data, load it, and check the objective against it."""
    _check_keys(config, kind)
    if ctx.epochs < 1:
        raise SpecError("epochs", f"must be at least 1, got {ctx.epochs}")
    if ctx.direction not in ("minimize", "maximize"):
        raise SpecError("objective.direction", f"got {ctx.direction!r}; use minimize or maximize")
    if not ctx.dataset:
        raise SpecError("dataset", f"builtin:{kind} needs a dataset, e.g. dataset: {{name: digits}}")
    data = load_dataset(ctx.dataset, torch.device(ctx.device))
    names = CLASSIFICATION_METRICS if data.task == "classification" else REGRESSION_METRICS
    if ctx.objective_metric not in names:
        raise SpecError(
            "objective.metric",
            f"builtin:{kind} does not report {ctx.objective_metric!r}; on {data.task} data it "
            f"reports {', '.join(names)}; choose one of them",
        )
    if kind == "cnn" and data.image_shape is None:
        raise SpecError(
            "dataset.image_shape",
            f"builtin:cnn needs image-shaped data, but {data.name!r} rows are {data.n_features} "
            "plain features; set dataset.image_shape: [channels, height, width] or use builtin:mlp",
        )
    return data


def fit_mlp(config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
    """Train the built-in MLP on ``ctx.dataset`` for up to ``ctx.epochs`` epochs.

    Reports ``train_loss``, ``val_loss`` and ``val_accuracy`` (classification) or ``val_mse``,
    ``val_rmse``, ``val_r2`` (regression, in standardised target units) after every epoch, counted
    from 1. ``Diverged`` and ``optuna.TrialPruned`` raised by ``ctx.report`` propagate. Returns
    the metrics of the best epoch by the objective, plus ``best_epoch`` and ``epochs_run``.
    """
    return _fit(config, ctx, "mlp")


def fit_cnn(config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
    """Train the built-in conv net (``tuner.training._cnn``) on image-shaped data; otherwise
    exactly as :func:`fit_mlp` (same loop, optimizers, schedules, metrics and return value)."""
    return _fit(config, ctx, "cnn")


def _settings(config: Mapping[str, Any] | None, ctx: TrialContext, kind: str) -> tuple[
        dict[str, Any], Dataset, torch.device, int, int | None, Callable[[], Any]]:
    """What a run settles before it builds its network, in this order (so the same ``SpecError``
    comes first alone and in a pack): config, data, device, batch size, patience, autocast."""
    config = dict(config or {})
    data = _prepare(config, ctx, kind)
    device = torch.device(ctx.device)
    batch_size = min(_params.integer(config, "batch_size", 64, low=1), data.x_train.shape[0])
    patience = None
    if config.get("early_stopping_patience") is not None:
        patience = _params.integer(config, "early_stopping_patience", 0, low=1)
    return config, data, device, batch_size, patience, _autocast(config, device)


def _fit(config: Mapping[str, Any], ctx: TrialContext, kind: str) -> dict[str, float]:
    config, data, device, batch_size, patience, autocast = _settings(config, ctx, kind)
    if ctx.seed is not None:
        torch.manual_seed(ctx.seed)  # the executor already offsets it per trial

    classify = data.task == "classification"
    if kind == "cnn" and data.image_shape is not None:  # _prepare refused other data
        model = build_cnn(config, data.image_shape, data.n_classes or 1).to(device)
    else:
        model = build_mlp(config, data.n_features, data.n_classes or 1).to(device)
    optimizer = build_optimizer(config, model.parameters())
    _speed_up(model, config, device)
    scheduler = build_scheduler(config, optimizer, ctx.epochs)
    loss_fn: LossFn = F.cross_entropy if classify else _regression_loss
    names = CLASSIFICATION_METRICS if classify else REGRESSION_METRICS
    has_bn = any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())

    sign = 1.0 if ctx.direction == "minimize" else -1.0
    best: dict[str, float] = {}
    best_epoch, since_best, epoch = 0, 0, 0
    for epoch in range(1, ctx.epochs + 1):
        train_loss = _train_epoch(model, optimizer, loss_fn, data, batch_size, has_bn, autocast)
        scheduler.step()
        tensors = [train_loss, *_evaluate(model, loss_fn, data, autocast)]
        values = torch.stack([t.float() for t in tensors]).tolist()  # the epoch's one host sync
        metrics = dict(zip(names, values, strict=True))
        ctx.report(epoch, **metrics)
        objective = metrics[ctx.objective_metric]
        if not best or sign * objective < sign * best[ctx.objective_metric]:
            best, best_epoch, since_best = metrics, epoch, 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    return {**best, "best_epoch": best_epoch, "epochs_run": epoch}
