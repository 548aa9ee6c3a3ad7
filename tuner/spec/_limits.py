"""Limits on what a spec may hold, checked on the plain data before pydantic sees it.

A spec is a few dozen keys; anything far outside that shape is a mistake or an attack, and is
cheaper to refuse up front than to survive downstream: a 10,000-level nesting overflows Python's
stack in the validator and in ``json.dumps``, an integer beyond int64 overflows NumPy and SQL
columns, an infinite bound breaks every sampler's arithmetic. Each refusal is one ``SpecError``
naming the dotted path.
"""

from __future__ import annotations

import math
from typing import Any

from tuner._errors import SpecError
from tuner._text import excerpt

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "INT64_MIN", "INT64_MAX", "SEED_MAX",
           "check_plain", "field_path"]

MAX_BYTES = 1 << 20
"""Largest spec file read (1 MiB); the shipped specs are under 2 KiB."""

MAX_DEPTH = 32
"""Deepest nesting of mappings and lists (the spec's own structure needs 4)."""

MAX_NODES = 200_000
"""Most values (scalars, mappings, lists) in one spec."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SEED_MAX = 2**32 - 1
"""Seeds go to NumPy's and Optuna's generators, which take 0 .. 2**32 - 1."""

_SCALARS = (str, bool, type(None))


def field_path(parts: list[Any]) -> str:
    """Dotted path of keys for an error's field; odd keys are quoted short, never echoed whole."""
    out = []
    for part in parts:
        text = str(part) if isinstance(part, (str, int)) else excerpt(part)
        if not text or len(text) > 40 or not text.isprintable() or any(c in text for c in " .'\""):
            text = excerpt(part)
        out.append(text)
    return ".".join(out) or "spec"


def check_plain(data: Any, *, strict_types: bool = True) -> None:
    """Refuse what no spec needs: depth past ``MAX_DEPTH``, more than ``MAX_NODES`` values,
    non-text keys, integers outside int64 and NaN/infinite floats.

    ``strict_types`` also refuses values YAML can build but JSON cannot hold (dates, bytes,
    sets): a spec is stored and shipped as JSON, so it must be JSON. Mappings given from Python
    (``strict_types=False``) may hold other objects; they are turned into text later.

    Iterative, so no input can exhaust the stack here.
    """
    stack: list[tuple[list[Any], Any]] = [([], data)]
    nodes = 0
    while stack:
        path, value = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise SpecError("spec", f"holds more than {MAX_NODES:,} values; a spec needs a few "
                            "dozen, so this is not a study spec")
        if len(path) > MAX_DEPTH:
            raise SpecError(field_path(path[:3]) + "...", f"nests deeper than {MAX_DEPTH} levels; "
                            "a spec needs 4, so flatten it")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SpecError(field_path(path), f"key {excerpt(key)} is not text; quote "
                                    "it or write it as a name")
                stack.append((path + [key], item))
        elif isinstance(value, (list, tuple)):
            stack.extend((path + [i], item) for i, item in enumerate(value))
        elif isinstance(value, bool) or isinstance(value, _SCALARS):
            continue
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise SpecError(field_path(path), f"{excerpt(value)} is outside the 64-bit "
                                "integer range (about +-9.2e18); use a smaller number")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise SpecError(field_path(path), f"{value} is not a finite number; use a "
                                "finite one")
        elif strict_types:
            raise SpecError(field_path(path), f"is a {type(value).__name__}, which a spec cannot "
                            "hold; quote it to make it text")
