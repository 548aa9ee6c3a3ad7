"""Faults a study must survive, each with a real Ray and a real database (SQLite and PostgreSQL).

A worker SIGKILLed mid-trial, the driver SIGKILLed, PostgreSQL dropping every connection (and
refusing new ones for a while), eight workers on SQLite while a reader polls, out-of-memory trials.
The contract each time: exactly the requested number of outcomes, nothing left RUNNING, trial
numbers unique and gap-free, and every interrupted configuration run again.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa
import yaml
from conftest import small_spec

import tuner
from tuner.execution import INFRA_REASONS

pytestmark = pytest.mark.usefixtures("ray_session")

SAFE_PARAMS = {  # no configuration diverges: every trial that runs to the end is COMPLETE
    "lr": {"type": "float", "low": 1e-3, "high": 2e-2, "scale": "log"},
    "batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"},
}


def _fault_module(tmp_path: Path) -> str:
    """A trainable around builtin:mlp that marks which process runs which trial (the test's
    killer reads the marks), and that asks for 40 TB when ``hog`` is set (a real failed
    allocation, not a raised exception)."""
    name = f"faultmod_{uuid.uuid4().hex[:8]}"
    marks = tmp_path / "running"
    marks.mkdir()
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import os
        import time
        from pathlib import Path

        import torch
        from tuner.training import resolve_trainable

        MARKS = Path({str(marks)!r})
        _mlp = resolve_trainable("builtin:mlp")

        def fit(config, ctx):
            mark = MARKS / str(os.getpid())
            mark.write_text(str(ctx.trial_number))
            try:
                if config.get("hog", 0) > 0.5:
                    torch.empty(10 ** 13)
                out = _mlp({{k: v for k, v in config.items() if k != "hog"}}, ctx)
                time.sleep(0.3)  # a trial lasts long enough for the killer to find it running
                return {{**out, "pid": os.getpid()}}
            finally:
                mark.unlink(missing_ok=True)
    """))
    return name


def _run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def _complete(name: str, url: str) -> int:
    try:
        return tuner.load_study(name, url).counts()["COMPLETE"]
    except tuner.StudyNotFoundError:
        return 0


def _assert_consistent(study: tuner.Study, outcomes: int) -> dict[str, int]:
    """Exactly ``outcomes`` budgeted outcomes, nothing RUNNING/WAITING, numbers 0..n-1."""
    counts = study.counts()
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0, counts
    trials = study.trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    infra = [t for t in trials if t.state == "FAIL" and t.reason in INFRA_REASONS]
    assert len(trials) - len(infra) == outcomes, counts
    done = {tuple(sorted(t.params.items())) for t in trials if t.state == "COMPLETE"}
    for t in infra:  # every interrupted configuration ran again
        assert tuple(sorted(t.params.items())) in done, t
    return counts


