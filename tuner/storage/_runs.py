"""Starting and ending a run of a study: creation, ownership, release.

A run starts on the driver, before Ray or any actor: the Optuna study, its direction, tuner's
``tuner_studies`` row and the run's lease are written in **one transaction**, so a study either
exists whole or not at all, and two ``submit``s of one name race on the database's unique
constraint, not in Python. ``resume`` takes the lease of an existing study (a stale one is taken
over); a live one refuses with who holds it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tuner._errors import StudyBusyError, StudyExistsError, StudyNotFoundError
from tuner.storage import _lease, _optuna
from tuner.storage._engine import Storage
from tuner.storage._tables import StudyRow

__all__ = ["Run", "begin_run", "check_name", "end_run", "renew_run"]


@dataclass(frozen=True)
class Run:
    """The study a driver runs and the lease it holds on it."""

    study_id: int
    owner: str


def begin_run(storage: Storage, name: str, *, resume: bool, direction: str = "minimize",
              spec_json: dict[str, Any] | None = None, version: str = "0+unknown") -> Run:
    """Create the study (``resume=False``) or take over an existing one, with its lease."""
    me = _lease.new_holder()
    for attempt in range(2):  # a lost race on the lease's first insert is retried once
        try:
            with storage.engine.begin() as conn:
                if not resume:
                    study_id = _optuna.insert_study(conn, name, direction)
                    conn.execute(sa.insert(StudyRow).values(
                        study_id=study_id, study_name=name, spec_json=json.dumps(spec_json or {}),
                        tuner_version=version, created_at=_optuna.utcnow()))
                else:
                    study_id = _existing(conn, name)
                holder = _lease.acquire(conn, study_id, me)
                if holder is not None:
                    raise StudyBusyError(_busy(name, holder))
                return Run(study_id, me.owner)
        except IntegrityError:
            if not resume:
                raise StudyExistsError(_exists(storage, name)) from None
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def check_name(storage: Storage, name: str, *, resume: bool) -> None:
    """Refuse early what ``begin_run`` would refuse, without writing anything.

    A detached study starts its run on the cluster, minutes later; this lets ``--detach`` fail at
    the prompt instead (a new name that exists, a resume of a missing or live study). The run
    itself still decides in one transaction, so a race between this check and it is safe.
    """
    with storage.engine.connect() as conn:
        if not resume:
            exists = conn.execute(sa.select(_optuna.studies.c.study_id)
                                  .where(_optuna.studies.c.study_name == name)).scalar()
            if exists is not None:
                raise StudyExistsError(_exists(storage, name))
            return
        holder = _lease.holder_of(conn, _existing(conn, name))
    if holder is not None and not holder.stale(_optuna.utcnow()):
        raise StudyBusyError(_busy(name, holder))


def renew_run(storage: Storage, run: Run) -> bool:
    """Heartbeat; False when another driver took the study over."""
    with storage.engine.begin() as conn:
        return _lease.renew(conn, run.study_id, run.owner)


def end_run(storage: Storage, run: Run) -> None:
    """Give the lease back (a no-op if it was taken over meanwhile)."""
    with storage.engine.begin() as conn:
        _lease.release(conn, run.study_id, run.owner)


def _existing(conn: sa.Connection, name: str) -> int:
    study_id = conn.execute(sa.select(_optuna.studies.c.study_id)
                            .where(_optuna.studies.c.study_name == name)).scalar()
    if study_id is None:
        raise StudyNotFoundError(f"study '{name}' not found; `tuner status` lists the studies")
    if conn.execute(sa.select(StudyRow.study_id).where(StudyRow.study_id == study_id)).scalar() is None:
        raise StudyNotFoundError(f"study '{name}' was not created by tuner; it has no spec to resume")
    return int(study_id)


def _busy(name: str, holder: _lease.Holder) -> str:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return (f"study '{name}' is being run by {holder.describe(now)}; wait for it to finish, "
            f"stop it with `tuner cancel {name}`, or resume it once that driver is gone")


def _exists(storage: Storage, name: str) -> str:
    with storage.engine.connect() as conn:
        study_id = conn.execute(sa.select(_optuna.studies.c.study_id)
                                .where(_optuna.studies.c.study_name == name)).scalar()
        holder = None if study_id is None else _lease.holder_of(conn, int(study_id))
    running = ""
    if holder is not None and not holder.stale(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)):
        running = f" and is being run by pid {holder.pid} on host {holder.host}"
    return (f"study '{name}' already exists in this storage{running}; continue it with "
            f"`tuner resume {name}` or pick a new name with --name")
