"""Write-behind: the coordinator decides in memory, this thread persists, in order.

Only the thread, its bounded queue, group commit and the failure policy live here; every
statement against Optuna's tables is in ``tuner.storage._optuna``.

- **Group commit.** Whatever queued up while a transaction ran is committed together (up to
  ``_GROUP`` operations), so ten finished trials cost one commit, not ten.
- **Answers after commit.** Creating a trial and claiming a queued one return futures that
  resolve only once the transaction committed: a worker never starts a trial the database has
  not recorded.
- **Failure policy.** Connection errors are retried with backoff for up to ``retry_for_s``; past
  that the writer is *fatal*: it stops, tells the coordinator (which stops the study at once) and
  refuses further work. A permanent error in a batch is isolated by re-applying its operations
  one by one: a trial outcome that still cannot be written is stored as FAIL with reason
  ``storage_error``; a trial that cannot be created or claimed is fatal.
- **Back-pressure.** The queue is bounded: while the database is slow or away, the coordinator
  (and so every worker asking for its next trial) waits instead of piling up results in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from optuna.distributions import BaseDistribution
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tuner._errors import StorageError
from tuner.storage import CurveRow, Storage, TrialRow
from tuner.storage import _optuna as rows
from tuner.storage._transient import first_line

__all__ = ["WriteBehind", "TrialExtras", "RETRY_S"]

_log = logging.getLogger(__name__)
RETRY_S = 120.0
"""Default bound on retrying a connection error: covers a server restart or a failover."""
_GROUP = 128  # operations per transaction at most
_MAX_PENDING = 1024  # queued operations before the coordinator waits (back-pressure)


@dataclass(frozen=True)
class TrialExtras:
    """What tuner keeps beside Optuna's row: who ran the trial, why it ended, its curve."""

    reason: str | None = None
    host: str | None = None
    device: str | None = None
    worker: str | None = None
    curve: Sequence[dict[str, float]] = field(default_factory=list)


class _Op:
    """One queued write. ``apply`` runs inside the batch's transaction and returns the value
    its future gets after commit; ``fallback`` is the last resort for a permanent error."""

    fatal_on_error = False
    tried = False

    def __init__(self) -> None:
        self.future: Future[Any] = Future()

    def apply(self, conn: Connection, study_id: int) -> Any:
        raise NotImplementedError

    def fallback(self, conn: Connection, study_id: int, error: BaseException) -> Any:
        raise error


class _Create(_Op):
    fatal_on_error = True

    def __init__(self, new: Sequence[rows.NewTrial]) -> None:
        super().__init__()
        self.new = list(new)

    def apply(self, conn: Connection, study_id: int) -> list[tuple[int, int]]:
        done = rows.find_uids(conn, study_id, [t.uid for t in self.new]) if self.tried else {}
        fresh = rows.insert_trials(conn, study_id, [t for t in self.new if t.uid not in done])
        it = iter(fresh)
        return [done[t.uid] if t.uid in done else next(it) for t in self.new]


class _Claim(_Op):
    fatal_on_error = True

    def __init__(self, trial_id: int, started: Any, run: str, params: dict[str, Any],
                 distributions: dict[str, BaseDistribution]) -> None:
        super().__init__()
        self.args = (trial_id, started, run, params, distributions)

    def apply(self, conn: Connection, study_id: int) -> bool:
        trial_id, _, run = self.args[:3]
        if self.tried and rows.claimed_by(conn, trial_id) == run:
            return True  # an earlier attempt committed; its reply was lost
        return rows.claim_waiting(conn, *self.args)


class _Finish(_Op):
    def __init__(self, trial_id: int, number: int, outcome: rows.Outcome, extras: TrialExtras) -> None:
        super().__init__()
        self.trial_id, self.number, self.outcome, self.extras = trial_id, number, outcome, extras

    def apply(self, conn: Connection, study_id: int) -> bool:
        if not rows.write_outcome(conn, self.trial_id, self.outcome):
            return False  # already ended: written by an earlier attempt, or by another writer
        self._tuner_rows(conn, study_id, self.extras)
        return True

    def fallback(self, conn: Connection, study_id: int, error: BaseException) -> bool:
        reason = f"storage_error: {first_line(error)}"[:250]
        failed = rows.Outcome(TrialState.FAIL, self.outcome.completed,
                              user_attrs={"reason": reason})
        if not rows.write_outcome(conn, self.trial_id, failed):
            return False
        self._tuner_rows(conn, study_id, TrialExtras(reason, self.extras.host, self.extras.device,
                                                     self.extras.worker))
        return True

    def _tuner_rows(self, conn: Connection, study_id: int, x: TrialExtras) -> None:
        key = {"study_id": study_id, "number": self.number}
        conn.execute(sa.delete(TrialRow).where(TrialRow.study_id == study_id,
                                               TrialRow.number == self.number))
        conn.execute(sa.insert(TrialRow).values(**key, host=x.host, device=x.device,
                                                worker=x.worker, reason=x.reason,
                                                epochs_run=len(x.curve) or None))
        conn.execute(sa.delete(CurveRow).where(CurveRow.study_id == study_id,
                                               CurveRow.number == self.number))
        if x.curve:
            conn.execute(sa.insert(CurveRow), [
                {**key, "epoch": int(p["epoch"]),
                 "metrics": rows.json_safe({k: v for k, v in p.items() if k != "epoch"})}
                for p in x.curve])


