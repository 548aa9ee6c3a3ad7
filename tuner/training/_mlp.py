"""The fully connected network behind ``builtin:mlp``: the architecture knobs a study tunes.

Each hidden block is ``Linear -> [BatchNorm1d] -> activation -> [Dropout]``. The head is a plain
``Linear``: the trainer pairs it with cross-entropy (softmax) for classes and MSE for regression,
so no activation is applied here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from torch import nn

from tuner._errors import SpecError
from tuner.training import _params
from tuner.training._names import ACTIVATIONS, INITS, MAX_LAYERS, MAX_WIDTH

__all__ = ["ACTIVATIONS", "INITS", "build_mlp", "init_weights", "make_activation"]

_LEAKY_SLOPE = 0.01
_PRELU_START = 0.25  # nn.PReLU's initial slope
_GAIN_NAME: dict[str, Literal["relu", "leaky_relu", "tanh", "sigmoid"]] = {
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "prelu": "leaky_relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
}


def make_activation(name: str) -> nn.Module:
    """The activation module ``name`` names (shared with ``builtin:cnn``)."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(_LEAKY_SLOPE)
    if name == "prelu":
        return nn.PReLU(init=_PRELU_START)
    return nn.Tanh() if name == "tanh" else nn.Sigmoid()


def init_weights(layer: nn.Linear | nn.Conv2d, init: str, activation: str) -> None:
    """He (variance 2/n_in) suits the ReLU family, Xavier suits tanh/sigmoid; never zero weights.

    The negative slope of leaky ReLU / PReLU enters both formulas through the gain.
    """
    slope = {"leaky_relu": _LEAKY_SLOPE, "prelu": _PRELU_START}.get(activation, 0.0)
    if init == "he":
        nn.init.kaiming_normal_(layer.weight, a=slope, nonlinearity="leaky_relu")  # a=0: ReLU
    else:
        gain = nn.init.calculate_gain(_GAIN_NAME[activation], slope)
        nn.init.xavier_normal_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _hidden_units(config: Mapping[str, Any], layers: int) -> list[int]:
    units = config.get("hidden_units", 64)
    if isinstance(units, (list, tuple)):
        if len(units) != layers:
            raise SpecError(
                "params.hidden_units",
                f"has {len(units)} entries but layers is {layers}; give one per hidden layer "
                "or a single number shared by all",
            )
        return [_params.integer({"hidden_units": u}, "hidden_units", 64, low=1, high=MAX_WIDTH)
                for u in units]
    return [_params.integer(config, "hidden_units", 64, low=1, high=MAX_WIDTH)] * layers


def build_mlp(config: Mapping[str, Any], n_features: int, n_outputs: int) -> nn.Module:
    """Build the network ``config`` describes (keys: layers, hidden_units, activation, init,
    batch_norm, dropout); unknown values raise ``SpecError`` naming ``params.<key>``.

    ``hidden_units`` may be a list; when ``layers`` is then left out it is the list's length.
    """
    units_given = config.get("hidden_units")
    default_layers = len(units_given) if isinstance(units_given, (list, tuple)) else 2
    layers = _params.integer(config, "layers", default_layers, low=0, high=MAX_LAYERS)
    widths = _hidden_units(config, layers)
    activation = _params.choice(config, "activation", ACTIVATIONS, "relu")
    default_init = "xavier" if activation in ("tanh", "sigmoid") else "he"
    init = _params.choice(config, "init", INITS, default_init)
    batch_norm = _params.flag(config, "batch_norm", False)
    dropout = _params.real(config, "dropout", 0.0, low=0.0, high=1.0, high_open=True)

    blocks: list[nn.Module] = []
    width_in = n_features
    for width in widths:
        linear = nn.Linear(width_in, width, bias=not batch_norm)  # BN's beta replaces the bias
        init_weights(linear, init, activation)
        blocks.append(linear)
        if batch_norm:
            blocks.append(nn.BatchNorm1d(width))
        blocks.append(make_activation(activation))
        if dropout > 0:
            blocks.append(nn.Dropout(dropout))  # inverted dropout: scaled by 1/keep_prob in train
        width_in = width
    head = nn.Linear(width_in, n_outputs)
    # The head feeds a loss, not a nonlinearity: unit-gain Xavier keeps initial logits moderate.
    nn.init.xavier_normal_(head.weight)
    nn.init.zeros_(head.bias)
    blocks.append(head)
    return nn.Sequential(*blocks)
