"""The small convolutional network behind ``builtin:cnn``: conv nets tuned with the MLP's knobs.

Rows arrive flattened (the trainer slices batches out of one ``[n, features]`` tensor on the
device, whatever the model), so the network starts with ``Unflatten`` to ``(c, h, w)``: a view,
no copy. Each block is ``Conv2d(same-size padding) -> [BatchNorm2d] -> activation -> [pool 2x2]``;
pooling stops once the image is 1 pixel on a side. The head is ``Flatten -> [Dropout] -> Linear``
(dropout where the MLP puts it: on the features the last layer sees). Batch norm is on by default
here: conv nets train much better with it, and its beta makes the conv bias redundant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from tuner._errors import SpecError
from tuner.training import _params
from tuner.training._mlp import init_weights, make_activation
from tuner.training._names import ACTIVATIONS, INITS, MAX_KERNEL, MAX_LAYERS, MAX_WIDTH, POOLS

__all__ = ["POOLS", "build_cnn"]



def _channels(config: Mapping[str, Any], layers: int) -> list[int]:
    channels = config.get("channels", 32)
    if isinstance(channels, (list, tuple)):
        if len(channels) != layers:
            raise SpecError("params.channels", f"has {len(channels)} entries but layers is {layers}; "
                            "give one per conv layer or a single number shared by all")
        return [_params.integer({"channels": c}, "channels", 32, low=1, high=MAX_WIDTH)
                for c in channels]
    return [_params.integer(config, "channels", 32, low=1, high=MAX_WIDTH)] * layers


def build_cnn(config: Mapping[str, Any], image_shape: tuple[int, int, int], n_outputs: int
              ) -> nn.Module:
    """Build the conv net ``config`` describes for images of ``image_shape`` (c, h, w).

    Keys: ``layers`` (conv blocks, 2), ``channels`` (32, or a list per layer), ``kernel_size``
    (3), ``pool`` (max, avg, none), ``batch_norm`` (true), ``dropout`` (0), ``activation`` and
    ``init`` as in ``builtin:mlp``. Bad values raise ``SpecError`` naming ``params.<key>``.
    """
    given = config.get("channels")
    layers = _params.integer(config, "layers", len(given) if isinstance(given, (list, tuple)) else 2,
                             low=1, high=MAX_LAYERS)
    widths = _channels(config, layers)
    kernel = _params.integer(config, "kernel_size", 3, low=1, high=MAX_KERNEL)
    pool = _params.choice(config, "pool", POOLS, "max")
    activation = _params.choice(config, "activation", ACTIVATIONS, "relu")
    init = _params.choice(config, "init", INITS, "xavier" if activation in ("tanh", "sigmoid") else "he")
    batch_norm = _params.flag(config, "batch_norm", True)
    dropout = _params.real(config, "dropout", 0.0, low=0.0, high=1.0, high_open=True)

    c_in, h, w = image_shape
    blocks: list[nn.Module] = [nn.Unflatten(1, image_shape)]
    for width in widths:
        padding: int | str = kernel // 2 if kernel % 2 else "same"  # an int pads faster on CPU
        conv = nn.Conv2d(c_in, width, kernel, padding=padding, bias=not batch_norm)
        init_weights(conv, init, activation)
        blocks.append(conv)
        if batch_norm:
            blocks.append(nn.BatchNorm2d(width))
        blocks.append(make_activation(activation))
        if pool != "none" and min(h, w) >= 2:
            blocks.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            h, w = h // 2, w // 2
        c_in = width
    blocks.append(nn.Flatten())
    if dropout > 0:
        blocks.append(nn.Dropout(dropout))
    head = nn.Linear(c_in * h * w, n_outputs)
    nn.init.xavier_normal_(head.weight)  # as in the MLP: moderate initial logits
    nn.init.zeros_(head.bias)
    blocks.append(head)
    return nn.Sequential(*blocks)
