"""The built-in trainables' values, checked before any trial runs.

``fit_mlp``/``fit_cnn`` check each config value where they use it, so a bad one (``fixed:
{optimizer: sgdd}``) used to fail *every trial* while ``tuner validate`` said ok. Here each key's
rule is the very reader the trainer calls (``tuner.training._params``), applied to every value the
spec can produce: each fixed value, each categorical choice, both ends of a numeric range (every
rule is an interval, so the ends decide). No torch is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tuner._errors import SpecError
from tuner.training import _params
from tuner.training._names import (
    ACTIVATIONS,
    AMP_MODES,
    INITS,
    LR_DECAYS,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_WIDTH,
    OPTIMIZERS,
    POOLS,
)

__all__ = ["check_builtin_values"]

Rule = Callable[[Mapping[str, Any], str], Any]


def _choice(key: str, options: tuple[str, ...], default: str) -> Rule:
    return lambda c, s: _params.choice(c, key, options, default, section=s)


def _real(key: str, **bounds: Any) -> Rule:
    return lambda c, s: _params.real(c, key, 0.5, section=s, **bounds)


def _integer(key: str, low: int, high: int | None = None) -> Rule:
    return lambda c, s: _params.integer(c, key, low, low=low, high=high, section=s)


def _flag(key: str) -> Rule:
    return lambda c, s: _params.flag(c, key, False, section=s)


def _units(key: str) -> Rule:
    """``hidden_units``/``channels``: a whole number >= 1, or (fixed only) a list of them."""
    def rule(c: Mapping[str, Any], s: str) -> None:
        value = c.get(key)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            _params.integer({key: item}, key, 1, low=1, high=MAX_WIDTH, section=s)
    return rule


_BETA = {"low": 0.0, "high": 1.0, "high_open": True}
_RULES: dict[str, Rule] = {
    # the same calls, bounds and defaults as _mlp, _cnn, _optim and _trainer
    "hidden_units": _units("hidden_units"), "channels": _units("channels"),
    "kernel_size": _integer("kernel_size", 1, MAX_KERNEL),
    "pool": _choice("pool", POOLS, "max"),
    "activation": _choice("activation", ACTIVATIONS, "relu"),
    "init": _choice("init", INITS, "he"),
    "batch_norm": _flag("batch_norm"), "nesterov": _flag("nesterov"), "compile": _flag("compile"),
    "dropout": _real("dropout", **_BETA),
    "optimizer": _choice("optimizer", OPTIMIZERS, "adam"),
    "lr": _real("lr", low=0.0, low_open=True),
    "weight_decay": _real("weight_decay", low=0.0),
    "momentum": _real("momentum", **_BETA),
    "rho": _real("rho", low=0.0, high=1.0),
    "beta1": _real("beta1", **_BETA), "beta2": _real("beta2", **_BETA),
    "eps": _real("eps", low=0.0, low_open=True),
    "lr_decay": _choice("lr_decay", LR_DECAYS, "none"),
    "step_size": _integer("step_size", 1),
    "warmup_epochs": _integer("warmup_epochs", 0),
    "batch_size": _integer("batch_size", 1),
    "early_stopping_patience": _integer("early_stopping_patience", 1),
    "amp": _choice("amp", AMP_MODES, "none"),
}
_INTEGER_KEYS = {"layers", "hidden_units", "channels", "kernel_size", "step_size",
                 "warmup_epochs", "batch_size", "early_stopping_patience"}
_DECAY_RATE: dict[str, dict[str, Any]] = {
    "inverse": {"low": 0.0}, "exponential": {"low": 0.0, "high": 1.0, "low_open": True},
    "step": {"low": 0.0, "high": 1.0, "low_open": True},
}
"""Bounds of ``decay_rate`` by ``lr_decay`` (``_optim._decay_factor``); other schedules ignore it."""


def _values(param: Any) -> list[Any]:
    """The values a searched parameter can take that decide an interval rule: every choice, or
    the two ends of a range (pow2: its powers of two)."""
    choices = getattr(param, "choices", None)
    if choices is not None:
        return list(choices)
    return [param.low, param.high]


def _possible(key: str, params: Mapping[str, Any], fixed: Mapping[str, Any], default: Any) -> list[Any]:
    if key in fixed:
        return [fixed[key]]
    if key in params:
        return _values(params[key])
    return [default]


def check_builtin_values(name: str, params: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Raise ``SpecError`` naming ``params.<key>`` or ``fixed.<key>`` for a value some trial of
    ``builtin:<name>`` would refuse; the message lists what is allowed."""
    rules = {**_RULES, "layers": _integer("layers", 1 if name == "cnn" else 0, MAX_LAYERS)}
    for section, source in (("fixed", fixed), ("params", params)):
        for key, spec_value in source.items():
            rule = rules.get(key)
            if rule is None:
                continue  # unknown keys are reported by check_builtin_spec
            if section == "params":
                _check_param_kind(key, spec_value)
                values = _values(spec_value)
            else:
                values = [spec_value]
            for value in values:
                rule({key: value}, section)
    decays = {str(d).lower() for d in _possible("lr_decay", params, fixed, "none")}
    if "decay_rate" in fixed or "decay_rate" in params:
        section = "fixed" if "decay_rate" in fixed else "params"
        for decay in sorted(decays & set(_DECAY_RATE)):
            for value in _possible("decay_rate", params, fixed, None):
                _params.real({"decay_rate": value}, "decay_rate", 0.5, section=section,
                             **_DECAY_RATE[decay])
    _check_together(name, params, fixed)


def _check_param_kind(key: str, param: Any) -> None:
    """A whole-number key searched as ``type: float`` draws fractions every trial would refuse."""
    if key in _INTEGER_KEYS and getattr(param, "type", None) == "float":
        step, low = param.step, param.low
        if step is None or not float(step).is_integer() or not float(low).is_integer():
            raise SpecError(f"params.{key}", "takes whole numbers, but type: float draws "
                            "fractions; use type: int")


def _check_together(name: str, params: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Rules between keys, where the spec fixes both."""
    units_key = "channels" if name == "cnn" else "hidden_units"
    units = fixed.get(units_key)
    if isinstance(units, (list, tuple)):
        if len(units) > MAX_LAYERS:
            raise SpecError(f"fixed.{units_key}", f"lists {len(units):,} layers, more than "
                            f"{MAX_LAYERS:,}; use fewer")
        if "layers" in params:
            raise SpecError("params.layers", f"fixed.{units_key} is a list of {len(units)}, so "
                            f"layers can only be {len(units)}; drop layers from params or give "
                            f"one {units_key} number for all layers")
        if "layers" in fixed and fixed["layers"] != len(units):
            raise SpecError(f"fixed.{units_key}", f"has {len(units)} entries but layers is "
                            f"{fixed['layers']}; give one per layer or a single number")
    optimizers = {str(o).lower() for o in _possible("optimizer", params, fixed, "adam")}
    if ("sgd" in optimizers and fixed.get("nesterov") is True and "momentum" in fixed
            and fixed["momentum"] == 0):
        raise SpecError("fixed.nesterov", "needs momentum > 0 with sgd; set momentum or "
                        "nesterov: false")
