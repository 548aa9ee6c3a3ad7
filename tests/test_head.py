"""`tuner up` / `tuner down`: a local Ray head with warm workers that later submits join.

These run the real CLI in subprocesses against a real head (its own Ray, beside the test
session's), as a user runs it from a shell.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import SPACES
from tuner.execution import _head
from tuner.execution._head import HeadInfo, WarmPool, read_head


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["TUNER_STATE_DIR"] = str(state)
    return env


def _tuner(env: dict[str, str], *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _counts(line: str) -> dict[str, int]:
    return {k: int(v) for v, k in re.findall(r"(\d+) (warm workers idle|studies running|"
                                               r"workers started|reused)", line)}


@pytest.fixture
def head_env(tmp_path: Path):
    env = _env(tmp_path / "state")
    yield env
    _tuner(env, "down", cwd=tmp_path, timeout=120)


def test_second_submit_joins_the_head_and_reuses_its_workers(head_env, tmp_path: Path) -> None:
    up = _tuner(head_env, "up", "--idle-minutes", "10", cwd=tmp_path, timeout=180)
    assert up.returncode == 0, up.stderr
    assert "tuner head up" in up.stdout
    info = json.loads((tmp_path / "state" / "head.json").read_text())
    url = f"sqlite:///{tmp_path / 'h.db'}"
    for name in ("first", "second"):
        done = _tuner(head_env, "submit", str(SPACES / "quickstart.yaml"), "--trials", "4",
                      "--name", name, "--storage", url, "--quiet", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    again = _tuner(head_env, "up", cwd=tmp_path)
    assert again.returncode == 0 and "already up" in again.stdout
    # Two workers were started for the first study; the second study reused both, and nothing
    # else ran on the head: both studies joined it instead of starting a Ray of their own.
    assert _counts(again.stdout) == {"warm workers idle": 2, "studies running": 0,
                                     "workers started": 2, "reused": 2}
    for name in ("first", "second"):
        trials = optuna.load_study(study_name=name, storage=url).trials
        assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]

    down = _tuner(head_env, "down", cwd=tmp_path, timeout=120)
    assert down.returncode == 0 and f"pid {info['pid']}" in down.stdout
    assert read_head_in(tmp_path / "state") is None
    assert not _alive(info["pid"])
    assert _tuner(head_env, "down", cwd=tmp_path).stdout.strip() == "no tuner head is up"


_PLAIN_RAY_JOB = """
import socket, sys, time
import ray
from ray.job_submission import JobSubmissionClient
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port)
client = JobSubmissionClient(f"http://127.0.0.1:{port}")
job = client.submit_job(entrypoint="echo from-the-job")
deadline = time.monotonic() + 120
while str(client.get_job_status(job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
    assert time.monotonic() < deadline, "the job did not end"
    time.sleep(0.5)
print(client.get_job_status(job))
print(client.get_job_logs(job))
"""


def test_a_ray_the_user_starts_beside_the_head_can_take_jobs(head_env, tmp_path: Path) -> None:
    """Ray's dashboard agent binds port 52365 by default, and a second cluster on the machine
    whose agent cannot bind it refuses every job ("No available agent to submit job"). The head
    lives for half an hour: it must leave that port to the Ray the user starts meanwhile."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 52365))
        except OSError:
            pytest.skip("port 52365 (Ray's dashboard agent) is taken by another process already")
    up = _tuner(head_env, "up", "--idle-minutes", "10", cwd=tmp_path, timeout=180)
    assert up.returncode == 0, up.stderr
    plain = subprocess.run([sys.executable, "-c", _PLAIN_RAY_JOB], env=head_env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    status, logs = plain.stdout.split("\n", 1)
    assert status == "SUCCEEDED" and "from-the-job" in logs.splitlines()


def test_the_head_stops_itself_when_idle(head_env, tmp_path: Path) -> None:
    up = _tuner(head_env, "up", "--idle-minutes", "0.05", cwd=tmp_path, timeout=180)
    assert up.returncode == 0, up.stderr
    pid = json.loads((tmp_path / "state" / "head.json").read_text())["pid"]
    deadline = time.monotonic() + 90
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(pid)
    assert not (tmp_path / "state" / "head.json").exists()
    assert "idle for 3 s: stopping" in (tmp_path / "state" / "head.log").read_text()


def test_a_stale_state_file_is_not_a_head(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = HeadInfo(pid=dead.pid, address="127.0.0.1:1", prefix=sys.prefix, started=0.0,
                     idle_s=1.0, log="")
    (tmp_path / "head.json").write_text(json.dumps(stale.__dict__))
    assert read_head() is None
    # a live process that is not a head (this test's own) is not one either
    (tmp_path / "head.json").write_text(json.dumps({**stale.__dict__, "pid": os.getpid()}))
    assert read_head() is None
    (tmp_path / "head.json").write_text("{broken")
    assert read_head() is None


def test_a_dead_drivers_workers_are_taken_back(ray_session, monkeypatch) -> None:
    """A driver killed mid-study stops renewing its lease; the pool kills its workers (they
    hold CPUs and may be training for nobody) and counts itself idle again."""
    import ray

    pool = WarmPool()
    try:
        shape = (1, 0, os.getcwd())
        (worker,) = pool.take("driver-a", 1, shape, (1, False, os.getcwd()))
        ray.get(worker.__ray_ready__.remote(), timeout=120)  # a live worker, held by driver-a
        assert pool.idle_for() == 0.0 and pool.stats()["studies"] == 1
        monkeypatch.setattr(_head, "LEASE_S", 0.3)
        pool.renew("driver-a")  # its last renewal; then driver-a is SIGKILLed
        time.sleep(0.6)
        assert pool.idle_for() >= 0.0 and pool.stats()["studies"] == 0
        deadline = time.monotonic() + 60
        with pytest.raises(ray.exceptions.RayActorError):
            while time.monotonic() < deadline:  # a kill takes effect asynchronously
                ray.get(worker.__ray_ready__.remote(), timeout=60)
                time.sleep(0.2)
    finally:
        WarmPool._kill([pool._spare])


def read_head_in(state: Path) -> HeadInfo | None:
    os.environ["TUNER_STATE_DIR"], old = str(state), os.environ["TUNER_STATE_DIR"]
    try:
        return read_head()
    finally:
        os.environ["TUNER_STATE_DIR"] = old


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child would be one; the head is not our child) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
