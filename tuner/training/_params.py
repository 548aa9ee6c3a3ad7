"""Typed readers for the plain ``config`` dict a trial hands to the built-in trainable.

The spec layer validates search spaces, but a config can also come from a user calling
``fit_mlp`` directly or from an override on the command line, so every value is checked where it
is used, and a bad one names its field (``params.<key>``, or ``dataset.<key>`` for the data spec)
and the values that would work.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from tuner._errors import SpecError
from tuner._text import excerpt

__all__ = ["choice", "real", "integer", "flag"]


def _field(section: str, key: str) -> str:
    return f"{section}.{key if key.isidentifier() else excerpt(key)}"


def choice(
    config: Mapping[str, Any],
    key: str,
    options: Collection[str],
    default: str,
    *,
    section: str = "params",
) -> str:
    """A string from a fixed set; case-insensitive so YAML like ``Adam`` is not a surprise."""
    value = config.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or value.lower() not in options:
        valid = ", ".join(sorted(options))
        raise SpecError(_field(section, key), f"got {excerpt(value)}; choose one of: {valid}")
    return value.lower()


def real(
    config: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    section: str = "params",
) -> float:
    """A finite number within ``[low, high]`` (ends excluded where ``*_open``)."""
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(_field(section, key), f"must be a finite number, got {excerpt(value)}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        raise SpecError(_field(section, key), f"must be in {left}{lo}, {hi}{right}, got {value!r}")
    return value


def integer(
    config: Mapping[str, Any], key: str, default: int, *, low: int = 0, high: int | None = None,
    section: str = "params",
) -> int:
    """A whole number in ``[low, high]``; floats such as ``64.0`` from a sampler are accepted."""
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(_field(section, key), f"must be a whole number, got {excerpt(value)}")
    if value < low:
        raise SpecError(_field(section, key), f"must be >= {low}, got {excerpt(value)}")
    if high is not None and value > high:
        raise SpecError(_field(section, key), f"must be <= {high:,}, got {excerpt(value)}")
    return value


def flag(config: Mapping[str, Any], key: str, default: bool, *, section: str = "params") -> bool:
    """A boolean; the strings true/false are accepted because CLI overrides arrive as text."""
    value = config.get(key, default)
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise SpecError(_field(section, key), f"must be true or false, got {excerpt(value)}")
    return value
