"""Opening a storage: Optuna's RDB storage plus tuner's own tables, on one SQLAlchemy engine.

SQLite is the embedded default and gets WAL (readers never block the writer) and a long busy
timeout; PostgreSQL gets ``pool_pre_ping`` so a restarted server costs a reconnect, not a crash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tuner._errors import StorageError
from tuner._secrets import redact_url
from tuner.storage._transient import first_line, retry_disconnects

__all__ = ["Storage", "open_storage", "resolve_url", "redact"]

DEFAULT_URL = "sqlite:///tuner.db"
REOPEN_S = 30.0  # how long opening keeps retrying a server that drops or refuses while restarting
ENV_VAR = "TUNER_STORAGE"


def resolve_url(url: str | None = None) -> str:
    """``url``, else ``$TUNER_STORAGE``, else ``sqlite:///tuner.db`` in the working directory."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def redact(url: str) -> str:
    """The URL with every password (user info and query string, e.g. ``?password=``) replaced
    by ``***``: safe for logs, errors and pages. See :mod:`tuner._secrets`."""
    return redact_url(url)


@dataclass(frozen=True)
class Storage:
    """An open storage: ``optuna`` is the RDB storage; ``engine`` is shared with tuner's tables."""

    url: str
    optuna: optuna.storages.RDBStorage
    engine: Engine


def open_storage(url: str | None = None, *, upgrade: bool = True) -> Storage:
    """Open (creating tables as needed) the storage at ``url``; see :func:`resolve_url`."""
    url = resolve_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise StorageError(
            f"'{redact(url)}' is not a database URL; use e.g. sqlite:///tuner.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite(parsed.database)
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
        engine_kwargs["pool_recycle"] = 1800
    try:
        rdb = retry_disconnects(lambda: _open_rdb(url, engine_kwargs, upgrade=upgrade), for_s=REOPEN_S)
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(
            f"cannot open storage {redact(url)}: {first_line(e)}; check the URL, that the server "
            f"runs, or set {ENV_VAR}"
        ) from None
    engine = rdb.engine
    return Storage(url=url, optuna=rdb, engine=engine)


def _open_rdb(url: str, engine_kwargs: dict[str, Any], *, upgrade: bool) -> optuna.storages.RDBStorage:
    try:
        rdb = _creating_race_safe(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs))
    except ModuleNotFoundError as e:
        raise StorageError(
            f"no driver for '{redact(url)}' ({e.name} is not installed); "
            "for PostgreSQL use postgresql+psycopg://"
        ) from None
    try:
        if rdb.engine.dialect.name == "sqlite":
            sa.event.listen(rdb.engine, "connect", _sqlite_pragmas)
        if upgrade:
            from tuner.storage._migrate import upgrade_schema

            _creating_race_safe(lambda: upgrade_schema(rdb.engine))
    except BaseException:
        rdb.engine.dispose()
        raise
    return rdb


T = TypeVar("T")
_RACE_MARKERS = ("already exists", "duplicate key", "UniqueViolation", "UNIQUE constraint failed",
                 "database is locked")
_CREATING = threading.Lock()  # Alembic's context is process-global: one creator per process


def _creating_race_safe(create: Callable[[], T], attempts: int = 8) -> T:
    """Run a schema-creating step; if another process created the same tables meanwhile (two
    `tuner` commands on a new database, a study starting while the dashboard opens it), the
    loser's CREATE fails: wait and run it again, when it finds the tables there."""
    for attempt in range(attempts):
        try:
            with _CREATING:
                return create()
        except Exception as e:  # re-raised unless it is that race
            text = str(getattr(e, "orig", None) or e)
            if attempt == attempts - 1 or not any(m in text for m in _RACE_MARKERS):
                raise
            time.sleep(0.1 * 2 ** attempt)
    raise AssertionError("unreachable")


def _prepare_sqlite(database: str | None) -> None:
    """Switch the file to WAL before Optuna opens it (WAL is persistent in the file)."""
    if not database or database == ":memory:":
        return
    path = Path(database)
    if path.parent and not path.parent.exists():
        raise StorageError(f"folder '{path.parent}' for the SQLite file does not exist; create it")
    con = sqlite3.connect(path, timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
