"""Reading a plain Optuna database: empty stand-ins for tuner's tables, on the connection only.

A database that Optuna alone wrote has no ``tuner_*`` tables, and tuner's reads join them (host,
reason, curves). Creating them would write to a database the reader may not own (and a read
must never write), so each connection of a read-only open gets empty copies that live only as
long as the connection: an in-memory database attached to SQLite, temporary tables on
PostgreSQL, with ``pg_temp`` moved to the end of the connection's ``search_path``. Both are
searched after the real tables, so the SQL is the same, and a real table created later (by a
first ``submit`` or ``tuner db upgrade``) is the one read from then on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateTable

from tuner.storage._tables import Base

__all__ = ["install_standins"]

_SCHEMA = "tuner_standin"


def install_standins(engine: Engine) -> None:
    """Give every new connection of ``engine`` empty stand-ins for tuner's tables (columns only:
    no keys, no indexes, nothing that could refer to a real table)."""
    sqlite = engine.dialect.name == "sqlite"
    md = sa.MetaData()
    tables = [
        sa.Table(t.name, md, *[sa.Column(c.name, c.type) for c in t.columns],
                 schema=_SCHEMA if sqlite else None, prefixes=[] if sqlite else ["TEMPORARY"])
        for t in Base.metadata.sorted_tables
    ]
    ddl = [str(CreateTable(t).compile(dialect=engine.dialect)) for t in tables]

    def create(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        try:
            if sqlite:
                cur.execute(f"ATTACH DATABASE ':memory:' AS {_SCHEMA}")
            else:  # pg_temp is searched first unless the path names it: name it last
                cur.execute("SELECT set_config('search_path', "
                            "current_setting('search_path') || ', pg_temp', false)")
            for statement in ddl:
                cur.execute(statement)
        finally:
            cur.close()
        if not sqlite:
            dbapi_connection.commit()  # else the pool's reset-on-return rolls them back

    sa.event.listen(engine, "connect", create)
    engine.dispose()  # connections opened before the listener have no stand-ins
