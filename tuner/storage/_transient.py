"""Which database errors are a server restart or a dropped connection, not a mistake.

A PostgreSQL restart, a failover or an administrator's ``pg_terminate_backend`` reaches a client
as a disconnect on a pooled connection, or as a refusal while the server comes back. Those pass
in seconds and are retried; a wrong host, password or database name is not, and fails at once.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError

from tuner._text import error_line

__all__ = ["is_disconnect", "first_line", "retry_disconnects"]

T = TypeVar("T")

# What PostgreSQL and its drivers say while a server goes away or comes back.
_RESTART_MARKERS = (
    "terminating connection",
    "server closed the connection",
    "not currently accepting connections",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "consuming input failed",
    "connection reset",
    "SSL SYSCALL error: EOF",
)


def is_disconnect(e: BaseException) -> bool:
    """True for a dropped or refused-while-restarting connection (worth retrying)."""
    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    text = str(getattr(e, "orig", None) or e)
    return any(marker in text for marker in _RESTART_MARKERS)


def first_line(e: BaseException) -> str:
    """The line of a database error that says what went wrong (:func:`tuner._text.error_line`),
    from the driver's own message when SQLAlchemy wraps one: SQLAlchemy's text adds the SQL
    and a link, which a one-line report does not want."""
    return error_line(str(getattr(e, "orig", None) or e)) or type(e).__name__


def retry_disconnects(work: Callable[[], T], *, for_s: float) -> T:
    """``work()``, run again with backoff while it fails by :func:`is_disconnect`, for up to
    ``for_s`` seconds; any other error, or the last disconnect, is raised as it is."""
    deadline = time.monotonic() + for_s
    delay = 0.2
    while True:
        try:
            return work()
        except Exception as e:
            if not is_disconnect(e) or time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
