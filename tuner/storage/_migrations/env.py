"""Alembic environment: runs on the engine tuner already opened (never a second URL)."""

from __future__ import annotations

from alembic import context

from tuner.storage._migrate import VERSION_TABLE
from tuner.storage._tables import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
