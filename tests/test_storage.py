"""Storage contract over SQLite and PostgreSQL: schema, WAL, errors, the Optuna mirror."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from optuna.storages._rdb import models as optuna_models

from tuner import StorageError
from tuner.storage import _optuna as o
from tuner.storage import open_storage, redact
from tuner.storage._migrate import VERSION_TABLE, alembic_config


def test_tables_and_own_alembic_version(storage_url: str) -> None:
    st = open_storage(storage_url, create=True)
    names = set(sa.inspect(st.engine).get_table_names())
    assert {"trials", "trial_params", "tuner_studies", "tuner_trials", "tuner_curves",
            VERSION_TABLE, "alembic_version"} <= names
    with st.engine.connect() as conn:
        ours = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        theirs = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert ours == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert theirs != ours
    open_storage(storage_url, create=True)  # second open: no migration, no error


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    st = open_storage(sqlite_url, create=True)
    with st.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_optuna_schema_declaration_matches_optuna() -> None:
    """tuner's one declaration of Optuna's tables (storage._optuna) names real Optuna columns,
    and nothing else in the package declares them."""
    real = {t.name: {c.name for c in t.columns} for t in optuna_models.BaseModel.metadata.tables.values()}
    for name in o.__all__:
        table = getattr(o, name)
        if isinstance(table, sa.TableClause):
            assert table.name in real
            assert {c.name for c in table.columns} <= real[table.name], table.name
    package = Path(o.__file__).resolve().parents[1]
    declaring = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                       if "sa.table(" in p.read_text())
    assert declaring == ["storage/_optuna.py"]


def test_unreachable_postgres_is_one_clear_error_without_password() -> None:
    url = "postgresql+psycopg://user:s3cret@127.0.0.1:1/db"
    with pytest.raises(StorageError) as e:
        open_storage(url, create=True)
    assert "s3cret" not in str(e.value) and "***" in str(e.value)
    assert "check the URL" in str(e.value)


def test_not_a_url() -> None:
    with pytest.raises(StorageError, match="not a database URL"):
        open_storage("tuner.db")


def test_missing_sqlite_folder(tmp_path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path}/no/such/dir/t.db", create=True)


def test_redact() -> None:
    assert redact("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"


def _open(url: str) -> None:
    from tuner.storage import open_storage

    open_storage(url, create=True).engine.dispose()


def test_many_processes_create_a_new_database_at_once(tmp_path: Path) -> None:
    """Two commands on a new database (a study starting while the dashboard opens it) race to
    create the tables; the loser waits and finds them there instead of failing."""
    import multiprocessing as mp
    import threading

    url = f"sqlite:///{tmp_path / 'race.db'}"
    procs = [mp.get_context("spawn").Process(target=_open, args=(url,)) for _ in range(3)]
    for p in procs:
        p.start()
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            _open(url)
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(timeout=120)
    assert not errors and [p.exitcode for p in procs] == [0, 0, 0], errors
