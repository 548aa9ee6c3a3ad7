"""Study control records kept in the database: a cancel request and the Ray job running a study.

They are Optuna *study system attributes*, not rows of our own tables: the database is the one
place every party can reach (a foreground ``tuner submit``, a detached Ray job, ``tuner cancel``
on a laptop, the dashboard), and plain ``optuna.load_study`` still opens the study.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from tuner.storage import Storage
from tuner.storage._optuna import studies as _studies
from tuner.storage._optuna import study_system_attrs

__all__ = ["CANCEL_KEY", "JOB_KEY", "request_cancel", "clear_cancel", "cancel_requested",
           "record_job", "job_of", "control_by_study"]

CANCEL_KEY = "tuner:cancel_requested"
JOB_KEY = "tuner:job"
_attrs = study_system_attrs


def request_cancel(storage: Storage, study_id: int) -> None:
    """Ask whoever runs the study to stop: its coordinator polls this within about a second."""
    storage.optuna.set_study_system_attr(study_id, CANCEL_KEY, _now())


def clear_cancel(storage: Storage, study_id: int) -> None:
    """``resume`` after a cancel: the old request must not stop the new run."""
    if cancel_requested(storage, study_id):
        storage.optuna.set_study_system_attr(study_id, CANCEL_KEY, None)


def cancel_requested(storage: Storage, study_id: int) -> bool:
    return bool(storage.optuna.get_study_system_attrs(study_id).get(CANCEL_KEY))


def record_job(storage: Storage, study_id: int, job_id: str, address: str | None) -> None:
    """Remember which Ray job runs the study, so ``tuner cancel`` and ``status`` can find it."""
    storage.optuna.set_study_system_attr(
        study_id, JOB_KEY, {"id": job_id, "address": address, "started": _now()})


def job_of(storage: Storage, study_id: int) -> dict[str, Any] | None:
    job = storage.optuna.get_study_system_attrs(study_id).get(JOB_KEY)
    return job if isinstance(job, dict) else None


def control_by_study(storage: Storage) -> dict[str, dict[str, Any]]:
    """study name -> {"job": {...}, "cancel_requested": iso} in one query (for ``tuner status``)."""
    q = (sa.select(_studies.c.study_name, _attrs.c.key, _attrs.c.value_json)
         .join(_attrs, _attrs.c.study_id == _studies.c.study_id)
         .where(_attrs.c.key.in_([CANCEL_KEY, JOB_KEY])))
    out: dict[str, dict[str, Any]] = {}
    with storage.engine.connect() as conn:
        for name, key, value in conn.execute(q):
            decoded = json.loads(value)
            if decoded:
                out.setdefault(name, {})["job" if key == JOB_KEY else "cancel_requested"] = decoded
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
