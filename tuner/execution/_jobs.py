"""Detached studies as Ray jobs (``tuner submit --detach``), and stopping studies (``tuner cancel``).

Ray's job submission API runs the study's driver on the cluster, so the submitting laptop can go
away: the job's entrypoint is ``python -m tuner.execution._job_main``, the resolved spec travels in
the job's runtime environment and, when the study needs files from the submitting directory (a
user trainable, a dataset file), that directory travels as the job's ``working_dir``.

Credentials: a database URL that carries a password (in its user info or its query string,
``?password=``) is *not* put into the job (Ray shows a job's
runtime environment to anyone who can reach its dashboard); the job then uses the cluster's own
``$TUNER_STORAGE``, which deploy/ sets from a secret on every node.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuner._errors import SpecError, StudyNotFoundError, TunerError
from tuner._secrets import has_password as url_has_password
from tuner._text import error_line
from tuner.execution._control import job_of, request_cancel
from tuner.spec import StudySpec
from tuner.storage import EmptyStorageError, open_storage, redact, resolve_url

__all__ = [
    "study_status", "DetachedJob", "submit_detached", "cancel_study", "tuner_jobs", "job_logs",
           "jobs_address", "ENTRYPOINT"]

ENTRYPOINT = "python -m tuner.execution._job_main"
_EXCLUDES = [".git", ".venv", "venv", "__pycache__", "*.pyc", "*.db", "*.db-wal", "*.db-shm",
             "*.sqlite", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"]
_ACTIVE = ("PENDING", "RUNNING")
_LOCAL = ("127.0.0.1", "localhost", "::1")
_AGENT_WAIT_S = 60.0
"""How long a submission waits for the head's job agent to register (a head just started)."""
_STOP_GRACE_S = "60"  # SIGTERM -> SIGKILL wait: time for running trials to be marked and flushed


@dataclass(frozen=True)
class DetachedJob:
    """A submitted study: the Ray job id and the job API it was submitted to."""

    job_id: str
    study: str
    address: str
    storage_shipped: bool


def jobs_address(address: str | None) -> str | None:
    """The HTTP address of Ray's job API for a ``--address`` as users write it.

    ``ray://HOST:10001`` (Ray Client) becomes ``http://HOST:8265`` (the dashboard, which serves the
    job API); ``http(s)://`` is used as is; ``None``/``auto`` lets Ray find it (``$RAY_ADDRESS``,
    then a cluster started on this machine).
    """
    if address in (None, "", "auto"):
        return None
    if address.startswith("ray://"):
        return f"http://{urlparse(address).hostname}:8265"
    return address


def _client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    where = jobs_address(address)
    try:
        return JobSubmissionClient(where)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError
        raise TunerError(
            f"cannot reach Ray's job API at {where or 'the local cluster'}: {error_line(e)}; "
            "pass --address http://HEAD:8265 (the Ray dashboard port) or ray://HEAD:10001"
        ) from None


def submit_detached(spec: StudySpec, storage_url: str, address: str | None,
                    code_dir: str | None = None, *, resume: bool = False,
                    trials: int | None = None) -> DetachedJob:
    """Submit ``spec`` as a Ray job and return at once; the job runs the study to its count
    (``resume``: continues a stored study, to ``trials`` if given)."""
    from tuner.storage._runs import check_name

    url = resolve_url(storage_url)
    where = jobs_address(address)
    if url.startswith("sqlite") and where and urlparse(where).hostname not in _LOCAL:
        raise SpecError("--storage", f"a SQLite file on this machine is not reachable from the "
                        f"cluster at {where}; use a shared database (postgresql+psycopg://...)")
    client = _client(address)
    api = client.get_address()
    storage = open_storage(url, create=True)  # submitting creates the tables, as a run would
    try:
        check_name(storage, spec.study, resume=resume)
    finally:
        storage.engine.dispose()
    code = Path(code_dir or os.getcwd()).resolve()
    spec_json, needs_code = _portable(spec, code)
    job_id = f"tuner-{spec.study}-{uuid.uuid4().hex[:8]}"
    env = {"TUNER_JOB_SPEC": json.dumps(spec_json), "TUNER_JOB_ID": job_id,
           "TUNER_JOB_ADDRESS": api, "RAY_JOB_STOP_WAIT_TIME_S": _STOP_GRACE_S}
    if resume:
        env["TUNER_JOB_RESUME"] = "1"
    if trials is not None:
        env["TUNER_JOB_TRIALS"] = str(trials)
    has_password = url_has_password(url)  # user info or query (?password=): never shipped
    if not has_password:
        env["TUNER_STORAGE"] = url
    runtime_env: dict[str, Any] = {"env_vars": env}
    staging = tempfile.TemporaryDirectory(prefix="tuner-job-")
    if needs_code:
        runtime_env["working_dir"] = str(_package(code, job_id, Path(staging.name)))
    try:
        _submit(client, job_id, runtime_env, {"tuner_study": spec.study, "tuner_storage": redact(url)})
    finally:
        staging.cleanup()
    return DetachedJob(job_id, spec.study, api, storage_shipped=not has_password)


