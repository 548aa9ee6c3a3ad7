"""Detached studies (Ray job submission), `tuner status` with jobs, `tuner cancel`, `tuner logs`.

The session's local Ray runs its dashboard, whose job API is the same one a cluster's head node
serves: these tests submit real jobs to it and the job drivers run real studies.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from conftest import assert_stopped_trials_rerun_first, small_spec, wait_until
from typer.testing import CliRunner

import tuner
from tuner.cli import app
from tuner.execution._jobs import jobs_address

pytestmark = pytest.mark.usefixtures("ray_session")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _free_cpus() -> None:
    """Workers this process keeps warm between studies hold the session's CPUs; a job's driver
    is another process and would wait for them (up to the pool's idle timeout)."""
    from tuner.execution import release_workers

    release_workers()


def _wait(what: str, cond: Callable[[], Any], timeout: float = 300.0) -> Any:
    return wait_until(what, cond, timeout, ignore=(tuner.StudyNotFoundError,))


def _job_status(address: str, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(address).get_job_status(job_id).value)


def test_jobs_address_forms() -> None:
    assert jobs_address(None) is None and jobs_address("auto") is None
    assert jobs_address("ray://head.example:10001") == "http://head.example:8265"
    assert jobs_address("http://10.0.0.5:8265") == "http://10.0.0.5:8265"


def test_detach_status_cancel_logs_resume(ray_session: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    name = f"det-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_spec(name, trials=500, epochs=3)))

    started = time.monotonic()
    result = runner.invoke(app, ["submit", str(path), "--detach", "--storage", url,
                                 "--address", ray_session])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30  # returns once Ray accepted the job, not at the end
    job_id = result.stdout.strip()
    assert job_id.startswith(f"tuner-{name}-")
    assert "tuner cancel" in result.stderr

    _wait("2 complete trials", lambda: tuner.load_study(name, url).counts()["COMPLETE"] >= 2)
    status = runner.invoke(app, ["status", "--storage", url, "--address", ray_session,
                                 "--format", "json"])
    assert status.exit_code == 0, status.output
    row = next(r for r in json.loads(status.stdout) if r["name"] == name)
    assert row["state"] == "running" and row["job"] == job_id and row["job_status"] == "RUNNING"

    cancel = runner.invoke(app, ["cancel", name, "--storage", url])
    assert cancel.exit_code == 0, cancel.output
    assert f"stopped Ray job {job_id}" in cancel.stderr
    _wait("the job to stop", lambda: _job_status(ray_session, job_id) in ("STOPPED", "SUCCEEDED"),
          timeout=120)
    study = tuner.load_study(name, url)
    counts = study.counts()
    assert counts["RUNNING"] == 0 and counts["COMPLETE"] < 500
    stopped = [t for t in study.trials(["FAIL"]) if t.reason in ("cancelled", "interrupted")]
    assert stopped, counts

    after = runner.invoke(app, ["status", "--storage", url, "--format", "json"])
    assert next(r for r in json.loads(after.stdout) if r["name"] == name)["state"] == "cancelled"

    logs = runner.invoke(app, ["logs", name, "--storage", url])
    assert logs.exit_code == 0 and f"study '{name}'" in logs.stdout

    done = counts["COMPLETE"] + counts["PRUNED"]

    def resume() -> None:
        final = tuner.resume(name, storage=url, trials=done + 2).counts()
        assert final["COMPLETE"] + final["PRUNED"] == done + 2 and final["RUNNING"] == 0

    assert_stopped_trials_rerun_first(url, name, stopped, resume, outcomes=2)


def test_detach_ships_the_user_trainable(ray_session: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The submitting directory travels as the job's working_dir: a module that exists only
    there is importable by the job's workers, and a dataset file beside it is found."""
    pkg = tmp_path / f"shipped_{uuid.uuid4().hex[:6]}"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text(textwrap.dedent("""
        import numpy as np

        def fit(config, ctx):
            data = np.load("data/points.npz")["y"]
            loss = float(((data - config["x"]) ** 2).mean())
            for epoch in range(1, ctx.epochs + 1):
                ctx.report(epoch, val_loss=loss)
            return {"val_loss": loss}
    """))
    import numpy as np

    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "points.npz", y=np.array([0.25, 0.35]))
    monkeypatch.chdir(tmp_path)
    name = f"ship-{uuid.uuid4().hex[:6]}"
    spec = {"study": name, "trainable": f"{pkg.name}.train:fit",
            "objective": {"metric": "val_loss", "direction": "minimize"},
            "sampler": {"kind": "random", "seed": 3}, "trials": 6, "epochs": 2,
            "resources": {"workers": 2}, "params": {"x": {"type": "float", "low": -1, "high": 1}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path / 'ship.db'}"
    result = runner.invoke(app, ["submit", "s.yaml", "--detach", "--storage", url,
                                 "--address", ray_session])
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    try:
        final = _wait("the job to finish", lambda: (s := _job_status(ray_session, job_id))
                      in ("SUCCEEDED", "FAILED") and s)
    finally:
        log = runner.invoke(app, ["logs", name, "--storage", url, "--address", ray_session]).stdout
        print(_job_status(ray_session, job_id), log)
    assert final == "SUCCEEDED", log
    study = tuner.load_study(name, url)
    assert study.counts()["COMPLETE"] == 6
    best = study.best_trial
    assert best.value == pytest.approx(((0.25 - best.params["x"]) ** 2 + (0.35 - best.params["x"]) ** 2) / 2)


def test_cancel_a_foreground_study(ray_session: str, sqlite_url: str) -> None:
    """No Ray job: the request goes through the database and the driver stops within seconds."""
    spec = small_spec(trials=500, epochs=3)
    name = spec["study"]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tuner.submit(spec, storage=sqlite_url)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    _wait("2 complete trials", lambda: tuner.load_study(name, sqlite_url).counts()["COMPLETE"] >= 2)
    asked = time.monotonic()
    result = runner.invoke(app, ["cancel", name, "--storage", sqlite_url])
    assert result.exit_code == 0 and "cancel requested" in result.stderr
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert time.monotonic() - asked < 60
    assert len(errors) == 1 and isinstance(errors[0], tuner.StudyCancelled), errors
    assert f"tuner resume {name}" in str(errors[0])
    counts = tuner.load_study(name, sqlite_url).counts()
    assert counts["RUNNING"] == 0 and counts["COMPLETE"] < 500

    resumed = tuner.resume(name, storage=sqlite_url, trials=counts["COMPLETE"] + 1)
    assert resumed.counts()["COMPLETE"] == counts["COMPLETE"] + 1  # the old request is cleared


def test_detach_refuses_sqlite_for_a_remote_cluster(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_spec()))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    remote = runner.invoke(app, ["submit", str(path), "--detach", "--storage", url,
                                 "--address", "ray://head.example:10001"])
    assert remote.exit_code == 2 and "Traceback" not in remote.output
    assert remote.stderr.startswith("error: --storage: a SQLite file") and "postgresql" in remote.stderr
    unreachable = runner.invoke(app, ["submit", str(path), "--detach", "--storage", url,
                                      "--address", "http://127.0.0.1:9"])
    assert unreachable.exit_code == 1 and "Traceback" not in unreachable.output
    assert "cannot reach Ray's job API at http://127.0.0.1:9" in unreachable.stderr


def test_cancel_unknown_study_is_exit_2(sqlite_url: str, ray_session: str) -> None:
    result = runner.invoke(app, ["cancel", "nope", "--storage", sqlite_url, "--address", ray_session])
    assert result.exit_code == 2 and "nor a running Ray job at http" in result.stderr
    local = runner.invoke(app, ["cancel", "nope", "--storage", sqlite_url])
    assert local.exit_code == 2 and "pass --address" in local.stderr


def test_each_job_ships_a_package_of_its_own(tmp_path: Path) -> None:
    """Ray skips uploading a folder whose content hash the cluster holds, even when that package
    is about to expire; each job's zip carries its id, so it is new to the cluster and uploaded
    whole. Databases, caches and VCS folders stay behind."""
    import zipfile

    from tuner.execution._jobs import _package

    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "train.py").write_text("def fit(config, ctx):\n    return 0.0\n")
    (code / "tuner.db").write_text("not shipped")
    (code / ".git").mkdir()
    (code / ".git" / "HEAD").write_text("not shipped")
    (code / "pkg" / "__pycache__").mkdir()
    (code / "pkg" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"not shipped")
    zips = []
    for job_id in ("tuner-s-aaaa", "tuner-s-bbbb"):
        out = tmp_path / job_id
        out.mkdir()
        zips.append(_package(code, job_id, out))
    first, second = (zipfile.ZipFile(z) for z in zips)
    assert sorted(first.namelist()) == [".tuner-job", "pkg/train.py"]
    assert first.read(".tuner-job") != second.read(".tuner-job")
    assert zips[0].read_bytes() != zips[1].read_bytes()  # so their content hashes differ
