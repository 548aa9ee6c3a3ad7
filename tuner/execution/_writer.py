"""Write-behind: the coordinator decides in memory, this thread persists in order.

Optuna's RDB storage costs ~20-30 ms of round trips per trial; doing that between one trial and
the next would idle the workers. Operations are queued FIFO and applied by one thread, so the
database sees exactly one writer per study (SQLite never reports "database is locked"), and a
dropped connection is retried with backoff instead of failing the study.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import DBAPIError, OperationalError

from tuner._errors import StorageError
from tuner.storage import CurveRow, Storage, TrialRow
from tuner.storage._queries import optuna_trials

__all__ = ["WriteBehind"]

_log = logging.getLogger(__name__)
_RETRYABLE = (OperationalError, StorageInternalError, DBAPIError)


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
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._trial_ids: dict[int, int] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tuner-write-behind", daemon=True)
        self._thread.start()

    # --- what the coordinator calls (never blocks on the database) -------------------------
    def known(self, number: int, trial_id: int) -> None:
        """Register a trial that already exists in storage (resume)."""
        self._trial_ids[number] = trial_id

    def create(self, frozen: FrozenTrial) -> None:
        """Persist a new trial (WAITING or RUNNING, with its params) as one insert."""
        self._queue.put(lambda: self._create(frozen))

    def start(self, frozen: FrozenTrial) -> None:
        """A queued (WAITING) trial was picked up: mark it RUNNING and store its params."""
        self._queue.put(lambda: self._start(frozen))

    def finish(
        self,
        frozen: FrozenTrial,
        *,
        reason: str | None,
        host: str | None,
        device: str | None,
        worker: str | None,
        curve: list[dict[str, float]],
    ) -> None:
        """Persist the outcome: intermediate values, attributes, state and value, curve rows."""
        self._queue.put(lambda: self._finish(frozen, reason, host, device, worker, curve))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued write is applied; re-raise a write that could not be."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks and self._thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                raise StorageError(f"{self._queue.unfinished_tasks} writes still pending after {timeout}s")
            time.sleep(0.01)
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
        while True:
            op = self._queue.get()
            try:
                if op is None:
                    return
                if self._error is None:
                    self._with_retry(op)
            except BaseException as e:  # noqa: BLE001 - surfaced by flush(), never swallowed
                _log.error("tuner write-behind failed: %s", e)
                self._error = e
            finally:
                self._queue.task_done()

    def _with_retry(self, op: Callable[[], None]) -> None:
        delay, deadline = 0.05, time.monotonic() + self._retry_for_s
        while True:
            try:
                op()
                return
            except _RETRYABLE as e:
                if time.monotonic() + delay > deadline:
                    raise
                _log.warning("storage write failed (%s); retrying in %.1fs", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _create(self, frozen: FrozenTrial) -> None:
        trial_id = self._storage.optuna.create_new_trial(self._study_id, template_trial=frozen)
        self._trial_ids[frozen.number] = trial_id

    def _start(self, frozen: FrozenTrial) -> None:
        rdb, trial_id = self._storage.optuna, self._trial_ids[frozen.number]
        if rdb.get_trial(trial_id).state == TrialState.WAITING:
            rdb.set_trial_state_values(trial_id, TrialState.RUNNING)
        for name, value in frozen.params.items():
            dist = frozen.distributions[name]
            rdb.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
        self._stamp(trial_id, start=frozen.datetime_start)

    def _finish(
        self,
        frozen: FrozenTrial,
        reason: str | None,
        host: str | None,
        device: str | None,
        worker: str | None,
        curve: list[dict[str, float]],
    ) -> None:
        rdb, trial_id = self._storage.optuna, self._trial_ids[frozen.number]
        if rdb.get_trial(trial_id).state.is_finished():
            return  # already applied (a retry after a commit whose reply was lost)
        for step, value in frozen.intermediate_values.items():
            rdb.set_trial_intermediate_value(trial_id, step, value)
        for key, value in frozen.user_attrs.items():
            rdb.set_trial_user_attr(trial_id, key, value)
        self._write_own_rows(frozen.number, reason, host, device, worker, curve)
        rdb.set_trial_state_values(trial_id, frozen.state, frozen.values)
        self._stamp(trial_id, complete=frozen.datetime_complete)

    def _stamp(self, trial_id: int, start: Any = None, complete: Any = None) -> None:
        """Keep the coordinator's times, not the (later) write times Optuna would record.

        Optuna's storage API stamps ``now`` when a state is written; written behind, that would
        add the queue's lag to every trial's duration.
        """
        values = {k: v for k, v in (("datetime_start", start), ("datetime_complete", complete)) if v}
        if values:
            with self._storage.engine.begin() as conn:
                conn.execute(sa.update(optuna_trials).where(
                    optuna_trials.c.trial_id == trial_id).values(**values))

    def _write_own_rows(
        self,
        number: int,
        reason: str | None,
        host: str | None,
        device: str | None,
        worker: str | None,
        curve: list[dict[str, float]],
    ) -> None:
        row: dict[str, Any] = dict(
            study_id=self._study_id, number=number, host=host, device=device, worker=worker,
            reason=reason, epochs_run=len(curve) or None,
        )
        with self._storage.engine.begin() as conn:
            key = (TrialRow.study_id == self._study_id) & (TrialRow.number == number)
            conn.execute(sa.delete(TrialRow).where(key))
            conn.execute(sa.insert(TrialRow), [row])
            conn.execute(sa.delete(CurveRow).where(
                (CurveRow.study_id == self._study_id) & (CurveRow.number == number)))
            if curve:
                conn.execute(sa.insert(CurveRow), [
                    {"study_id": self._study_id, "number": number, "epoch": int(p["epoch"]),
                     "metrics": {k: v for k, v in p.items() if k != "epoch"}}
                    for p in curve
                ])
