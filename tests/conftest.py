"""Shared fixtures: one local Ray per test session, per-test SQLite files, a private PostgreSQL
database per test session (the server is shared), and pinned torch threads."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Prepared data sets go to a directory of this run (workers started by Ray inherit it), not to
# the home of whoever runs the tests.
os.environ.setdefault("TUNER_CACHE_DIR", tempfile.mkdtemp(prefix="tuner-test-cache-"))
# A head the developer started with `tuner up` is not joined by the studies tests run.
os.environ["TUNER_STATE_DIR"] = tempfile.mkdtemp(prefix="tuner-test-state-")

REPO = Path(__file__).resolve().parents[1]
SPACES = REPO / "search_spaces"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """One local Ray for the whole run (starting Ray costs seconds), with its dashboard on a
    private port: the job API there is what ``tuner submit --detach`` talks to. Yields that
    address (``http://127.0.0.1:PORT``)."""
    import logging
    import socket

    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if ray.is_initialized():  # a test started Ray without its dashboard: start it over, once
        from tuner.execution import release_workers

        release_workers()
        ray.shutdown()
    from tuner.execution._local_ray import init_local

    # Its agent on a free port too, as tuner's own Rays: a Ray some test (or the developer) starts
    # beside it keeps Ray's default agent port, and with it a working job API.
    ctx = init_local(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                     logging_level=logging.WARNING)
    yield f"http://{ctx.dashboard_url}"
    ray.shutdown()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tuner.db'}"


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str]:
    base = os.environ.get("TUNER_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TUNER_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"tuner_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        import gc

        gc.collect()
        with admin.connect() as conn:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
                "AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def pg_url(_pg_database: str) -> str:
    """A private database on the shared server; studies get unique names per test."""
    return _pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Contract tests run over both storages."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuner.db'}"
    return request.getfixturevalue("pg_url")


def open_coordinator(spec: dict, url: str, *, resume: bool = False, **kw: object) -> object:
    """What the driver does, without Ray: create (or take over) the study with its lease, then
    start a coordinator on it (``close()`` gives the lease back)."""
    from tuner.execution import Coordinator
    from tuner.storage import open_storage
    from tuner.storage._runs import begin_run

    run = begin_run(open_storage(url, create=True), spec["study"], resume=resume,
                    direction=spec.get("objective", {}).get("direction", "minimize"),
                    spec_json=spec)
    from tuner.spec import parse_spec

    return Coordinator(parse_spec(spec), url, run=run, resume=resume, **kw)


def assert_stopped_trials_rerun_first(url: str, name: str, stopped: list[Any],
                                      rerun: Callable[[], Any], outcomes: int) -> None:
    """The contract of a stop (cancel, SIGTERM) and a resume: every stopped trial's params are
    queued again exactly once; ``rerun()`` (a resume asking for ``outcomes`` more outcomes)
    runs the queue first; whatever it had no budget for stays queued. With packing a worker
    may hold several trials at the stop, more than a short resume asks for."""
    import optuna
    from optuna.trial import TrialState

    def params(*states: TrialState) -> list[tuple]:
        trials = optuna.load_study(study_name=name, storage=url).get_trials(states=states)
        # a queued trial holds its params as Optuna's enqueue_trial does, in "fixed_params"
        return sorted(tuple(sorted((t.params or t.system_attrs["fixed_params"]).items()))
                      for t in trials)

    queued = params(TrialState.WAITING)
    assert queued == sorted(tuple(sorted(t.params.items())) for t in stopped)
    rerun()
    assert params(TrialState.RUNNING) == []
    still, ran = params(TrialState.WAITING), params(TrialState.COMPLETE, TrialState.PRUNED)
    assert len(still) == max(0, len(queued) - outcomes) and set(still) <= set(queued)
    assert sum(p in ran for p in set(queued) - set(still)) == min(outcomes, len(queued))


def wait_until(what: str, cond: Callable[[], Any], timeout: float = 300.0, every: float = 0.5,
               ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll ``cond`` until it returns something true (returned), failing the test after
    ``timeout`` seconds with ``what`` in the message; exceptions in ``ignore`` count as false.
    A synchronisation point, not a timing assertion: the timeout only ends a hung test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except ignore:
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def small_spec(name: str | None = None, **over: object) -> dict:
    """A tiny but real digits study: trains in well under a second per trial."""
    spec: dict = {
        "study": name or f"t-{uuid.uuid4().hex[:8]}",
        "trainable": "builtin:mlp",
        "dataset": {"name": "digits"},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": {"kind": "random", "seed": 0},
        "trials": 6,
        "epochs": 2,
        "resources": {"workers": 2, "cpus_per_trial": 1},
        "params": {
            "lr": {"type": "float", "low": 1e-3, "high": 0.3, "scale": "log"},
            "batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"},
            "layers": {"type": "int", "low": 1, "high": 2},
        },
        "fixed": {"optimizer": "adam", "hidden_units": 32},
    }
    for key, value in over.items():
        spec[key] = value
    return spec


@pytest.fixture(scope="session")
def dashboard_study(ray_session: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(storage URL, study name)`` of one real coarse-to-fine run, shared by the dashboard
    tests (AppTest and browser): log lr up to 1e3 so some SGD trials diverge (FAIL, reason
    ``diverged``), momentum on the one_minus_log scale, a pow2 batch size, two stages."""
    import tuner

    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'tuner.db'}"
    spec = small_spec(
        "dash-c2f", trials=10, sampler={"kind": "coarse-to-fine", "stages": 2, "top_k": 2, "seed": 0},
        params={
            "lr": {"type": "float", "low": 1e-3, "high": 1e3, "scale": "log"},
            "momentum": {"type": "float", "low": 0.5, "high": 0.99, "scale": "one_minus_log"},
            "batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"},
            "layers": {"type": "int", "low": 1, "high": 2},
        },
        fixed={"optimizer": "sgd", "hidden_units": 32})
    tuner.submit(spec, storage=url)
    return url, spec["study"]