class _StudyAttr(_Op):
    def __init__(self, key: str, value: Any) -> None:
        super().__init__()
        self.key, self.value = key, value

    def apply(self, conn: Connection, study_id: int) -> None:
        rows.set_study_attr(conn, study_id, self.key, self.value)

    def fallback(self, conn: Connection, study_id: int, error: BaseException) -> None:
        _log.warning("study attribute %s not stored: %s", self.key, first_line(error))


class WriteBehind:
    """Queue of storage writes for one study, applied in order by a daemon thread.

    Args:
        storage: the open storage.
        study_id: Optuna's id of the study in that storage.
        retry_for_s: how long connection errors are retried before the writer gives up.
        on_fatal: called once (on the writer thread) with the error that stopped it.
    """

    def __init__(self, storage: Storage, study_id: int, *, retry_for_s: float = RETRY_S,
                 on_fatal: Callable[[StorageError], None] | None = None,
                 max_pending: int = _MAX_PENDING) -> None:
        self._storage = storage
        self._study_id = study_id
        self._retry_for_s = retry_for_s
        self._on_fatal = on_fatal
        self._queue: queue.Queue[_Op | None] = queue.Queue(maxsize=max_pending)
        self._fatal: StorageError | None = None
        self._thread = threading.Thread(target=self._run, name="tuner-write-behind", daemon=True)
        self._thread.start()

    # --- what the coordinator calls ------------------------------------------------------------
    def create(self, new: Sequence[rows.NewTrial]) -> Future[list[tuple[int, int]]]:
        """Insert trials; the future gives ``(trial_id, number)`` each, once committed."""
        return self._put(_Create(new))

    def claim(self, trial_id: int, started: Any, run: str, params: dict[str, Any],
              distributions: dict[str, BaseDistribution]) -> Future[bool]:
        """Take a WAITING trial; the future says whether we got it (False: another process did)."""
        return self._put(_Claim(trial_id, started, run, params, distributions))

    def finish(self, trial_id: int, number: int, outcome: rows.Outcome, extras: TrialExtras) -> None:
        """Persist a trial's outcome and tuner's rows for it."""
        self._put(_Finish(trial_id, number, outcome, extras))

    def study_attr(self, key: str, value: Any) -> None:
        self._put(_StudyAttr(key, value))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued write is applied; raise if the writer stopped or time ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks and self._fatal is None and self._thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                raise StorageError(f"{self._queue.unfinished_tasks} writes still pending after "
                                   f"{timeout:g} s; `tuner resume` re-runs what was not stored")
            time.sleep(0.005)
        if self._fatal is not None:
            raise self._fatal

    def close(self, timeout: float | None = None) -> None:
        """Flush (within ``timeout``) and stop the thread."""
        try:
            self.flush(timeout)
        finally:
            try:
                self._queue.put_nowait(None)
            except queue.Full:  # flush timed out with a full queue: the thread is a daemon
                pass
            self._thread.join(timeout=5)

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    @property
    def fatal(self) -> StorageError | None:
        return self._fatal

    def _put(self, op: _Op) -> Future[Any]:
        while True:
            if self._fatal is not None:
                op.future.set_exception(self._fatal)
                return op.future
            try:
                self._queue.put(op, timeout=0.2)
                return op.future
            except queue.Full:
                continue  # back-pressure: wait for the writer (or its death)

    # --- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                self._queue.task_done()
                return
            batch = [op]
            stop = False
            while len(batch) < _GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._commit(batch)
            except StorageError as e:
                self._die(e, batch)
                return
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                self._queue.task_done()
                return

    def _commit(self, batch: list[_Op]) -> None:
        try:
            results = self._with_retry(batch, lambda conn: [op.apply(conn, self._study_id)
                                                            for op in batch])
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - a permanent error: isolate the operation at fault
            if len(batch) > 1:
                for op in batch:
                    self._commit([op])
                return
            self._last_resort(batch[0], e)
            return
        for op, result in zip(batch, results, strict=True):
            op.future.set_result(result)

    def _last_resort(self, op: _Op, error: BaseException) -> None:
        if op.fatal_on_error:
            raise StorageError(f"cannot write to the study's database: {first_line(error)}")
        _log.error("storage write failed permanently: %s", first_line(error))
        try:
            result = self._with_retry([op], lambda conn: op.fallback(conn, self._study_id, error))
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001
            raise StorageError(f"cannot write to the study's database: {first_line(e)}") from e
        op.future.set_result(result)

    def _with_retry(self, batch: list[_Op], work: Callable[[Connection], Any]) -> Any:
        delay, deadline = 0.05, time.monotonic() + self._retry_for_s
        while True:
            try:
                with self._storage.engine.begin() as conn:
                    return work(conn)
            except Exception as e:
                if not _retryable(e):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"the database was unreachable for {self._retry_for_s:g} s "
                        f"({first_line(e)}); the study stopped, `tuner resume` continues it"
                    ) from e
                _log.warning("storage write failed (%s); retrying in %.1f s", first_line(e), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                for op in batch:
                    op.tried = True

    def _die(self, error: StorageError, batch: list[_Op]) -> None:
        _log.error("tuner write-behind stopped: %s", error)
        self._fatal = error
        for op in batch:
            if not op.future.done():
                op.future.set_exception(error)
        while True:  # nothing more will be written: fail whoever waits
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is not None and not op.future.done():
                op.future.set_exception(error)
            self._queue.task_done()
        if self._on_fatal is not None:
            self._on_fatal(error)


def _retryable(e: BaseException) -> bool:
    """Connection trouble (and SQLite's lock contention), not a bad statement."""
    if isinstance(e, (OperationalError, InterfaceError, StorageInternalError)):
        return True
    return isinstance(e, DBAPIError) and bool(e.connection_invalidated)
