"""The fused MLP: P copies of ``build_mlp``'s network as one computation, and what the conv net
shares with it (per-member batch norm, activations, dropout, masks, shrinking).

Layout: activations are ``[P, batch, units]``; member ``p``'s linear layer is the ``[in, out]``
view of a ``[P, out, in]`` weight (``nn.Linear``'s own layout, so ``torch.baddbmm`` computes
each member's products exactly as ``F.linear`` does). Members narrower than the widest are
padded: their extra rows and columns are zero and stay zero (no gradient reaches them, and every
optimizer leaves a zero parameter with a zero gradient at zero), and the extra units are
multiplied by a 0/1 mask after the activation, because an activation such as sigmoid is not 0 at
0. Batch norm runs torch's own kernel on a ``[batch, P * units]`` view, which is exactly
per-member, per-unit statistics (a padded unit's statistics are its own and touch no real unit).

Each member builds its reference module first (``build_mlp`` under its own seed, exactly as
``fit_mlp`` does), and the pack copies its initial weights, so init stays defined in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tuner.training._packed_params import FlatParams

__all__ = ["Block", "Generators", "PackedMLP", "PackedNet", "describe", "same"]

Generators = Sequence[torch.Generator | None]
"""Per member: its own generator, or None for a member that has stopped (nothing is drawn)."""


def same(values: Sequence[Any], what: str) -> Any:
    """The one value all members share; members that differ cannot be fused."""
    first = values[0]
    for v in values[1:]:
        if v != first:
            raise ValueError(f"pack members differ in {what} ({first!r} vs {v!r}); group trials "
                             "by pack_key() before packing them")
    return first


def describe(module: nn.Module) -> tuple[Any, ...]:
    """What must match between members' stateless modules (activation, pooling)."""
    if isinstance(module, nn.LeakyReLU):
        return ("LeakyReLU", module.negative_slope)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return (type(module).__name__, module.kernel_size, module.stride, module.padding)
    return (type(module).__name__,)


@dataclass
class Block:
    """One hidden block of one member: layer -> [batch norm] -> activation -> [pool] -> [dropout]."""

    layer: nn.Linear | nn.Conv2d
    norm: nn.BatchNorm1d | nn.BatchNorm2d | None = None
    act: nn.Module = field(default_factory=nn.Identity)
    pool: nn.Module | None = None
    dropout: float = 0.0


