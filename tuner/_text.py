"""Quoting user input inside one-line error messages, and picking the line an error is about.

An error line is read at a terminal, in CI logs and in service responses: it must stay one short
line whatever the input held (a 1 MB string, a key with a newline, an ANSI escape), so every
piece of user input it quotes goes through :func:`excerpt`, and the CLI passes the finished line
through :func:`one_line` as a last guard. An error that tuner reports from another layer (a
database driver, Ray, a Ray job) is quoted by the one line of it that says what went wrong:
:func:`error_line`.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

__all__ = ["excerpt", "one_line", "error_line", "MAX_LINE", "MAX_EXCERPT"]

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


_TRACEBACK = re.compile(r'^(Traceback \(most recent call last\)|\s*File ".*", line \d+)', re.M)


def error_line(error: BaseException | str | None) -> str:
    """The line of an error (or of an error's text) that says what went wrong.

    An error's own message says it first (a driver's ``FATAL: ...`` before its ``DETAIL``), so
    that is the first non-empty line. An error that wraps another one says it last: Ray's errors
    (a remote traceback, an actor's details, then the cause), any text holding a traceback (it
    ends with the exception it led to) and a text whose first line ends with ``:`` (a header,
    such as a Ray job's "last available logs:", introducing the output it quotes); for those it
    is the last non-empty line. An exception with no text gives its type's name; no text, "".
    """
    text = "" if error is None else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    wrapped = (type(error).__module__.split(".")[0] == "ray" or lines[0].endswith(":")
               or _TRACEBACK.search(text) is not None)
    return lines[-1] if wrapped else lines[0]


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
