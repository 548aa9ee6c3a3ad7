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

from tuner._errors import StorageError, StudyNotFoundError, TunerError
from tuner._secrets import redact_url
from tuner.storage._transient import first_line, retry_disconnects

__all__ = ["Storage", "EmptyStorageError", "open_storage", "get_storage", "resolve_url", "redact"]

DEFAULT_URL = "sqlite:///tuner.db"
REOPEN_S = 30.0  # how long opening keeps retrying a server that drops or refuses while restarting
_MIGRATING_WAIT_S = 5.0  # how long a read waits for another process's migration to finish
ENV_VAR = "TUNER_STORAGE"


def resolve_url(url: str | None = None) -> str:
    """``url``, else ``$TUNER_STORAGE``, else ``sqlite:///tuner.db`` in the working directory; a
    relative SQLite path is made absolute here, once, since Ray workers and jobs run elsewhere."""
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:" and not path.startswith("file:"):
            return "sqlite:///" + os.path.abspath(path)
    return url


def redact(url: str) -> str:
    """The URL with every password (user info and query string, e.g. ``?password=``) replaced
    by ``***``: safe for logs, errors and pages. See :mod:`tuner._secrets`."""
    return redact_url(url)


class EmptyStorageError(StudyNotFoundError):
    """The storage holds no studies yet (a missing SQLite file, a database without tables)."""


@dataclass(frozen=True)
class Storage:
    """An open storage: ``optuna`` is the RDB storage; ``engine`` is shared with tuner's tables."""

    url: str
    optuna: optuna.storages.RDBStorage
    engine: Engine


def open_storage(url: str | None = None, *, create: bool = False) -> Storage:
    """Open the storage at ``url`` (see :func:`resolve_url`).

    ``create=True`` is for what runs studies (``submit``, ``resume``, ``tuner db upgrade``): it
    creates Optuna's and tuner's tables as needed and migrates tuner's to this version. Without it
    the open only reads: no table, index, pragma or file is created, so a read-only role, a
    read-only file or a plain Optuna database is left exactly as it was. A storage that holds no
    studies yet raises :class:`EmptyStorageError`; one whose tuner tables are missing or from
    another version raises :class:`StorageError` naming ``tuner db upgrade``.
    """
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
        _prepare_sqlite(url, parsed.database, create=create)
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
        engine_kwargs["pool_recycle"] = 1800
    try:
        rdb = retry_disconnects(lambda: _open_rdb(url, engine_kwargs, create=create),
                                for_s=REOPEN_S)
    except TunerError:
        raise
    except Exception as e:
        raise StorageError(
            f"cannot open storage {redact(url)}: {first_line(e)}; check the URL, that the server "
            f"runs, or set {ENV_VAR}"
        ) from None
    return Storage(url=url, optuna=rdb, engine=rdb.engine)


def get_storage(storage: Storage | str | None, *, create: bool = False) -> Storage:
    """``storage`` itself when it is open already, else :func:`open_storage` of the URL (as
    Optuna's ``get_storage`` takes a storage or a URL): resolve once at the boundary, then pass
    the open storage along."""
    return storage if isinstance(storage, Storage) else open_storage(storage, create=create)


def _open_rdb(url: str, engine_kwargs: dict[str, Any], *, create: bool) -> optuna.storages.RDBStorage:
    plain = False if create else _check_tables(url, engine_kwargs)
    try:
        rdb = _creating_race_safe(lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, skip_table_creation=not create))
    except ModuleNotFoundError as e:
        raise StorageError(
            f"no driver for '{redact(url)}' ({e.name} is not installed); "
            "for PostgreSQL use postgresql+psycopg://"
        ) from None
    try:
        if rdb.engine.dialect.name == "sqlite":
            sa.event.listen(rdb.engine, "connect", _sqlite_pragmas)
        if plain:
            from tuner.storage._standin import install_standins

            install_standins(rdb.engine)
        if create:
            from tuner.storage._migrate import upgrade_schema

            _creating_race_safe(lambda: upgrade_schema(rdb.engine))
    except BaseException:
        rdb.engine.dispose()
        raise
    return rdb


def _check_tables(url: str, engine_kwargs: dict[str, Any]) -> bool:
    """Before a read-only open: Optuna's tables there (else the storage is empty), and tuner's at
    this version (else say how to upgrade). True when tuner's revision is not stamped: a plain
    Optuna database, or one whose tuner tables a first ``submit`` is creating this moment; both
    are read through stand-ins for what is missing. A revision on its way to this version (a
    migration running now) is waited for. Reads the catalogue only."""
    from tuner.storage._migrate import head_revision, schema_revision

    engine = sa.create_engine(url, **engine_kwargs)
    head = head_revision()
    deadline = time.monotonic() + _MIGRATING_WAIT_S
    try:
        while True:
            if not _optuna_ready(engine):  # none yet, or Optuna is creating them this moment
                raise EmptyStorageError(f"no studies in {redact(url)} yet; `tuner submit SPEC "
                                        "--storage URL` runs the first")
            revision = schema_revision(engine)
            if revision is None:
                return True
            if revision == head:
                return False
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
    finally:
        engine.dispose()
    raise StorageError(
        f"tuner's tables in {redact(url)} are at revision {revision}, this tuner reads {head}; "
        "run `tuner db upgrade --storage URL` (or use the tuner that wrote them)")


def _optuna_ready(engine: Engine) -> bool:
    """Optuna's tables exist and are stamped. Optuna creates them, then records its version in
    two more steps; opening in between would make Optuna write those rows itself."""
    from alembic.runtime.migration import MigrationContext

    inspector = sa.inspect(engine)
    if not (inspector.has_table("studies") and inspector.has_table("version_info")):
        return False
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT count(*) FROM version_info")).scalar_one() == 0:
            return False
        return MigrationContext.configure(conn).get_current_revision() is not None


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


def _prepare_sqlite(url: str, database: str | None, *, create: bool) -> None:
    """Switch a file to WAL before Optuna opens it (WAL is persistent in the file); a read-only
    open neither creates a missing file nor changes its journal mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not create:
        if not path.is_file():
            raise EmptyStorageError(
                f"no studies in {redact(url)} yet (no file {path}); `tuner submit SPEC` runs the first")
        return
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
