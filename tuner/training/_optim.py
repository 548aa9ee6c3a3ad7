"""Optimizers and per-epoch learning-rate schedules, named the way the tuning literature names them.

Momentum-like knobs keep their textbook names (``momentum``, ``beta1``, ``beta2``, ``rho``) so
that a search space can put them on the ``1 - beta`` log scale; they are mapped to PyTorch's
argument names here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from tuner._errors import SpecError
from tuner.training import _params
from tuner.training._names import LR_DECAYS, OPTIMIZERS

__all__ = ["OPTIMIZERS", "LR_DECAYS", "default_lr", "build_optimizer", "build_scheduler"]

_DECAY_RATE_DEFAULT = {"inverse": 1.0, "exponential": 0.95, "step": 0.5}
_FUSED_DEVICES: dict[object, tuple[str, ...]] = {
    torch.optim.SGD: ("cpu", "cuda"),
    torch.optim.Adam: ("cpu", "cuda"),
    torch.optim.AdamW: ("cpu", "cuda"),
    torch.optim.Adagrad: ("cpu",),
}


def default_lr(optimizer: str) -> float:
    """0.01 for plain SGD, 1e-3 for the adaptive methods; Adadelta's is 1.0 because it rescales
    its steps itself (its paper has no learning rate, and 1e-3 barely moves the weights)."""
    return {"sgd": 1e-2, "adadelta": 1.0}.get(optimizer, 1e-3)


def _fastest(
    cls: Callable[..., torch.optim.Optimizer], params: list[Any], **kwargs: Any
) -> torch.optim.Optimizer:
    """Prefer the fused kernel (one op for all parameters), then ``foreach``, then the loop.

    For the small networks tuned here the per-parameter Python loop of the default
    implementation is a large share of a step; the fused Adam step is ~1.5x faster on CPU.
    Fused kernels exist per optimizer and device (Adagrad's on CPU only, and that is only
    detected at the first step), so the table decides; older torch versions without them fail
    at construction and fall through. Invalid hyperparameters raise from the plain attempt.
    """
    device = params[0].device.type if params else "cpu"
    attempts = [{"foreach": True}]
    if device in _FUSED_DEVICES.get(cls, ()):
        attempts.insert(0, {"fused": True})
    for fast in attempts:
        try:
            return cls(params, **kwargs, **fast)
        except (RuntimeError, ValueError, TypeError):
            continue
    return cls(params, **kwargs)


def _beta(config: Mapping[str, Any], key: str, default: float) -> float:
    return _params.real(config, key, default, low=0.0, high=1.0, high_open=True)


def build_optimizer(
    config: Mapping[str, Any], parameters: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimizer ``config['optimizer']`` names (default adam) with its hyperparameters."""
    name = _params.choice(config, "optimizer", OPTIMIZERS, "adam")
    lr = _params.real(config, "lr", default_lr(name), low=0.0, low_open=True)
    weight_decay = _params.real(config, "weight_decay", 0.0, low=0.0)
    params = list(parameters)
    common: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        momentum = _beta(config, "momentum", 0.9)
        nesterov = _params.flag(config, "nesterov", False)
        if nesterov and momentum == 0:
            raise SpecError(
                "params.nesterov", "needs momentum > 0; set momentum or nesterov: false"
            )
        return _fastest(torch.optim.SGD, params, momentum=momentum, nesterov=nesterov, **common)
    if name == "rmsprop":
        alpha = _params.real(config, "rho", 0.99, low=0.0, high=1.0)
        return _fastest(
            torch.optim.RMSprop,
            params,
            alpha=alpha,
            momentum=_beta(config, "momentum", 0.0),
            **common,
        )
    if name in ("adam", "adamw"):
        betas = (_beta(config, "beta1", 0.9), _beta(config, "beta2", 0.999))
        eps = _params.real(config, "eps", 1e-8, low=0.0, low_open=True)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return _fastest(cls, params, betas=betas, eps=eps, **common)
    if name == "adagrad":
        return _fastest(torch.optim.Adagrad, params, **common)
    rho = _params.real(config, "rho", 0.9, low=0.0, high=1.0)
    return _fastest(torch.optim.Adadelta, params, rho=rho, **common)


def _decay_factor(config: Mapping[str, Any], decay: str, epochs: int) -> Callable[[int], float]:
    """``factor(e)`` multiplies the base lr in the (0-based) epoch ``e`` after any warm-up."""
    rate = _DECAY_RATE_DEFAULT.get(decay, 1.0)
    if decay == "inverse":
        rate = _params.real(config, "decay_rate", rate, low=0.0)
        return lambda e: 1.0 / (1.0 + rate * e)
    if decay == "exponential":
        rate = _params.real(config, "decay_rate", rate, low=0.0, high=1.0, low_open=True)
        return lambda e: rate**e
    if decay == "step":
        rate = _params.real(config, "decay_rate", rate, low=0.0, high=1.0, low_open=True)
        step = _params.integer(config, "step_size", 10, low=1)
        return lambda e: rate ** (e // step)
    if decay == "cosine":
        span = max(epochs, 1)
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, span) / span))
    return lambda e: 1.0


def build_scheduler(
    config: Mapping[str, Any], optimizer: torch.optim.Optimizer, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A schedule stepped once per epoch: ``lr_decay`` plus an optional linear warm-up.

    ``warmup_epochs`` (default 2 for ``lr_decay: warmup``, else 0) ramps the lr linearly up to
    its base value; the decay then runs over the remaining epochs, so ``cosine`` with a warm-up
    still reaches about 0 at the last epoch.
    """
    decay = _params.choice(config, "lr_decay", LR_DECAYS, "none")
    warmup = _params.integer(config, "warmup_epochs", 2 if decay == "warmup" else 0, low=0)
    warmup = min(warmup, max(epochs - 1, 0))
    factor = _decay_factor(config, decay, epochs - warmup)

    def schedule(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return factor(epoch - warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
