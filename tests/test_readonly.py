"""Reading never writes: the API's reads and every dashboard page work on a read-only
PostgreSQL role, on a read-only SQLite connection, and on a plain Optuna database, which they
leave byte for byte as it was (no tuner tables, no indexes, no WAL switch)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import tuner
from tests.conftest import small_spec

pytest.importorskip("streamlit", reason="the dashboard extra is not installed")
from tests.test_dashboard import _restore_env, ok, render  # noqa: E402,F401 - after the skip; _restore_env: autouse

PAGES = (("studies", {}), ("study", {}), ("trial", {"trial": "0"}), ("compare", {}))


def _read_everything(url: str, name: str) -> None:
    """What `tuner status/best/trials` and each dashboard page read, through ``url``."""
    assert name in [s.name for s in tuner.list_studies(url)]
    study = tuner.load_study(name, url)
    trials = study.trials()
    assert trials and study.counts()["COMPLETE"] >= 1
    assert study.best_trials(3)
    study.curve(trials[0].number)
    for page, query in PAGES:
        at = render(url, page, **({"study": name} if page != "studies" else {}), **query)
        ok(at)


def _optuna_study(url: str, name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url)
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2, n_trials=5)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plain_optuna_sqlite_file_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "optuna.db"
    url = f"sqlite:///{path}"
    _optuna_study(url, "plain")
    before = _digest(path)
    _read_everything(url, "plain")
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db"]  # no -wal, no -shm
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert not any(t.startswith("tuner_") for t in tables)


@pytest.mark.usefixtures("ray_session")
def test_a_read_only_sqlite_connection_serves_a_tuner_study(tmp_path: Path) -> None:
    """SQLite's own read-only mode (``mode=ro``): any write would fail, as root too (file
    permissions do not stop root)."""
    written = tmp_path / "written.db"
    spec = small_spec(trials=4, epochs=2)
    tuner.submit(spec, storage=f"sqlite:///{written}")
    path = tmp_path / "handed.db"  # a copy a reader gets handed: whole, with no WAL beside it
    with sqlite3.connect(written) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    before = _digest(path)
    _read_everything(f"sqlite:///file:{path}?mode=ro&uri=true", spec["study"])
    assert _digest(path) == before


@pytest.fixture
def pg_study(pg_url: str, ray_session: str) -> str:
    """A study tuner wrote to the test database (as its owner): its name."""
    spec = small_spec(trials=4, epochs=2)
    tuner.submit(spec, storage=pg_url)
    return spec["study"]


@pytest.fixture
def read_only_role(pg_url: str, pg_study: str) -> Iterator[tuple[str, str]]:
    """``(read-only URL of the test database, read-only URL of a plain Optuna database)``: a
    login role with CONNECT and SELECT only (granted once the tables exist), dropped afterwards."""
    admin_url = os.environ["TUNER_TEST_POSTGRES_URL"]
    role = f"tuner_ro_{uuid.uuid4().hex[:8]}"
    db = make_url(pg_url).database
    plain_db = f"{db}_plain"
    plain_url = make_url(pg_url).set(database=plain_db).render_as_string(hide_password=False)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{plain_db}"'))
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    _optuna_study(plain_url, "plain")
    for url in (pg_url, plain_url):
        grants = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with grants.connect() as conn:
            conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{make_url(url).database}" TO "{role}"'))
            conn.execute(sa.text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
            conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
        grants.dispose()
    try:
        yield (make_url(pg_url).set(username=role).render_as_string(hide_password=False),
               make_url(plain_url).set(username=role).render_as_string(hide_password=False))
    finally:
        import gc

        gc.collect()  # Study objects and cached engines of the role
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE usename = :r OR datname = :d"), {"r": role, "d": plain_db})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{plain_db}"'))
            for url in (pg_url,):
                owned = sa.create_engine(url, isolation_level="AUTOCOMMIT")
                with owned.connect() as c:
                    c.execute(sa.text(f'DROP OWNED BY "{role}"'))
                owned.dispose()
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.mark.postgres
def test_a_read_only_postgres_role_serves_tuner_and_plain_optuna_studies(
        pg_study: str, read_only_role: tuple[str, str]) -> None:
    ro_url, ro_plain_url = read_only_role
    probe = sa.create_engine(ro_url)
    with probe.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        conn.execute(sa.text("DELETE FROM tuner_curves"))  # the role really cannot write
    probe.dispose()
    _read_everything(ro_url, pg_study)
    _read_everything(ro_plain_url, "plain")
    plain = sa.create_engine(ro_plain_url)
    assert not [t for t in sa.inspect(plain).get_table_names() if t.startswith("tuner_")]
    plain.dispose()


def test_an_old_or_foreign_tuner_schema_names_the_upgrade(tmp_path: Path) -> None:
    """Tables a different tuner version wrote are not read blindly: one line naming the fix."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    tuner.storage.open_storage(url, create=True).engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as con:
        con.execute("UPDATE tuner_alembic_version SET version_num = 'v0_2_0'")
    with pytest.raises(tuner.StorageError, match="tuner db upgrade") as info:
        tuner.list_studies(url)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", [
    ["status"], ["best", "nope"], ["trials", "nope"], ["logs", "nope"], ["cancel", "nope"],
    ["resume", "nope"],
])
def test_every_command_on_a_storage_that_does_not_exist(tmp_path: Path, command: list[str]) -> None:
    """No file appears, and the answer is one line: 'no studies yet' (exit 0) for status, a
    study it cannot find (exit 2) for the rest; never a traceback."""
    from typer.testing import CliRunner

    from tuner.cli import app

    path = tmp_path / "none.db"
    result = CliRunner().invoke(app, [*command, "--storage", f"sqlite:///{path}"],
                                env={"RAY_ADDRESS": ""})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert not path.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    if command == ["status"]:
        assert result.exit_code == 0 and "no studies yet" in lines[0]
    else:
        assert result.exit_code == 2 and "study 'nope'" in lines[0], lines