def test_sigkill_workers_mid_trial(storage_url: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """6 workers SIGKILLed during a 60-trial study (PostgreSQL; 4 in 40 on SQLite, to keep the
    suite short): each killed trial becomes FAIL (worker_lost) within seconds, its params re-run,
    and exactly the requested number of trials COMPLETE."""
    n_trials, n_kills = (60, 6) if storage_url.startswith("postgresql") else (40, 4)
    module = _fault_module(tmp_path)
    monkeypatch.chdir(tmp_path)  # workers import the trainable from the driver's directory
    spec = small_spec(trials=n_trials, epochs=3, trainable=f"{module}:fit", params=SAFE_PARAMS)
    name, marks = spec["study"], tmp_path / "running"
    thread, errors = _run_in_thread(lambda: tuner.submit(spec, storage=storage_url))
    kills: list[tuple[int, dt.datetime]] = []
    every = n_trials // (n_kills + 2)
    deadline = time.monotonic() + 900
    while thread.is_alive() and len(kills) < n_kills and time.monotonic() < deadline:
        time.sleep(0.2)
        if _complete(name, storage_url) < every * (len(kills) + 1):
            continue  # spread the kills over the study, the last well before its end
        for mark in marks.iterdir():
            try:
                number = int(mark.read_text())
                os.kill(int(mark.name), signal.SIGKILL)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                continue  # the trial ended meanwhile
            kills.append((number, dt.datetime.now()))
            break
    thread.join(timeout=900)
    assert not thread.is_alive() and not errors, errors
    assert len(kills) == n_kills
    study = tuner.load_study(name, storage_url)
    counts = _assert_consistent(study, n_trials)
    assert counts["COMPLETE"] == n_trials and counts["FAIL"] == len(study.trials(["FAIL"]))
    by_number = {t.number: t for t in study.trials()}
    lost = [n for n, _ in kills if by_number[n].reason == "worker_lost"]
    assert len(lost) >= n_kills - 1, [(n, by_number[n].state, by_number[n].reason) for n, _ in kills]
    for number, at in kills:
        t = by_number[number]
        if t.reason == "worker_lost":  # detected and recorded within a bounded time
            assert (t.datetime_complete - at).total_seconds() < 60, (number, t.datetime_complete, at)


def _gated_module(tmp_path: Path, open_below: int) -> tuple[str, Path]:
    """A trainable around builtin:mlp whose trials numbered ``open_below`` or more wait for a gate
    file: the study cannot finish before the test has done what it needs mid-study."""
    name = f"gatemod_{uuid.uuid4().hex[:8]}"
    gate = tmp_path / "gate"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import time
        from pathlib import Path

        from tuner.training import resolve_trainable

        GATE = Path({str(gate)!r})
        _mlp = resolve_trainable("builtin:mlp")

        def fit(config, ctx):
            deadline = time.monotonic() + 300
            while ctx.trial_number >= {open_below} and not GATE.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return _mlp(config, ctx)
    """))
    return name, gate


def test_driver_sigkill_then_resume(storage_url: str, tmp_path: Path, ray_session: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`tuner submit` killed with SIGKILL (no handler runs): trials it left RUNNING are failed as
    interrupted and re-queued by `tuner resume`, which reaches exactly the requested count. While
    the driver lives, a second `tuner resume` is refused."""
    import ray
    from ray.util.state import list_actors

    from tuner.execution import release_workers

    release_workers()  # this process's idle pooled workers would hold the CPUs the driver needs
    module, gate = _gated_module(tmp_path, open_below=5)
    monkeypatch.chdir(tmp_path)  # workers import the trainable from the driver's directory
    name = f"crash-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_spec(name, trials=30, epochs=4, params=SAFE_PARAMS,
                                              trainable=f"{module}:fit")))
    gcs = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "submit", str(path), "--storage", storage_url, "--quiet",
         "--address", gcs], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    deadline = time.monotonic() + 300
    while _complete(name, storage_url) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    # One driver per study: a second one is refused at once, saying who runs it.
    second = subprocess.run(
        [sys.executable, "-m", "tuner", "resume", name, "--storage", storage_url, "--quiet"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and "is being run by" in lines[0]
    proc.kill()
    proc.wait(timeout=60)
    gate.touch()  # the re-run trials may now finish
    # The driver's actors die with it (Ray's ownership); wait until its coordinator is gone.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and list_actors(
            address=ray_session, filters=[("class_name", "=", "Coordinator"), ("state", "=", "ALIVE")]):
        time.sleep(0.5)
    before = tuner.load_study(name, storage_url).counts()
    assert before["COMPLETE"] >= 5 and before["COMPLETE"] < 30

    resumed = tuner.resume(name, storage=storage_url)
    counts = _assert_consistent(resumed, 30)
    assert counts["COMPLETE"] == 30
    if before["RUNNING"]:
        interrupted = [t for t in resumed.trials(["FAIL"]) if t.reason == "interrupted"]
        assert len(interrupted) == before["RUNNING"]


@pytest.mark.postgres
def test_postgres_drops_every_connection_mid_study(pg_url: str, tmp_path: Path) -> None:
    """Every connection of the study's database is terminated again and again, and for 3 s the
    database refuses new ones (what clients see when PostgreSQL restarts). Writes retry with
    backoff: the study finishes with every trial and every curve stored."""
    from sqlalchemy.engine import make_url

    db = make_url(pg_url).database
    admin = sa.create_engine(os.environ["TUNER_TEST_POSTGRES_URL"], isolation_level="AUTOCOMMIT")
    spec = small_spec(trials=40, epochs=3, params=SAFE_PARAMS)
    name = spec["study"]
    thread, errors = _run_in_thread(lambda: tuner.submit(spec, storage=pg_url))
    terminated = 0
    outage_done = False
    try:
        with admin.connect() as conn:
            kill = sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = :d AND pid <> pg_backend_pid()")
            while thread.is_alive():
                time.sleep(1.0)
                if _complete(name, pg_url) < 3:
                    continue
                if not outage_done and _complete(name, pg_url) >= 10:
                    conn.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false'))
                    terminated += conn.execute(kill, {"d": db}).scalar_one()
                    time.sleep(3.0)
                    conn.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))
                    outage_done = True
                    continue
                terminated += conn.execute(kill, {"d": db}).scalar_one()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()
    thread.join(timeout=600)
    assert not errors, errors
    assert outage_done and terminated >= 3
    study = tuner.load_study(name, pg_url)
    counts = _assert_consistent(study, 40)
    assert counts["COMPLETE"] == 40
    for t in study.trials(["COMPLETE"]):
        assert list(study.curve(t.number)["epoch"]) == [1, 2, 3]