class PackedNet:
    """State every fused network keeps per member; subclasses define the forward pass."""

    params: FlatParams
    act: nn.Module
    prelu: bool

    def __init__(self, device: torch.device, rates: Sequence[float]) -> None:
        self.device = device
        self.rates = list(rates)
        self.buffers: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.widths: dict[str, list[int]] = {}  # per masked tensor: each member's real units

    @property
    def p(self) -> int:
        return self.params.p

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members ``keep`` indexes, in that order (shrinking the pack)."""
        self.params.select(keep)
        for store in (self.buffers, self.masks):
            for name, tensor in store.items():
                store[name] = tensor.index_select(0, keep)
        rows = keep.tolist()
        self.rates = [self.rates[i] for i in rows]
        self.widths = {name: [w[i] for i in rows] for name, w in self.widths.items()}

    def _batch_norm(self, flat: torch.Tensor, l: int, training: bool) -> torch.Tensor:
        """torch's batch norm on ``[batch, P * units, ...]``: per member and per unit."""
        return F.batch_norm(
            flat, self.buffers[f"mean{l}"].view(-1), self.buffers[f"var{l}"].view(-1),
            self.params[f"g{l}"].reshape(-1), self.params[f"be{l}"].reshape(-1),
            training, self.bn_momentum, self.bn_eps)

    def _prelu(self, h: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        """PReLU with each member's own learnable slope: ``x if x > 0 else slope * x``."""
        return torch.where(h > 0, h, h * slope)

    def _mask(self, h: torch.Tensor, name: str, gens: Generators | None) -> torch.Tensor:
        """Dropout (training, with the members' own generators) and the padding mask.

        Member ``p`` draws its mask exactly as ``F.dropout`` does on CPU (``bernoulli_(1 - r)``
        on its own ``[rows, units]``, then divided by ``1 - r``), so with the generator state
        ``fit_mlp`` would have, it draws the same mask. ``h`` is ``[P, rows, units]``.
        """
        mask = self.masks.get(name)
        if gens is None or not any(r > 0 for r in self.rates):
            return h if mask is None else h * mask
        p, rows, units = h.shape
        noise = (mask if mask is not None else torch.ones(p, 1, units, device=h.device)) \
            .expand(p, rows, units).clone()
        widths = self.widths.get(name, [units] * p)
        for i, (rate, gen) in enumerate(zip(self.rates, gens, strict=True)):
            if rate > 0 and gen is not None:
                w = widths[i]
                if w == units:
                    noise[i].bernoulli_(1 - rate, generator=gen)
                else:
                    noise[i, :, :w] = torch.empty(rows, w, device=h.device).bernoulli_(
                        1 - rate, generator=gen)
        keep = torch.tensor([1 - r if r > 0 else 1.0 for r in self.rates], device=h.device)
        return h * noise.div_(keep.view(p, 1, 1))

    def units_per_sample(self) -> int:
        """Activation values one sample produces per member (for memory estimates)."""
        raise NotImplementedError


def mlp_blocks(model: nn.Module) -> tuple[list[Block], nn.Linear]:
    """A ``build_mlp`` network's hidden blocks and head, in order."""
    modules = list(model.children())
    head = modules[-1]
    if not isinstance(head, nn.Linear):
        raise ValueError("not a build_mlp network: the last module is not nn.Linear")
    blocks: list[Block] = []
    for m in modules[:-1]:
        if isinstance(m, nn.Linear):
            blocks.append(Block(m))
        elif isinstance(m, nn.BatchNorm1d):
            blocks[-1].norm = m
        elif isinstance(m, nn.Dropout):
            blocks[-1].dropout = float(m.p)
        else:
            blocks[-1].act = m
    return blocks, head


class PackedMLP(PackedNet):
    """P ``build_mlp`` networks (same depth, activation and batch norm; any widths)."""

    def __init__(self, refs: Sequence[nn.Module], device: torch.device) -> None:
        parsed = [mlp_blocks(r) for r in refs]
        n_layers = same([len(b) for b, _ in parsed], "number of layers")
        rates = [same([blk.dropout for blk in b], "dropout across layers") if b else 0.0
                 for b, _ in parsed]
        super().__init__(device, rates)
        first, head0 = parsed[0]
        self.batch_norm = same([any(blk.norm is not None for blk in b) for b, _ in parsed],
                               "batch_norm")
        acts = [describe(blk.act) for b, _ in parsed for blk in b]
        if acts:
            same(acts, "activation")
        self.act = first[0].act if first else nn.Identity()
        self.prelu = isinstance(self.act, nn.PReLU)
        if self.batch_norm:
            self.bn_momentum = same([blk.norm.momentum for b, _ in parsed for blk in b], "bn momentum")
            self.bn_eps = same([blk.norm.eps for b, _ in parsed for blk in b], "bn eps")
        self.n_layers = n_layers
        n_in = same([head.in_features if not b else b[0].layer.in_features for b, head in parsed],
                    "input features")
        n_out = same([head.out_features for _, head in parsed], "outputs")
        self.max_widths: list[int] = []
        shapes: dict[str, tuple[int, ...]] = {}
        width_in = n_in
        for l in range(n_layers):
            member_widths = [b[l].layer.out_features for b, _ in parsed]
            width = max(member_widths)
            self.max_widths.append(width)
            shapes[f"w{l}"] = (width, width_in)
            if self.batch_norm:
                shapes[f"g{l}"], shapes[f"be{l}"] = (width,), (width,)
            else:
                shapes[f"b{l}"] = (1, width)
            if self.prelu:
                shapes[f"a{l}"] = (1, 1)
            if min(member_widths) < width:
                self.widths[f"h{l}"] = member_widths
                mask = torch.zeros(len(refs), 1, width, device=device)
                for i, w in enumerate(member_widths):
                    mask[i, :, :w] = 1.0
                self.masks[f"h{l}"] = mask
            width_in = width
        shapes["hw"], shapes["hb"] = (n_out, width_in), (1, n_out)
        self.params = FlatParams(shapes, len(refs), device)
        if self.batch_norm:
            for l, width in enumerate(self.max_widths):
                self.buffers[f"mean{l}"] = torch.zeros(len(refs), width, device=device)
                self.buffers[f"var{l}"] = torch.ones(len(refs), width, device=device)
        for i, (blocks, head) in enumerate(parsed):
            self._load(i, blocks, head)

    @torch.no_grad()
    def _load(self, i: int, blocks: list[Block], head: nn.Linear) -> None:
        put = self.params.member
        for l, blk in enumerate(blocks):
            out, inp = blk.layer.weight.shape
            put(f"w{l}", i)[:out, :inp] = blk.layer.weight
            if blk.norm is not None:
                put(f"g{l}", i)[:out] = blk.norm.weight
                put(f"be{l}", i)[:out] = blk.norm.bias
                self.buffers[f"mean{l}"][i, :out] = blk.norm.running_mean
                self.buffers[f"var{l}"][i, :out] = blk.norm.running_var
            elif blk.layer.bias is not None:
                put(f"b{l}", i)[0, :out] = blk.layer.bias
            if self.prelu:
                put(f"a{l}", i).fill_(float(blk.act.weight.item()))
        put("hw", i)[:, : head.in_features] = head.weight
        put("hb", i)[0] = head.bias

    def units_per_sample(self) -> int:
        return sum(self.max_widths) + self.params.shapes["hb"][1]

    def forward(self, x: torch.Tensor, training: bool, gens: Generators | None = None
                ) -> torch.Tensor:
        """``x`` is ``[P, rows, features]`` (each member's own rows, or one shared set expanded);
        returns ``[P, rows, outputs]``. ``gens`` draws dropout in training."""
        h = x
        for l in range(self.n_layers):
            weight = self.params[f"w{l}"].transpose(1, 2)
            h = torch.bmm(h, weight) if self.batch_norm else \
                torch.baddbmm(self.params[f"b{l}"], h, weight)
            if self.batch_norm:
                p, rows, units = h.shape
                flat = h.transpose(0, 1).reshape(rows, p * units)
                h = self._batch_norm(flat, l, training).view(rows, p, units).transpose(0, 1)
            h = self._prelu(h, self.params[f"a{l}"]) if self.prelu else self.act(h)
            h = self._mask(h, f"h{l}", gens if training else None)
        return torch.baddbmm(self.params["hb"], h, self.params["hw"].transpose(1, 2))