def _package(code: Path, job_id: str, into: Path) -> Path:
    """The code folder as a zip of its own, with the job id in it.

    Ray names an uploaded folder by its content hash and skips the upload when the cluster
    already holds that name; a package that is about to expire (Ray drops unused ones after
    10 minutes) is then gone before the job starts ("Failed to download runtime_env file
    package"). A package unique to each job is always uploaded whole, just before its job.
    """
    archive = into / f"{job_id}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(".tuner-job", job_id)  # at the root: Ray keeps a local zip's layout
        for root, dirs, files in os.walk(code):
            dirs[:] = sorted(d for d in dirs if not _excluded(d))
            for name in sorted(files):
                if not _excluded(name):
                    path = Path(root) / name
                    zf.write(path, path.relative_to(code).as_posix())
    return archive


def _excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _EXCLUDES)


def _submit(client: Any, job_id: str, runtime_env: dict[str, Any], metadata: dict[str, str]) -> None:
    deadline = time.monotonic() + _AGENT_WAIT_S
    while True:
        try:
            client.submit_job(entrypoint=ENTRYPOINT, submission_id=job_id, runtime_env=runtime_env,
                              metadata=metadata)
            return
        except Exception as e:  # noqa: BLE001 - Ray's errors here are plain RuntimeErrors
            # A head whose job agent has not (re)registered yet answers 500 "No available agent
            # to submit job, please try again later": transient by Ray's own words, so wait.
            if "No available agent" in str(e) and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise TunerError(f"Ray refused the job: {error_line(e)}") from None


def cancel_study(study: str, storage: str | None, address: str | None = None) -> list[str]:
    """Stop ``study`` wherever it runs; returns what was done, one line each.

    The cancel request goes into the database (a foreground ``tuner submit`` notices it within a
    second); a Ray job running the study is also stopped through Ray's job API, which sends its
    driver SIGTERM so running trials are marked ``cancelled`` and re-run on ``tuner resume``.
    """
    done: list[str] = []
    url = resolve_url(storage)
    study_id: int | None = None
    job = None
    try:
        st = open_storage(url)
    except EmptyStorageError:
        pass
    else:
        try:
            study_id = st.optuna.get_study_id_from_name(study)
        except KeyError:
            study_id = None
        if study_id is not None:
            request_cancel(st, study_id)
            done.append(f"cancel requested in {redact(st.url)}")
            job = job_of(st, study_id)
        st.engine.dispose()
    candidates: list[tuple[str, str | None]] = []
    if job is not None:
        candidates.append((job["id"], job.get("address") or address))
    elif address is not None or (study_id is None and os.environ.get("RAY_ADDRESS")):
        # Not started yet (PENDING): the study is not in the database, only in Ray's job table.
        candidates += [(j["job_id"], address) for j in tuner_jobs(address)
                       if j["study"] == study and j["status"] in _ACTIVE]
    for job_id, where in candidates:
        client = _client(where)
        if client.get_job_status(job_id) in _ACTIVE:
            client.stop_job(job_id)
            done.append(f"stopped Ray job {job_id}")
    if not done:
        where = (f" nor a running Ray job at {jobs_address(address) or 'the local cluster'}"
                 if address is not None or os.environ.get("RAY_ADDRESS") else
                 " (a detached study that has not started yet: pass --address)")
        raise StudyNotFoundError(f"study '{study}' is not in {redact(url)}{where}; "
                                 "`tuner status` lists the studies")
    return done