@pytest.mark.postgres
def test_opening_waits_out_a_restart_but_not_a_wrong_database(pg_url: str) -> None:
    """While the server refuses connections (a restart), opening the storage waits and then
    succeeds; a database that does not exist is a mistake, not a restart: one line at once."""
    from sqlalchemy.engine import make_url

    from tuner.storage import open_storage
    from tuner.storage._engine import REOPEN_S

    db = make_url(pg_url).database
    admin = sa.create_engine(os.environ["TUNER_TEST_POSTGRES_URL"], isolation_level="AUTOCOMMIT")
    opened: list[Any] = []
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false'))
            try:
                thread, errors = _run_in_thread(lambda: opened.append(open_storage(pg_url, create=True)))
                time.sleep(1.5)
                assert thread.is_alive() and not opened and not errors  # still waiting
            finally:
                conn.execute(sa.text(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true'))
        thread.join(timeout=REOPEN_S)
        assert not errors, errors
        assert opened and opened[0].engine.dialect.name == "postgresql"
        opened[0].engine.dispose()
    finally:
        admin.dispose()

    wrong = make_url(pg_url).set(database=f"{db}_missing").render_as_string(hide_password=False)
    started = time.monotonic()
    with pytest.raises(tuner.StorageError, match="does not exist") as info:
        open_storage(wrong)
    assert time.monotonic() - started < REOPEN_S / 2  # no retrying a mistake
    assert "\n" not in str(info.value)


def test_eight_workers_on_sqlite_while_a_reader_polls(sqlite_url: str) -> None:
    """One writer per study: eight concurrent trials and a reader going as fast as it can (what
    the dashboard does) see no 'database is locked'."""
    spec = small_spec(trials=32, epochs=2, params=SAFE_PARAMS,
                      resources={"workers": 8, "cpus_per_trial": 0.25})
    name = spec["study"]
    thread, errors = _run_in_thread(lambda: tuner.submit(spec, storage=sqlite_url))
    reads, read_errors = 0, []
    while thread.is_alive():
        try:
            tuner.list_studies(sqlite_url)
            study = tuner.load_study(name, sqlite_url)
            study.counts()
            page = study.trials(limit=50)
            study.best_trials(5)
            if page:
                study.curve(page[-1].number)
            reads += 1
        except tuner.StudyNotFoundError:
            continue
        except Exception as e:  # noqa: BLE001 - collected and asserted on below
            read_errors.append(e)
    thread.join()
    assert not errors and not read_errors, (errors, read_errors[:3])
    assert reads > 10
    study = tuner.load_study(name, sqlite_url)
    assert study.counts()["COMPLETE"] == 32
    assert not [t for t in study.trials() if t.reason and "locked" in t.reason]
    assert len({t.user_attrs.get("ray_node") for t in study.to_optuna().trials}) == 1


def test_out_of_memory_trial_fails_as_oom_and_the_worker_goes_on(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial whose allocation fails is FAIL 'oom'; the same worker process runs the next."""
    module = _fault_module(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = {**SAFE_PARAMS, "hog": {"type": "float", "low": 0.0, "high": 1.0}}
    spec = small_spec(trials=10, epochs=2, trainable=f"{module}:fit", params=params,
                      resources={"workers": 1}, sampler={"kind": "random", "seed": 4})
    study = tuner.submit(spec, storage=sqlite_url)
    trials = study.trials()
    hogs = [t for t in trials if t.params["hog"] > 0.5]
    assert hogs and len(hogs) < len(trials)  # seed 4 draws both kinds
    assert all(t.state == "FAIL" and t.reason == "oom" for t in hogs)
    assert all(t.state == "COMPLETE" for t in trials if t.params["hog"] <= 0.5)
    pids = {t.user_attrs.get("pid") for t in study.to_optuna().trials if t.state.name == "COMPLETE"}
    assert len(pids) == 1  # one worker process did everything: none was lost or replaced
    assert any(t.number > min(h.number for h in hogs) for t in trials if t.state == "COMPLETE")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_cuda_out_of_memory_is_oom(sqlite_url: str) -> None:
    """On a GPU: a network far too large for the card is FAIL 'oom' and the worker goes on."""
    spec = small_spec(trials=4, epochs=1, params={
        "hidden_units": {"type": "categorical", "choices": [32, 2_000_000]}},
        fixed={"optimizer": "adam", "layers": 3}, resources={"workers": 1, "gpus_per_trial": 1},
        sampler={"kind": "grid"})
    study = tuner.submit(spec, storage=sqlite_url)
    by_units = {t.params["hidden_units"]: t for t in study.trials()}
    assert by_units[2_000_000].reason == "oom" and by_units[32].state == "COMPLETE"
