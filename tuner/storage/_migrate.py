"""Alembic for tuner's tables, with its own version table.

Optuna keeps *its* Alembic revision in ``alembic_version``; sharing that table would make each
project's migrations clobber the other's, so ours live in ``tuner_alembic_version``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

__all__ = ["upgrade_schema", "schema_revision", "head_revision", "VERSION_TABLE", "alembic_config"]

VERSION_TABLE = "tuner_alembic_version"
_DIR = Path(__file__).parent / "_migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_DIR))
    cfg.attributes["engine"] = engine
    return cfg


@functools.cache
def head_revision() -> str:
    """The revision this version of tuner reads and writes. Cached: the scripts ship with the
    package, and reading them costs ~0.1 s on every storage open of a study's start."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "tuner ships its migrations"
    return head


def schema_revision(engine: Engine) -> str | None:
    """The revision of tuner's tables in ``engine``'s database; None when it has none (a new
    database, or a plain Optuna one). Only reads."""
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def upgrade_schema(engine: Engine) -> None:
    """Bring tuner's tables to the newest revision; a no-op (one SELECT) when already there."""
    if schema_revision(engine) != head_revision():
        command.upgrade(alembic_config(engine), "head")
