"""Which trials can share one fused model: the pack key, without torch.

The coordinator groups trials by this key before it sends a pack to a worker, and it runs in the
driver process, which validates and schedules without importing torch (seconds of start-up); so
this module reads the config with the plain ``_params`` readers only.

What is *in* the key is what shapes the fused computation itself: the number of layers (the
graph), activation and batch norm (the ops), the batch size (every member steps through the same
number of equally sized batches), the optimizer kind (its state and update rule), kernel size and
pooling (conv nets), and the CUDA switches. What is deliberately *not* in the key is everything the
fused trainer holds per member: widths (padded to the widest and masked), learning rate and the
optimizer's other numbers, the schedule (``lr_decay`` and its knobs), nesterov, weight decay,
dropout, init, early stopping, and the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner._errors import SpecError
from tuner.training import _params

__all__ = ["PACKABLE_KINDS", "pack_key", "pack_widths"]

PACKABLE_KINDS = ("mlp", "cnn")
"""Built-in trainables that train as packs; user trainables never do."""

_DEFAULT_BATCH_NORM = {"mlp": False, "cnn": True}
_WIDTH_KEY = {"mlp": ("hidden_units", 64), "cnn": ("channels", 32)}


def _name(config: Mapping[str, Any], key: str, default: str) -> str:
    """A choice as the trainer will read it (case-insensitive); an invalid value still gets a
    key, and the member then fails on its own with the trainer's ``SpecError``."""
    value = config.get(key)
    return default if value is None else str(value).lower()


def _layers(config: Mapping[str, Any], kind: str) -> int:
    widths = config.get(_WIDTH_KEY[kind][0])
    default = len(widths) if isinstance(widths, (list, tuple)) else 2
    return _params.integer(config, "layers", default, low=0 if kind == "mlp" else 1)


def pack_key(config: Mapping[str, Any], kind: str = "mlp") -> tuple[Any, ...] | None:
    """What cannot differ inside a pack, as a hashable tuple; ``None`` if ``config`` cannot be
    packed at all (an unknown ``kind``, ``compile: true``, or a structural value that does not
    parse; such a trial runs alone, where the trainer reports its error).

    Epochs, dataset and objective are study-wide and so not part of the key; ``fit_pack`` still
    accepts members whose epochs or objective differ.
    """
    if kind not in PACKABLE_KINDS or not isinstance(config, Mapping):
        return None
    try:
        if _params.flag(config, "compile", False):
            # A compiled graph per pack shape would recompile every time the pack shrinks.
            return None
        activation = _name(config, "activation", "relu")
        key: tuple[Any, ...] = (
            kind,
            _layers(config, kind),
            activation,
            _params.flag(config, "batch_norm", _DEFAULT_BATCH_NORM[kind]),
            _params.integer(config, "batch_size", 64, low=1),
            _name(config, "optimizer", "adam"),
            _name(config, "amp", "none"),
        )
        if kind == "cnn":
            key += (_params.integer(config, "kernel_size", 3, low=1), _name(config, "pool", "max"))
    except SpecError:
        return None
    return key


def pack_widths(config: Mapping[str, Any], kind: str = "mlp") -> tuple[int, ...] | None:
    """The hidden widths (MLP units or conv channels) per layer, or ``None`` if unreadable.

    A pack computes every member at the widest member's width, so a scheduler that packs a
    search over widths should put similar widths together (e.g. by the largest width's power of
    two): a 16-unit member in a pack of 1024-unit ones costs as much as a 1024-unit one.
    """
    if kind not in PACKABLE_KINDS:
        return None
    name, default = _WIDTH_KEY[kind]
    try:
        layers = _layers(config, kind)
        value = config.get(name, default)
        if isinstance(value, (list, tuple)):
            if len(value) != layers:
                return None
            return tuple(_params.integer({name: v}, name, default, low=1) for v in value)
        return (_params.integer(config, name, default, low=1),) * layers
    except SpecError:
        return None
