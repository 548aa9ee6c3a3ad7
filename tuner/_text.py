"""Quoting user input inside one-line error messages.

An error line is read at a terminal, in CI logs and in service responses: it must stay one short
line whatever the input held (a 1 MB string, a key with a newline, an ANSI escape), so every
piece of user input it quotes goes through :func:`excerpt`, and the CLI passes the finished line
through :func:`one_line` as a last guard.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["excerpt", "one_line", "MAX_LINE", "MAX_EXCERPT"]

MAX_LINE = 200
"""Most characters of one error line, ``error: `` included."""

MAX_EXCERPT = 40
"""Most characters of one quoted piece of user input."""

_ELLIPSIS = "..."
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring = 2, 3, 4, 20


def excerpt(value: Any, limit: int = MAX_EXCERPT) -> str:
    """``repr``-quoted ``value``, cut to ``limit`` characters: newlines and control characters
    are escaped (``repr`` does that), so the quote can never break or recolour the line."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])
    elif isinstance(value, (dict, list, tuple, set)):
        try:
            text = _SHORT.repr(value)
        except (ValueError, RecursionError):  # an int too long to print, a cycle
            return f"a {type(value).__name__} of {len(value)} item(s)"
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    else:
        text = repr(value)
    text = _printable(text)
    if len(text) > limit:
        text = text[: max(limit - len(_ELLIPSIS), 1)] + _ELLIPSIS
    return text


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one line of at most ``limit`` characters: line breaks become spaces, other
    control characters are escaped, and an over-long line is cut with ``...``."""
    flat = " ".join(_printable(text).split())
    if len(flat) > limit:
        flat = flat[: limit - len(_ELLIPSIS)] + _ELLIPSIS
    return flat


def _printable(text: str) -> str:
    """Escape what a terminal would act on; ordinary spaces stay (``one_line`` folds the rest)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in "\n\r\t":
            out.append(" ")
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)
