"""torch.optim's update rules, written as tensor ops over a whole pack at once.

A pack cannot use ``torch.optim`` directly: its hyperparameters are Python numbers shared by a
param group, while each member of a pack has its own learning rate, momentum, betas, eps and
weight decay. Here each of them is a ``[P, 1]`` column broadcast over the pack's flat ``[P, N]``
parameter buffer, so the whole step is a few elementwise ops whatever P and the number of layers.

The algorithms and the *order* of floating-point operations follow torch's own kernels (the
fused CPU Adam/SGD/Adagrad kernels ``build_optimizer`` prefers, the ``foreach`` RMSprop and
Adadelta), so that a member tracks its solo run to rounding: hyperparameters are formed in
double and rounded to float32 once, as torch's kernels do; Adam's bias corrections are
``1 - beta**step`` in double; RMSprop adds eps *after* the square root; Adagrad's eps is 1e-10
and Adadelta's 1e-6 (torch's defaults, which ``build_optimizer`` keeps). The per-member values
are read from a torch optimizer built for that member by ``build_optimizer``, so parsing,
defaults and validation stay in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tuner.training._packed_params import FlatParams

__all__ = ["PackedOptimizer", "optimizer_kind"]

_KINDS = {
    torch.optim.SGD: "sgd", torch.optim.RMSprop: "rmsprop", torch.optim.Adam: "adam",
    torch.optim.AdamW: "adamw", torch.optim.Adagrad: "adagrad", torch.optim.Adadelta: "adadelta",
}
_STATE = {"sgd": ("buf",), "rmsprop": ("sq", "buf"), "adam": ("m", "v"), "adamw": ("m", "v"),
          "adagrad": ("sum",), "adadelta": ("sq", "acc")}
_UNSUPPORTED = {"dampening": 0, "maximize": False, "centered": False, "amsgrad": False,
                "lr_decay": 0, "initial_accumulator_value": 0}
"""Settings ``build_optimizer`` never changes; a pack refuses anything else rather than ignore it."""


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """The packed name of a torch optimizer ``build_optimizer`` made."""
    kind = _KINDS.get(type(optimizer))
    if kind is None:
        raise ValueError(f"a pack cannot train with {type(optimizer).__name__}; "
                         f"supported: {', '.join(sorted(_KINDS.values()))}")
    return kind


def _hyper(kind: str, group: Mapping[str, Any]) -> dict[str, float]:
    for key, default in _UNSUPPORTED.items():
        if key in group and group[key] != default:
            raise ValueError(f"a pack cannot train {kind} with {key}={group[key]!r}")
    h = {"lr": float(group["lr"]), "wd": float(group["weight_decay"])}
    if kind == "sgd":
        h.update(mom=group["momentum"], nesterov=float(bool(group["nesterov"])))
    elif kind == "rmsprop":
        h.update(alpha=group["alpha"], eps=group["eps"], mom=group["momentum"])
    elif kind in ("adam", "adamw"):
        h.update(beta1=group["betas"][0], beta2=group["betas"][1], eps=group["eps"])
    elif kind == "adagrad":
        h.update(eps=group["eps"])
    else:
        h.update(rho=group["rho"], eps=group["eps"])
    return {k: float(v) for k, v in h.items()}


class PackedOptimizer:
    """One optimizer kind over a pack; ``groups[p]`` holds member ``p``'s torch param group."""

    def __init__(self, kind: str, params: FlatParams, groups: Sequence[Mapping[str, Any]]) -> None:
        if len(groups) != params.p:
            raise ValueError(f"{len(groups)} param groups for a pack of {params.p}")
        self.kind = kind
        self.params = params
        per_member = [_hyper(kind, g) for g in groups]
        device = params.data.device
        self._h64 = {k: torch.tensor([h[k] for h in per_member], dtype=torch.float64, device=device)
                     for k in per_member[0]}
        self.state = {name: torch.zeros_like(params.data) for name in _STATE[kind]}
        self.steps = 0
        self._lr64 = self._h64["lr"].clone()
        self._any_wd = bool((self._h64["wd"] != 0).any())
        self._any_mom = "mom" in self._h64 and bool((self._h64["mom"] != 0).any())
        self._any_nesterov = kind == "sgd" and bool((self._h64["nesterov"] != 0).any())
        self._columns()

    @property
    def base_lrs(self) -> list[float]:
        return self._h64["lr"].tolist()

    def _col(self, t64: torch.Tensor) -> torch.Tensor:
        """A float64 per-member vector as the float32 ``[P, 1]`` column the kernels multiply by."""
        return t64.to(torch.float32).unsqueeze(1)

    def _columns(self) -> None:
        """Recompute the float32 columns (after a new learning rate or a shrink)."""
        h, c = self._h64, {}
        c["lr"] = self._col(self._lr64)
        c["neg_lr"] = self._col(-self._lr64)
        c["wd"] = self._col(h["wd"])
        if "mom" in h:
            c["mom"] = self._col(h["mom"])
        if self.kind == "sgd":
            c["nesterov"] = h["nesterov"].unsqueeze(1) != 0
        if "alpha" in h:
            c["alpha"], c["one_minus_alpha"] = self._col(h["alpha"]), self._col(1 - h["alpha"])
        if "beta1" in h:
            c["one_minus_beta1"] = self._col(1 - h["beta1"])
            c["beta2"], c["one_minus_beta2"] = self._col(h["beta2"]), self._col(1 - h["beta2"])
            c["adamw_decay"] = self._col(1 - self._lr64 * h["wd"])
        if "rho" in h:
            c["rho"], c["one_minus_rho"] = self._col(h["rho"]), self._col(1 - h["rho"])
        if "eps" in h:
            c["eps"] = self._col(h["eps"])
        self._c = c

    def set_lr(self, lrs: Sequence[float]) -> None:
        """This epoch's learning rate per member (base lr x schedule, in double as LambdaLR);
        0 freezes a member that has stopped but not yet been dropped from the pack."""
        self._lr64 = torch.tensor(list(lrs), dtype=torch.float64, device=self.params.data.device)
        self._columns()

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members ``keep`` indexes (call with the same index as the params)."""
        self._h64 = {k: v.index_select(0, keep) for k, v in self._h64.items()}
        self._lr64 = self._lr64.index_select(0, keep)
        self.state = {k: v.index_select(0, keep) for k, v in self.state.items()}
        self._columns()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every member from the gradient in ``params.grad``."""
        p, g, c, s = self.params.data, self.params.grad, self._c, self.state
        self.steps += 1
        if self._any_wd and self.kind != "adamw":
            g.addcmul_(p, c["wd"])  # L2: grad + weight_decay * param (zero columns add exactly 0)
        getattr(self, f"_{'adam' if self.kind == 'adamw' else self.kind}")(p, g, c, s)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, c: dict[str, torch.Tensor],
             s: dict[str, torch.Tensor]) -> None:
        d = g
        if self._any_mom:  # the first step's buffer is the gradient itself: 0 * mom + g
            buf = s["buf"].mul_(c["mom"]).add_(g)
            d = torch.where(c["nesterov"], g.addcmul(buf, c["mom"]), buf) if self._any_nesterov \
                else buf
        p.addcmul_(d, c["lr"], value=-1.0)

    def _rmsprop(self, p: torch.Tensor, g: torch.Tensor, c: dict[str, torch.Tensor],
                 s: dict[str, torch.Tensor]) -> None:
        s["sq"].mul_(c["alpha"]).add_((g * c["one_minus_alpha"]).mul_(g))
        avg = s["sq"].sqrt().add_(c["eps"])  # eps outside the square root, as torch.optim
        if self._any_mom:
            s["buf"].mul_(c["mom"]).add_(g / avg)
            p.addcmul_(s["buf"], c["lr"], value=-1.0)
        else:
            p.add_((g * c["neg_lr"]).div_(avg))

    def _adam(self, p: torch.Tensor, g: torch.Tensor, c: dict[str, torch.Tensor],
              s: dict[str, torch.Tensor]) -> None:
        h = self._h64
        if self.kind == "adamw" and self._any_wd:
            p.mul_(c["adamw_decay"])  # decoupled: param * (1 - lr * weight_decay)
        bias1 = 1 - h["beta1"].pow(self.steps)
        bias2_sqrt = self._col((1 - h["beta2"].pow(self.steps)).sqrt())
        neg_step = self._col(-(self._lr64 / bias1))
        s["m"].lerp_(g, c["one_minus_beta1"])
        s["v"].mul_(c["beta2"]).add_((g * c["one_minus_beta2"]).mul_(g))
        denom = s["v"].sqrt().div_(bias2_sqrt).add_(c["eps"])
        p.add_((s["m"] * neg_step).div_(denom))

    def _adagrad(self, p: torch.Tensor, g: torch.Tensor, c: dict[str, torch.Tensor],
                 s: dict[str, torch.Tensor]) -> None:
        s["sum"].addcmul_(g, g)
        std = s["sum"].sqrt().add_(c["eps"])
        p.add_((g * c["neg_lr"]).div_(std))

    def _adadelta(self, p: torch.Tensor, g: torch.Tensor, c: dict[str, torch.Tensor],
                  s: dict[str, torch.Tensor]) -> None:
        s["sq"].mul_(c["rho"]).add_((g * c["one_minus_rho"]).mul_(g))
        std = s["sq"].add(c["eps"]).sqrt_()
        delta = s["acc"].add(c["eps"]).sqrt_().div_(std).mul_(g)
        s["acc"].mul_(c["rho"]).add_((delta * c["one_minus_rho"]).mul_(delta))
        p.addcmul_(delta, c["lr"], value=-1.0)
