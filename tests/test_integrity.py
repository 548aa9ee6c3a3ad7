"""The storage contract: nothing lost, nothing duplicated, whoever else writes the study.

Over SQLite and PostgreSQL (and a non-UTC ``TZ`` where times matter): diverging trials and
two-call epochs stored as valid JSON; plain Optuna asking, enqueueing and telling beside a running
study; one driver per study; a permanent error on one row; the database gone past the retry
bound; a hung trainable with ``trial_timeout_s``; UTC times.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from conftest import open_coordinator, small_spec

import tuner
from tuner import StorageError, StudyExistsError
from tuner.execution import TrialResult
from tuner.storage import CurveRow, open_storage
from tuner.storage._runs import begin_run

optuna.logging.set_verbosity(optuna.logging.ERROR)

LR = {"type": "float", "low": 1e-3, "high": 1.0, "scale": "log"}


def _module(tmp_path: Path, body: str) -> str:
    """A user trainable module in ``tmp_path`` (the workers import it from the driver's cwd)."""
    name = f"integrity_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return f"{name}:fit"


def _strict_json(text: Any) -> Any:
    """Parse as JSON proper: NaN / Infinity are not JSON (PostgreSQL refuses them)."""
    if not isinstance(text, str):
        text = json.dumps(text, allow_nan=False)
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def _numbers(url: str, name: str) -> list[int]:
    return sorted(t.number for t in optuna.load_study(study_name=name, storage=url).trials)


def _result(a: Any, value: float, **kw: Any) -> TrialResult:
    curve = [{"epoch": 1, "val_loss": value + 1}, {"epoch": 2, "val_loss": value}]
    return TrialResult(a.trial_id, a.number, "COMPLETE", value=value, curve=curve, **kw)


@pytest.mark.usefixtures("ray_session")
def test_divergence_and_two_call_epochs(storage_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainable that reports training then validation metrics per epoch, and whose large
    learning rates diverge: the study ends with its exact count, every stored curve is JSON,
    and Optuna's intermediate values hold the step that diverged."""
    monkeypatch.chdir(tmp_path)
    trainable = _module(tmp_path, """
        def fit(config, ctx):
            for epoch in range(1, ctx.epochs + 1):
                loss = float("nan") if config["lr"] > 0.05 and epoch == 2 else config["lr"] / epoch
                ctx.report(epoch, train_loss=config["lr"])
                ctx.report(epoch, val_loss=loss)
            return loss
    """)
    spec = small_spec(trials=10, epochs=3, trainable=trainable, dataset=None, params={"lr": LR},
                      fixed={}, objective={"metric": "val_loss", "direction": "minimize"})
    study = tuner.submit(spec, storage=storage_url)
    counts = study.counts()
    assert counts["COMPLETE"] + counts["FAIL"] == 10 and counts["RUNNING"] == counts["WAITING"] == 0
    diverged = study.trials(["FAIL"])
    assert diverged and all(t.reason == "diverged" for t in diverged)
    assert counts["COMPLETE"] > 0
    engine = open_storage(storage_url).engine
    with engine.connect() as conn:
        raw = conn.execute(sa.select(sa.cast(CurveRow.metrics, sa.Text))).scalars().all()
    assert raw and all(isinstance(_strict_json(m), dict) for m in raw)
    for t in study.trials(["COMPLETE"]):  # one point per epoch, both calls merged
        curve = study.curve(t.number)
        assert list(curve["epoch"]) == [1, 2, 3]
        assert {"train_loss", "val_loss"} <= set(curve.columns)
    plain = optuna.load_study(study_name=spec["study"], storage=storage_url)
    for t in plain.trials:
        if t.state == optuna.trial.TrialState.FAIL:
            assert sorted(t.intermediate_values) == [1, 2] and math.isnan(t.intermediate_values[2])
    failed = study.trials(["FAIL"])[0]
    assert study.curve(failed.number)["val_loss"].isna().tolist() == [False, True]


def _plain_optuna_beside(tmp_path: Path, url: str, name: str, queued: tuple[float, ...],
                         lr_range: tuple[float, float]) -> subprocess.Popen:
    """A plain Optuna process that waits for study ``name``, enqueues one trial per ``queued``
    lr, then runs ``study.optimize(n_trials=len(queued) + 10)`` on it (the queue first)."""
    plain = tmp_path / "plain.py"
    plain.write_text(textwrap.dedent(f"""
        import sys, time
        import optuna
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        url, name = sys.argv[1], sys.argv[2]
        while True:
            try:
                study = optuna.load_study(study_name=name, storage=url)
                break
            except KeyError:
                time.sleep(0.05)
        for lr in {queued!r}:
            study.enqueue_trial({{"lr": lr}})
        def objective(trial):
            time.sleep(0.05)
            return trial.suggest_float("lr", {lr_range[0]!r}, {lr_range[1]!r}, log=True)
        study.optimize(objective, n_trials={len(queued) + 10})
    """))
    return subprocess.Popen([sys.executable, str(plain), url, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_beside_plain_optuna(spec: dict, url: str, tmp_path: Path, queued: tuple[float, ...],
                             lr_range: tuple[float, float]) -> tuple[list[Any], list[Any]]:
    """Run ``spec`` while ``_plain_optuna_beside`` works on the same study, and check the
    contract both sides share: tuner's ``trials`` outcomes plus the plain process's, every
    number once, all COMPLETE, each queued configuration run once by whoever claimed it, and
    `tuner status` counting the other writer's trials apart. Returns Optuna's trials and
    tuner's own records."""
    from tuner.execution import run_study

    name, ours_n, theirs = spec["study"], spec["trials"], len(queued) + 10
    proc = _plain_optuna_beside(tmp_path, url, name, queued, lr_range)
    final = run_study(tuner.load_spec(spec), url)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert final["complete"] == ours_n
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert sorted(t.number for t in trials) == list(range(ours_n + theirs))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for lr in queued:
        assert [t.params["lr"] for t in trials].count(lr) == 1
    ours = [t for t in tuner.load_study(name, url).trials() if t.host is not None]  # by number
    assert len(ours) == ours_n
    summary = next(s for s in tuner.list_studies(url) if s.name == name)
    assert summary.other_writers == theirs and summary.to_dict()["other_writers"] == theirs
    return trials, ours


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_plain_optuna_process_beside_a_running_study(storage_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     sampler: str) -> None:
    """A plain Optuna process enqueues 3 trials and runs ``study.optimize(n_trials=10)`` on the
    study while tuner runs 40: 50 + 3 outcomes, every number once, Optuna sees them all, each
    enqueued configuration runs exactly once (whoever claims it), and tuner's budget counts only
    its own 40. Both samplers ask off the coordinator's lock, ahead of the workers (TPE's asks
    also read the other writer's trials)."""
    monkeypatch.chdir(tmp_path)
    trainable = _module(tmp_path, """
        import time

        def fit(config, ctx):
            time.sleep(0.15)
            return config["lr"]
    """)
    spec = small_spec(trials=40, epochs=1, trainable=trainable, dataset=None, params={"lr": LR},
                      fixed={}, objective={"metric": "val_loss", "direction": "minimize"},
                      sampler={"kind": sampler, "seed": 0})
    trials, ours = _run_beside_plain_optuna(spec, storage_url, tmp_path, (0.5, 0.25, 0.125),
                                            (1e-3, 1.0))
    study = tuner.load_study(spec["study"], storage_url)
    assert len(study.trials()) == 53 and study.counts()["COMPLETE"] == 53
    assert all(t.epochs_run is None for t in ours)


@pytest.mark.usefixtures("ray_session")
def test_plain_optuna_process_beside_a_packing_study(storage_url: str, tmp_path: Path) -> None:
    """The same contract while tuner trains its trials in packs (asked ahead, held in memory,
    created several at a time) of the built-in MLP: every number once, each queued
    configuration run once by whoever claims it, tuner's budget its own 24."""
    spec = small_spec(trials=24, epochs=1, params={"lr": {**LR, "high": 0.1}},
                      fixed={"optimizer": "sgd", "momentum": 0.0, "hidden_units": 16},
                      objective={"metric": "val_loss", "direction": "minimize"})
    spec["resources"] = {"workers": 2, "cpus_per_trial": 1, "pack": 4}
    trials, ours = _run_beside_plain_optuna(spec, storage_url, tmp_path, (0.05, 0.025, 0.0125),
                                            (1e-3, 0.1))
    packed = [t for t in trials if t.user_attrs.get("pack_size", 1) > 1]
    assert packed, "the study trained packs"
    assert all(t.epochs_run == 1 for t in ours)


def test_warm_start_waiting_trials_run_once_beside_plain_optuna(storage_url: str) -> None:
    """Queued (WAITING) trials are claimed in the database: when a plain Optuna worker takes
    one first, tuner moves on to the next, and the plain worker's ``tell`` succeeds."""
    spec = small_spec(trials=4, params={"lr": LR}, objective={"metric": "val_loss",
                                                              "direction": "minimize"})
    warm = [{"params": {"lr": lr}, "source": f"old#{i}"} for i, lr in enumerate((0.5, 0.25, 0.125))]
    c = open_coordinator(spec, storage_url, warm_start=warm, poll_s=0.2)
    plain = optuna.load_study(study_name=spec["study"], storage=storage_url)
    taken = plain.ask()  # pops the oldest queued trial first
    assert taken.params == {} and taken.number == 0
    a = c.next_trial("w0")
    assert a.params["lr"] == 0.25 and a.number == 1  # lr=0.5 was claimed by plain Optuna
    plain.tell(taken, taken.suggest_float("lr", 1e-3, 1.0, log=True))
    b = c.next_trial("w0", _result(a, 0.3))
    assert b.params["lr"] == 0.125
    deadline = time.monotonic() + 2.0
    while c.progress()["foreign"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.progress()["foreign"] == 1  # merged within 2 s, not counted in tuner's budget
    nxt = c.next_trial("w0", _result(b, 0.2))
    while nxt is not None:
        nxt = c.next_trial("w0", _result(nxt, 0.1))
    final = c.close()
    assert final["complete"] == 4
    trials = optuna.load_study(study_name=spec["study"], storage=storage_url).trials
    assert sorted(t.number for t in trials) == list(range(5))
    assert [t.params["lr"] for t in trials].count(0.5) == 1
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_second_driver_is_refused_and_a_dead_ones_lease_is_taken_over(storage_url: str) -> None:
    spec = small_spec(trials=3)
    c = open_coordinator(spec, storage_url)
    a = c.next_trial("w0")
    with pytest.raises(tuner.TunerError, match=r"is being run by pid \d+ on host") as e:
        open_coordinator(spec, storage_url, resume=True)
    assert e.value.exit_code == 2
    with pytest.raises(StudyExistsError, match="is being run by"):
        open_coordinator(spec, storage_url)
    # the driver "dies" (its pid no longer exists on this host): its lease is stale at once
    from tuner.storage import _lease

    with open_storage(storage_url).engine.begin() as conn:
        conn.execute(_lease.LeaseRow.__table__.update().values(pid=2**22 + 4321))
    r = open_coordinator(spec, storage_url, resume=True)
    assert r.progress()["requeued"] == 1
    nxt = r.next_trial("w0")
    assert nxt.params == a.params and nxt.number == 1
    while nxt is not None:
        nxt = r.next_trial("w0", _result(nxt, 0.5))
    assert r.close()["complete"] == 3
    c.close()
    assert _numbers(storage_url, spec["study"]) == list(range(4))
    first = tuner.load_study(spec["study"], storage_url).trial(a.number)
    assert first.state == "FAIL" and first.reason == "interrupted"


def test_two_submits_of_one_name_race_in_the_database(storage_url: str) -> None:
    spec = small_spec()
    storage = open_storage(storage_url, create=True)
    outcomes: list[Any] = []

    def submit() -> None:
        try:
            outcomes.append(begin_run(open_storage(storage_url, create=True), spec["study"], resume=False,
                                      spec_json=spec))
        except StudyExistsError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, StudyExistsError) for o in outcomes) == 1
    with storage.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM studies WHERE study_name = :n"),
                         {"n": spec["study"]}).scalar()
    assert n == 1


def test_a_row_that_cannot_be_written_fails_only_its_trial(storage_url: str) -> None:
    """A permanent error on one trial's rows: that trial is FAIL ``storage_error``, the study
    goes on and finishes its count."""
    spec = small_spec(trials=3)
    c = open_coordinator(spec, storage_url)
    engine = open_storage(storage_url).engine
    a = c.next_trial("w0")
    with engine.connect() as conn:
        study_id = conn.exec_driver_sql("SELECT study_id FROM studies WHERE study_name = "
                                        f"'{spec['study']}'").scalar_one()
    # A row the database refuses, whatever the backend; only this study's (the database is
    # shared by the session's other tests) and only while this test runs.
    when = f"NEW.study_id = {study_id} AND NEW.number = {a.number}"
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE INSERT ON tuner_curves WHEN {when} "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
        else:
            conn.exec_driver_sql(
                f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF {when} THEN "
                "RAISE EXCEPTION 'refused by test' USING ERRCODE = '23514'; END IF;"
                " RETURN NEW; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON tuner_curves "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()")
    try:
        b = c.next_trial("w0", _result(a, 0.5))
        while b is not None:
            b = c.next_trial("w0", _result(b, 0.4))
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse" if engine.dialect.name == "sqlite"
                                 else "DROP TRIGGER refuse ON tuner_curves")
            if engine.dialect.name != "sqlite":
                conn.exec_driver_sql("DROP FUNCTION refuse()")
    final = c.close()
    assert final["fatal"] is None and final["used"] == 3
    study = tuner.load_study(spec["study"], storage_url)
    bad = study.trial(a.number)
    assert bad.state == "FAIL" and bad.reason.startswith("storage_error") and "refused" in bad.reason
    assert study.counts()["COMPLETE"] == 2


@pytest.mark.postgres
def test_database_gone_past_the_bound_stops_the_study(pg_url: str) -> None:
    """The database refuses connections for longer than the retry bound: the study stops within
    the bound with one line, nothing is stored twice, and ``resume`` finishes exactly N."""
    from sqlalchemy.engine import make_url

    base = os.environ["TUNER_TEST_POSTGRES_URL"]
    db = f"tuner_gone_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
    url = make_url(base).set(database=db).render_as_string(hide_password=False)
    try:
        spec = small_spec(trials=8)
        c = open_coordinator(spec, url, retry_for_s=2.0)
        a = c.next_trial("w0")
        b = c.next_trial("w0", _result(a, 0.5))
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false')
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 f"WHERE datname = '{db}'")
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="unreachable for 2 s"):
            while True:  # workers keep asking; the study must stop, not train on unsaved
                b = c.next_trial("w0", _result(b, 0.4))
                if b is None:
                    raise StorageError(c.progress()["fatal"])
        assert time.monotonic() - t0 < 10
        assert c.progress()["fatal"] and c.progress()["done"]
        with pytest.raises(StorageError):
            c.close(timeout=5)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')
        from tuner.storage import _lease

        with open_storage(url).engine.begin() as conn:  # the stopped driver is gone
            conn.execute(_lease.LeaseRow.__table__.delete())
        r = open_coordinator(spec, url, resume=True)
        nxt = r.next_trial("w0")
        while nxt is not None:
            nxt = r.next_trial("w0", _result(nxt, 0.3))
        assert r.close()["used"] == 8
        study = tuner.load_study(spec["study"], url)
        assert study.counts()["COMPLETE"] == 8 and study.counts()["RUNNING"] == 0
        numbers = _numbers(url, spec["study"])
        assert numbers == list(range(len(numbers)))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 f"WHERE datname = '{db}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}"')
        admin.dispose()


