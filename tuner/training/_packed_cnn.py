"""The fused conv net: P ``build_cnn`` networks as one grouped convolution per layer.

Layout: activations are ``[batch, P * channels, h, w]`` (member ``p`` owns channels
``p*C .. p*C + C - 1``), so each layer is one ``F.conv2d(..., groups=P)``: group ``p`` convolves
only member ``p``'s channels with member ``p``'s kernels. Batch norm, activation and pooling act
per channel and so per member with torch's own kernels. The head takes each member's flattened
features as ``[P, batch, features]`` through ``torch.baddbmm``, as the MLP does.

Members with fewer channels are padded to the widest member per layer: the extra kernels are zero,
the extra channels are masked to 0 after the activation, and the head's extra input columns are
zero, so the result is each member's own network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from tuner.training._packed_net import Block, Generators, PackedNet, describe, same
from tuner.training._packed_params import FlatParams

__all__ = ["PackedCNN"]


def cnn_blocks(model: nn.Module) -> tuple[tuple[int, int, int], list[Block], float, nn.Linear]:
    """A ``build_cnn`` network's image shape, conv blocks, head dropout and head."""
    modules = list(model.children())
    unflatten, head = modules[0], modules[-1]
    if not isinstance(unflatten, nn.Unflatten) or not isinstance(head, nn.Linear):
        raise ValueError("not a build_cnn network: expected Unflatten first and Linear last")
    blocks: list[Block] = []
    dropout = 0.0
    for m in modules[1:-1]:
        if isinstance(m, nn.Conv2d):
            blocks.append(Block(m))
        elif isinstance(m, nn.BatchNorm2d):
            blocks[-1].norm = m
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            blocks[-1].pool = m
        elif isinstance(m, nn.Dropout):
            dropout = float(m.p)
        elif not isinstance(m, nn.Flatten):
            blocks[-1].act = m
    shape = tuple(int(v) for v in unflatten.unflattened_size)
    return (shape[0], shape[1], shape[2]), blocks, dropout, head


class PackedCNN(PackedNet):
    """P ``build_cnn`` networks (same depth, kernel, pooling, activation, batch norm; any
    channel counts)."""

    def __init__(self, refs: Sequence[nn.Module], device: torch.device) -> None:
        parsed = [cnn_blocks(r) for r in refs]
        super().__init__(device, [d for _, _, d, _ in parsed])
        self.image_shape = same([s for s, _, _, _ in parsed], "image shape")
        n_layers = same([len(b) for _, b, _, _ in parsed], "number of layers")
        first = parsed[0][1]
        same([tuple((describe(k.act), None if k.pool is None else describe(k.pool),
                     k.norm is not None, k.layer.kernel_size, k.layer.padding, k.layer.stride,
                     k.layer.dilation) for k in b) for _, b, _, _ in parsed],
             "conv blocks (activation, pooling, batch norm, kernel)")
        self.blocks = first  # stateless parts (activation, pooling) and conv geometry
        self.act = first[0].act
        self.prelu = isinstance(self.act, nn.PReLU)
        self.batch_norm = first[0].norm is not None
        if self.batch_norm:
            self.bn_momentum = same([k.norm.momentum for _, b, _, _ in parsed for k in b], "bn momentum")
            self.bn_eps = same([k.norm.eps for _, b, _, _ in parsed for k in b], "bn eps")
        n_out = same([head.out_features for _, _, _, head in parsed], "outputs")
        shapes: dict[str, tuple[int, ...]] = {}
        c_in, h, w = self.image_shape
        self.channels: list[int] = []
        self._units = 0
        p = len(refs)
        for l in range(n_layers):
            member = [b[l].layer.out_channels for _, b, _, _ in parsed]
            width = max(member)
            self.channels.append(width)
            kh, kw = first[l].layer.kernel_size
            shapes[f"w{l}"] = (width, c_in, kh, kw)
            if self.batch_norm:
                shapes[f"g{l}"], shapes[f"be{l}"] = (width,), (width,)
            else:
                shapes[f"b{l}"] = (width,)
            if self.prelu:
                shapes[f"a{l}"] = (1,)
            if min(member) < width:
                mask = torch.zeros(p, width, device=device)
                for i, c in enumerate(member):
                    mask[i, :c] = 1.0
                self.masks[f"c{l}"] = mask
            self._units += 3 * width * h * w
            if first[l].pool is not None:
                h, w = h // 2, w // 2
            c_in = width
        features = c_in * h * w
        member_features = [head.in_features for _, _, _, head in parsed]
        if min(member_features) < features:
            self.widths["f"] = member_features  # padded channels are already 0 in the features
        shapes["hw"], shapes["hb"] = (n_out, features), (1, n_out)
        self._units += features + n_out
        self.params = FlatParams(shapes, p, device)
        if self.batch_norm:
            for l, width in enumerate(self.channels):
                self.buffers[f"mean{l}"] = torch.zeros(p, width, device=device)
                self.buffers[f"var{l}"] = torch.ones(p, width, device=device)
        for i, (_, blocks, _, head) in enumerate(parsed):
            self._load(i, blocks, head)

    @torch.no_grad()
    def _load(self, i: int, blocks: list[Block], head: nn.Linear) -> None:
        put = self.params.member
        for l, blk in enumerate(blocks):
            out, inp = blk.layer.weight.shape[:2]
            put(f"w{l}", i)[:out, :inp] = blk.layer.weight
            if blk.norm is not None:
                put(f"g{l}", i)[:out] = blk.norm.weight
                put(f"be{l}", i)[:out] = blk.norm.bias
                self.buffers[f"mean{l}"][i, :out] = blk.norm.running_mean
                self.buffers[f"var{l}"][i, :out] = blk.norm.running_var
            elif blk.layer.bias is not None:
                put(f"b{l}", i)[:out] = blk.layer.bias
            if self.prelu:
                put(f"a{l}", i).fill_(float(blk.act.weight.item()))
        put("hw", i)[:, : head.in_features] = head.weight
        put("hb", i)[0] = head.bias

    def units_per_sample(self) -> int:
        return self._units

    def forward(self, x: torch.Tensor, training: bool, gens: Generators | None = None
                ) -> torch.Tensor:
        """``x`` is ``[rows, P, features]`` (each member's own rows, or one shared set
        expanded); returns ``[P, rows, outputs]``."""
        rows, p = x.shape[0], self.p
        c, height, width = self.image_shape
        h = x.reshape(rows, p * c, height, width)
        for l, blk in enumerate(self.blocks):
            conv = blk.layer
            weight = self.params[f"w{l}"]
            weight = weight.reshape(p * weight.shape[1], *weight.shape[2:])
            bias = None if self.batch_norm else self.params[f"b{l}"].reshape(-1)
            h = F.conv2d(h, weight, bias, conv.stride, conv.padding, conv.dilation, groups=p)
            if self.batch_norm:
                h = self._batch_norm(h, l, training)
            if self.prelu:
                slope = self.params[f"a{l}"].expand(p, self.channels[l]).reshape(1, -1, 1, 1)
                h = self._prelu(h, slope)
            else:
                h = self.act(h)
            mask = self.masks.get(f"c{l}")
            if mask is not None:
                h = h * mask.view(1, -1, 1, 1)
            if blk.pool is not None:
                h = blk.pool(h)
        h = self._mask(h.reshape(rows, p, -1).transpose(0, 1), "f", gens if training else None)
        return torch.baddbmm(self.params["hb"], h, self.params["hw"].transpose(1, 2))
