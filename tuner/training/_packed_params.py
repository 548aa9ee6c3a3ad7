"""All trainable numbers of a pack in one ``[P, N]`` buffer, and its gradient in another.

Why one buffer: a pack's optimizer step is then a handful of elementwise ops over one tensor
with per-member hyperparameters broadcast as ``[P, 1]`` columns, instead of a handful per layer
(on CUDA each op is a kernel launch, on CPU a Python round trip; a small network spends as much
time there as in its matmuls). Each layer's weight is a leaf *view* into row ``p`` = member
``p`` of the buffer, and its ``.grad`` is preassigned as the same view into the gradient buffer:
autograd accumulates into an existing ``.grad`` in place, so backward fills the flat gradient
directly. Zeroing is one ``zero_()``, and shrinking the pack is one row selection.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch

__all__ = ["FlatParams", "backward"]

_LAYOUT_HINT = "grad and param do not obey the gradient layout contract"
_hinted = False


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()``, without autograd's hint about the gradient layout contract.

    The parameter views are strided across members (row stride N), so autograd warns once per
    process that their gradients "may impair performance" (it matters to DDP's buckets, not
    here). A pack of one member has dense views and no hint, so calls are watched until the
    hint has come once (the probe trains a pack of one first): any other warning raised
    meanwhile is passed on as it was. A process-wide filter would also hide the hint from the
    user's own code, and watching every step would cost a ``catch_warnings`` per step.
    """
    global _hinted
    if _hinted:
        loss.backward()
        return
    with warnings.catch_warnings(record=True) as caught:
        loss.backward()
    for w in caught:
        if issubclass(w.category, UserWarning) and _LAYOUT_HINT in str(w.message):
            _hinted = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


class FlatParams:
    """Named per-member parameter blocks, ``shapes[name]`` each, stacked over ``p`` members."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], p: int, device: torch.device) -> None:
        self.shapes = dict(shapes)
        self.offsets: dict[str, tuple[int, int]] = {}
        n = 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            self.offsets[name] = (n, n + size)
            n += size
        self.data = torch.zeros(p, n, device=device)
        self.grad = torch.zeros_like(self.data)
        self.views: dict[str, torch.Tensor] = {}
        self._bind()

    @property
    def p(self) -> int:
        return self.data.shape[0]

    def _bind(self) -> None:
        for name, (a, b) in self.offsets.items():
            view = self.data[:, a:b].view(self.p, *self.shapes[name])
            view.requires_grad_(True)
            view.grad = self.grad[:, a:b].view(self.p, *self.shapes[name])
            self.views[name] = view

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.views[name]

    def member(self, name: str, index: int) -> torch.Tensor:
        """Member ``index``'s block ``name`` as a plain (no-grad) view, for loading weights."""
        a, b = self.offsets[name]
        return self.data[index, a:b].view(self.shapes[name])

    def zero_grad(self) -> None:
        self.grad.zero_()

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members ``keep`` indexes (in that order)."""
        self.data = self.data.index_select(0, keep)
        self.grad = torch.zeros_like(self.data)
        self._bind()