@pytest.mark.usefixtures("ray_session")
def test_hung_trainable_times_out_and_its_worker_is_replaced(sqlite_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainable = _module(tmp_path, """
        import os, time

        def fit(config, ctx):
            if config["lr"] > 0.1:
                time.sleep(3600)  # hangs: only killing its process stops it
            return config["lr"]
    """)
    spec = small_spec(trials=8, epochs=1, trainable=trainable, dataset=None, params={"lr": LR},
                      fixed={}, trial_timeout_s=1.5,
                      objective={"metric": "val_loss", "direction": "minimize"})
    study = tuner.submit(spec, storage=sqlite_url)
    counts = study.counts()
    assert counts["COMPLETE"] + counts["FAIL"] == 8 and counts["RUNNING"] == 0
    timed_out = study.trials(["FAIL"])
    assert timed_out and all(t.reason == "timeout" for t in timed_out)
    assert all(t.params["lr"] > 0.1 for t in timed_out)
    with open_storage(sqlite_url).engine.connect() as conn:
        ran = dict(conn.execute(sa.text("SELECT number, worker FROM tuner_trials")).all())
    killed = {ran[t.number] for t in timed_out}
    for t in study.trials(["COMPLETE"]):  # a killed worker never ran another trial
        if any(t.datetime_start > h.datetime_start for h in timed_out if ran[h.number] == ran[t.number]):
            raise AssertionError(f"trial {t.number} ran on killed worker {ran[t.number]}")
    assert killed


@pytest.fixture(params=["UTC", "Asia/Tokyo"])
def zone(request: pytest.FixtureRequest) -> Any:
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_times_are_utc_in_any_time_zone(storage_url: str, zone: str) -> None:
    """Stored times are naive UTC, as Optuna 5's ORM writes them: tuner's API and plain Optuna
    agree, a trial finished by plain ``study.tell`` gets a non-negative duration."""
    def utc() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    spec = small_spec(trials=2, params={"lr": LR})
    c = open_coordinator(spec, storage_url)
    before = utc()
    a = c.next_trial("w0")
    a = c.next_trial("w0", _result(a, 0.5))
    plain = optuna.load_study(study_name=spec["study"], storage=storage_url)
    foreign = plain.ask()
    plain.tell(foreign, 0.9)
    c.next_trial("w0", _result(a, 0.4))
    c.close()
    after = utc()
    for t in tuner.load_study(spec["study"], storage_url).trials():
        assert before - dt.timedelta(seconds=1) <= t.datetime_start <= t.datetime_complete <= after
        assert t.duration_s is not None and t.duration_s >= 0
    for t in optuna.load_study(study_name=spec["study"], storage=storage_url).trials:
        assert t.duration is not None and t.duration.total_seconds() >= 0
        local = t.datetime_complete.astimezone(dt.timezone.utc).replace(tzinfo=None)
        assert before - dt.timedelta(seconds=1) <= local <= after