def study_status(storage: str | None, address: str | None = None) -> list[dict[str, Any]]:
    """``tuner status``: every stored study (``StudySummary.to_dict``), its state corrected by
    a cancel request, and its Ray job; with ``address``, also the detached studies that have
    not started yet (they are only in Ray's job table)."""
    import tuner
    from tuner.execution._control import control_by_study

    rows = [s.to_dict() for s in tuner.list_studies(storage)]
    control = control_by_study(open_storage(storage)) if rows else {}
    jobs = {}
    if address is not None:
        for j in reversed(tuner_jobs(address)):  # newest last: it wins
            jobs[j["study"]] = j
    for row in rows:
        c = control.get(row["name"], {})
        if c.get("cancel_requested") and row["state"] != "running":
            row["state"] = "cancelled"
        job = jobs.pop(row["name"], None)
        job_id = (job or {}).get("job_id") or c.get("job", {}).get("id")
        if job_id or address:
            row["job"] = job_id
            row["job_status"] = (job or {}).get("status")
    for j in jobs.values():  # submitted, not started yet (or failed before it could start)
        rows.append({"name": j["study"], "state": j["status"].lower(), "job": j["job_id"],
                     "job_status": j["status"], "message": j["message"]})
    return rows


def tuner_jobs(address: str | None) -> list[dict[str, Any]]:
    """The studies submitted to the cluster with ``--detach``, newest first."""
    client = _client(address)
    out = []
    for j in client.list_jobs():
        meta = j.metadata or {}
        if "tuner_study" not in meta:
            continue
        out.append({
            "job_id": j.submission_id, "study": meta["tuner_study"], "status": str(j.status.value),
            "storage": meta.get("tuner_storage"), "start_time": _ms(j.start_time),
            "end_time": _ms(j.end_time), "message": error_line(j.message),
        })
    return sorted(out, key=lambda r: r["start_time"] or "", reverse=True)


def job_logs(study: str, storage: str | None, address: str | None) -> str:
    """The driver log of the Ray job that runs (or ran) ``study``."""
    job_id, where = None, address
    url = resolve_url(storage)
    try:
        st = open_storage(url)
    except EmptyStorageError:
        st = None
    if st is not None:
        try:
            job = job_of(st, st.optuna.get_study_id_from_name(study))
            if job is not None:
                job_id, where = job["id"], job.get("address") or address
        except KeyError:
            pass
        finally:
            st.engine.dispose()
    if job_id is None and address is None and not os.environ.get("RAY_ADDRESS"):
        raise StudyNotFoundError(f"study '{study}' has no Ray job recorded in {redact(url)}; "
                                 "only `--detach` studies have job logs (or pass --address)")
    if job_id is None:
        matches = [j for j in tuner_jobs(address) if j["study"] == study]
        if not matches:
            raise StudyNotFoundError(f"no Ray job ran study '{study}'; only `--detach` studies have "
                                     "job logs")
        job_id = matches[0]["job_id"]
    return str(_client(where).get_job_logs(job_id))


def _portable(spec: StudySpec, code: Path) -> tuple[dict[str, Any], bool]:
    """The spec as the job sees it, and whether the submitting directory must travel with it.

    Dataset files under ``code`` become relative (they travel in ``working_dir``); other absolute
    paths must exist on the cluster (a shared filesystem), as the README says.
    """
    data = spec.to_json_dict()
    needs_code = not spec.trainable.startswith("builtin:")
    ds = data.get("dataset") or {}
    name = ds.get("name", "")
    if os.path.isabs(name):
        path = Path(name)
        if path.is_relative_to(code):
            ds["name"] = str(path.relative_to(code))
            needs_code = True
    return data, needs_code


def _ms(t: int | None) -> str | None:
    import datetime as dt

    return None if not t else dt.datetime.fromtimestamp(t / 1000, dt.timezone.utc).isoformat(
        timespec="seconds")
