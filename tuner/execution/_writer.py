"""Write-behind: the coordinator decides in memory, this thread persists in order.

Optuna's RDB storage API costs one transaction per call: a finished trial with 10 epochs took ~15
of them (~70 ms on SQLite, more on PostgreSQL, measured here). So the writer writes rows of
Optuna's own schema (created and migrated by Optuna's ``RDBStorage``; mirrored and checked in
``tuner.storage._queries``) with SQLAlchemy Core: a new trial is one INSERT (plus its params), an
outcome — intermediate values, user attributes, value, state, tuner's own rows — one more, and
everything that queued up while a transaction ran is committed together (group commit). Trial
numbers are the coordinator's, which follow Optuna's rule (creation order within the study).
One thread means the database sees one writer per study (SQLite never reports "database is
locked"), and a dropped connection is retried with backoff instead of failing the study.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from optuna.distributions import distribution_to_json
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from tuner._errors import StorageError
from tuner.storage import CurveRow, Storage, TrialRow
from tuner.storage import _queries as q

__all__ = ["WriteBehind"]

_log = logging.getLogger(__name__)
_RETRYABLE = (OperationalError, InterfaceError, StorageInternalError)  # connection trouble only
_GROUP = 128  # outcomes per transaction at most


@dataclass(frozen=True)
class _Outcome:
    frozen: FrozenTrial
    reason: str | None
    host: str | None
    device: str | None
    worker: str | None
    curve: list[dict[str, float]]


class WriteBehind:
    """Queue of storage writes for one study, applied in order by a daemon thread.

    Args:
        storage: the open storage.
        study_id: Optuna's id of the study in that storage.
        retry_for_s: how long one write is retried (with exponential backoff) before giving up.
    """

    def __init__(self, storage: Storage, study_id: int, retry_for_s: float = 300.0) -> None:
        self._storage = storage
        self._study_id = study_id
        self._retry_for_s = retry_for_s
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._trial_ids: dict[int, int] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tuner-write-behind", daemon=True)
        self._thread.start()

    # --- what the coordinator calls (never blocks on the database) -------------------------
    def known(self, number: int, trial_id: int) -> None:
        """Register a trial that already exists in storage (resume)."""
        self._trial_ids[number] = trial_id

    def create(self, frozen: FrozenTrial) -> None:
        """Persist a new trial (WAITING or RUNNING, with its params)."""
        self._queue.put(("create", frozen))

    def start(self, frozen: FrozenTrial) -> None:
        """A queued (WAITING) trial was picked up: mark it RUNNING and store its params."""
        self._queue.put(("start", frozen))

    def finish(self, frozen: FrozenTrial, *, reason: str | None, host: str | None,
               device: str | None, worker: str | None, curve: list[dict[str, float]]) -> None:
        """Persist the outcome: intermediate values, attributes, state and value, curve rows."""
        self._queue.put(("finish", _Outcome(frozen, reason, host, device, worker, curve)))

    def call(self, fn: Any) -> None:
        """Run ``fn()`` on the writer thread, in order with the other writes."""
        self._queue.put(("call", fn))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued write is applied; re-raise a write that could not be."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks and self._thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                raise StorageError(f"{self._queue.unfinished_tasks} writes still pending after {timeout}s")
            time.sleep(0.005)
        if self._error is not None:
            raise StorageError(f"a write to the study failed: {self._error}") from self._error

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=10)

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    # --- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        carry: tuple[str, Any] | None = None
        while True:
            op = carry if carry is not None else self._queue.get()
            carry = None
            if op is None:
                self._queue.task_done()
                return
            batch = [op]
            if op[0] != "call":  # group commit: everything that queued up meanwhile, in order
                while len(batch) < _GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None or nxt[0] == "call":
                        carry = nxt
                        if nxt is None:  # keep the sentinel's task for the next turn
                            carry = ("stop", None)
                        break
                    batch.append(nxt)
            try:
                if self._error is None:
                    self._with_retry(batch)
            except BaseException as e:  # noqa: BLE001 - surfaced by flush(), never swallowed
                _log.error("tuner write-behind failed: %s", e)
                self._error = e
            finally:
                for _ in batch:
                    self._queue.task_done()
            if carry is not None and carry[0] == "stop":
                self._queue.task_done()
                return

    def _with_retry(self, batch: list[tuple[str, Any]]) -> None:
        delay, deadline = 0.05, time.monotonic() + self._retry_for_s
        while True:
            ids = dict(self._trial_ids)
            try:
                self._apply(batch)
                return
            except _RETRYABLE as e:
                self._trial_ids = ids  # the transaction rolled back: so do the new ids
                if time.monotonic() + delay > deadline:
                    raise
                _log.warning("storage write failed (%s); retrying in %.1fs", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _apply(self, batch: list[tuple[str, Any]]) -> None:
        if batch[0][0] == "call":
            batch[0][1]()
            return
        with self._storage.engine.begin() as conn:
            for kind, payload in batch:
                if kind == "create":
                    self._create(conn, payload)
                elif kind == "start":
                    self._start(conn, payload)
                else:
                    self._finish(conn, payload)

    def _create(self, conn: Connection, t: FrozenTrial) -> None:
        """Insert a new trial with the coordinator's number (equal to Optuna's count rule)."""
        trial_id = int(conn.execute(sa.insert(q.optuna_trials).values(
            number=t.number, study_id=self._study_id, state=t.state,
            datetime_start=t.datetime_start, datetime_complete=None,
        ).returning(q.optuna_trials.c.trial_id)).scalar_one())
        self._trial_ids[t.number] = trial_id
        self._insert_params(conn, trial_id, t)
        if t.system_attrs:
            conn.execute(sa.insert(q.optuna_system_attrs), [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                for k, v in t.system_attrs.items()])

    def _start(self, conn: Connection, t: FrozenTrial) -> None:
        """A queued (WAITING) trial was picked up: RUNNING, with its params and start time."""
        trial_id = self._trial_ids[t.number]
        conn.execute(sa.update(q.optuna_trials).where(q.optuna_trials.c.trial_id == trial_id)
                     .values(state=TrialState.RUNNING, datetime_start=t.datetime_start))
        conn.execute(sa.delete(q.optuna_params).where(q.optuna_params.c.trial_id == trial_id))
        self._insert_params(conn, trial_id, t)

    @staticmethod
    def _insert_params(conn: Connection, trial_id: int, t: FrozenTrial) -> None:
        if t.params:
            conn.execute(sa.insert(q.optuna_params), [
                {"trial_id": trial_id, "param_name": name,
                 "param_value": t.distributions[name].to_internal_repr(value),
                 "distribution_json": distribution_to_json(t.distributions[name])}
                for name, value in t.params.items()])

    def _finish(self, conn: Connection, o: _Outcome) -> None:
        """One trial's outcome into Optuna's tables and tuner's, inside ``conn``'s transaction.

        Written through Optuna's schema (mirrored and checked in ``tuner.storage._queries``)
        rather than its per-call API, and with the coordinator's completion time rather than
        the write time.
        """
        t, number = o.frozen, o.frozen.number
        trial_id = self._trial_ids[number]
        state = conn.execute(sa.select(q.optuna_trials.c.state)
                             .where(q.optuna_trials.c.trial_id == trial_id)).scalar()
        if state is not None and TrialState[getattr(state, "name", state)].is_finished():
            return  # already applied (a retry after a commit whose reply was lost)
        if t.intermediate_values:
            conn.execute(sa.delete(q.optuna_intermediate).where(
                q.optuna_intermediate.c.trial_id == trial_id))
            conn.execute(sa.insert(q.optuna_intermediate), [
                {"trial_id": trial_id, "step": step, **_typed(value, "intermediate_value")}
                for step, value in t.intermediate_values.items()])
        _replace_attrs(conn, q.optuna_user_attrs, trial_id, t.user_attrs)
        # system attributes too: e.g. successive halving's rung values, which a resume needs
        _replace_attrs(conn, q.optuna_system_attrs, trial_id, t.system_attrs)
        if t.state == TrialState.COMPLETE and t.values:
            conn.execute(sa.insert(q.optuna_values), [
                {"trial_id": trial_id, "objective": i, **_typed(v, "value")}
                for i, v in enumerate(t.values)])
        key = {"study_id": self._study_id, "number": number}
        conn.execute(sa.delete(TrialRow).where(TrialRow.study_id == self._study_id,
                                               TrialRow.number == number))
        conn.execute(sa.insert(TrialRow), [{**key, "host": o.host, "device": o.device,
                                            "worker": o.worker, "reason": o.reason,
                                            "epochs_run": len(o.curve) or None}])
        if o.curve:
            conn.execute(sa.insert(CurveRow), [
                {**key, "epoch": int(p["epoch"]), "metrics": {k: v for k, v in p.items() if k != "epoch"}}
                for p in o.curve])
        conn.execute(sa.update(q.optuna_trials).where(q.optuna_trials.c.trial_id == trial_id)
                     .values(state=t.state, datetime_complete=t.datetime_complete))


def _typed(value: float, column: str) -> dict[str, Any]:
    """Optuna stores non-finite floats as NULL plus a type tag (``<column>_type``)."""
    tag = "value_type" if column == "value" else f"{column}_type"
    if math.isnan(value):
        return {column: None, tag: "NAN"}
    if math.isinf(value):
        return {column: None, tag: "INF_POS" if value > 0 else "INF_NEG"}
    return {column: value, tag: "FINITE"}


def _replace_attrs(conn: Connection, table: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    """Upsert a trial's attributes (user or system) as delete-then-insert: portable across
    SQLite and PostgreSQL, and idempotent when a batch is retried."""
    if not attrs:
        return
    conn.execute(sa.delete(table).where(table.c.trial_id == trial_id,
                                        table.c.key.in_(list(attrs))))
    conn.execute(sa.insert(table), [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                    for k, v in attrs.items()])
