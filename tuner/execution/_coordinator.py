"""The coordinator: owns one study while it runs, hands out trials, takes results.

It runs as a threaded Ray actor (``max_concurrency`` > workers), but is plain Python so scheduling
logic is tested without Ray. The sampler and pruner work against an in-memory Optuna study; the
database stays the truth:

- a trial is **created in the database** (numbered there by Optuna's rule) or **claimed** there
  (WAITING -> RUNNING, conditionally) before a worker starts it; both are committed answers from
  the writer thread, so a worker never trains a trial the database does not know;
- trials are keyed by their database ``trial_id``; the in-memory copy's own numbering is never
  written anywhere;
- outcomes are written behind (:class:`WriteBehind`), grouped into few transactions;
- a watcher thread renews the run's lease, notices ``tuner cancel``, and merges trials that
  other writers (a plain Optuna process) add to the study, within about a second.

Counting rule: a trial *uses budget* when its outcome says something about its hyperparameters
(COMPLETE, PRUNED, or FAIL because it diverged, ran out of memory, raised or timed out). A trial
that failed for reasons outside it (``tuner._reasons.INFRA_REASONS``) is marked FAIL with that
reason and its params are queued again, so the study ends with exactly ``trials`` outcomes.
Trials run by other writers never use tuner's budget.

Packs (``resources.pack`` > 1 or ``auto``, built-in trainables only; the first worker to ask
decides whether the study packs): :meth:`Coordinator.next_pack` asks
ahead, holds the asked trials in memory only (RUNNING there, so TPE's constant liar sees them;
nothing in the database yet, and they count against the budget), groups them by
``tuner.training._pack_key.pack_key`` (and the coarse-to-fine stage, so a pack never spans a
stage and asks never run past a stage boundary while trials of the current one are held) and
sends a worker up to P trials of one group. Each member is then created or claimed in the
database as a single trial is and ends on its own through the same ``_finish``/``_fail``; a
lost worker fails every member it held, and a timed-out member fails alone (the worker is
killed only once none of its members is left running).

Asks off the lock: one trial at a time, workers take trials asked ahead by an asker thread
(:meth:`Coordinator._ask_loop`) that runs the sampler *without* holding the coordinator's lock,
so a slow ask (TPE over 100k trials: about a second) never delays a result, a pruning report or
another worker's next trial. It keeps ``_ahead`` trials held in memory (one for TPE, whose draws
use the results so far; one per worker for random and grid). Coarse-to-fine and packs keep
asking under the lock (their asks decide stage boundaries and pack groups, and cost ~5 ms).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import StorageError
from tuner._reasons import CLAIMED_ELSEWHERE, INFRA_REASONS
from tuner.execution._control import cancel_requested, clear_cancel, record_job
from tuner.execution._writer import RETRY_S, TrialExtras, WriteBehind
from tuner.samplers import create_pruner, create_sampler, grid_size, next_stage, trial_stage
from tuner.spec import StudySpec, to_distribution
from tuner.storage import TrialRow, open_storage
from tuner.storage import _optuna as rows
from tuner.storage._lease import RENEW_S
from tuner.storage._runs import Run, end_run, renew_run
from tuner.training._pack_key import PACKABLE_KINDS, pack_key, pack_widths

__all__ = ["Coordinator", "Assignment", "TrialResult", "INFRA_REASONS"]

_log = logging.getLogger(__name__)
MAX_LOSSES = 3
"""A configuration whose worker died this many times is failed for good (``crashed``), not
re-queued: a trial that kills its process (host out of memory, a segfault) would loop forever."""
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
AHEAD = 16
"""Packs: asked-but-unsent trials are held up to ``AHEAD`` x the pack size (random, grid and
coarse-to-fine draw independently of results, so asking ahead costs nothing but memory); TPE
holds at most one pack's worth beyond what it sends, since its draws use the results so far."""
WIDTH_RATIO, WIDTH_FREE = 2.0, 64
"""A pack computes every member at its widest member's width, so a pack starts from the narrowest
held member of its group and takes members at most ``WIDTH_RATIO`` times as wide (any up to
``WIDTH_FREE`` units, where per-step overhead, not arithmetic, is what a small network costs)."""


@dataclass(frozen=True)
class Assignment:
    trial_id: int  # the database's id: what every message about the trial is keyed by
    number: int  # the database's number: what users see (and the per-trial seed offset)
    params: dict[str, Any]


@dataclass
class TrialResult:
    """What a worker sends back for one trial."""

    trial_id: int
    number: int
    state: str  # "COMPLETE" | "PRUNED" | "FAIL"
    value: float | None = None
    reason: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    host: str | None = None
    device: str | None = None
    worker: str | None = None
    node: str | None = None  # the Ray node id: hosts can share a name (containers, test clusters)
    gpu_ids: list[str] = field(default_factory=list)  # what Ray assigned (CUDA_VISIBLE_DEVICES)
    reported: bool = False  # True when the curve already went through report()


@dataclass
class _Held:
    """A trial asked ahead for a pack: in the in-memory study only, not yet in the database."""

    trial: optuna.Trial
    mem_id: int
    group: tuple[Any, ...] | None  # (pack key, stage); None: runs alone
    width: int


@dataclass
class _Running:
    trial: optuna.Trial
    mem_id: int
    number: int
    worker: str
    started: float


class Coordinator:
    """Runs the study of ``run`` (created or taken over by the driver, see ``storage._runs``).

    Args:
        spec: the validated spec (parsed once, by whoever submitted the study).
        storage_url: the database.
        run: the study id and the lease this run holds.
        resume: continue a stored study (trials left RUNNING by a dead driver re-run first).
        trials: the target count (default: the spec's).
        job: ``{"id", "address"}`` of the Ray job running the study (``--detach``).
        poll_s: how often the watcher renews, checks for a cancel and merges foreign trials.
        warm_start: ``[{"params", "source"}]`` to run first (a new study only).
        retry_for_s: how long the writer retries a lost database before stopping the study.
    """

    def __init__(
        self, spec: StudySpec, storage_url: str, *, run: Run, resume: bool = False,
        trials: int | None = None, job: dict[str, Any] | None = None, poll_s: float = 1.0,
        warm_start: list[dict[str, Any]] | None = None, retry_for_s: float = RETRY_S,
    ) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._spec = spec
        self._storage = open_storage(storage_url)  # the driver created and migrated it
        self._run = run
        self._study_id = run.study_id
        self._dists = {n: to_distribution(p) for n, p in self._spec.params.items()}
        self._objective = self._spec.objective
        self._mem_storage = optuna.storages.InMemoryStorage()
        self._sampler = create_sampler(self._spec)
        self._mem = optuna.create_study(
            storage=self._mem_storage, sampler=self._sampler, pruner=create_pruner(self._spec),
            direction=self._objective.direction, study_name=self._spec.study)
        self._mem_sid = self._mem_storage.get_study_id_from_name(self._spec.study)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # the asker and workers waiting on it
        self._asking = 0  # asks the asker runs now (off the lock); they count against the budget
        self._ask_error: BaseException | None = None
        self._run_tag = uuid.uuid4().hex[:12]
        self._seq = itertools.count()
        self._db_of: dict[int, int] = {}  # in-memory trial id -> database trial id
        self._mem_of: dict[int, int] = {}  # database trial id -> in-memory trial id
        self._number: dict[int, int] = {}  # database trial id -> number
        self._pending: dict[int, Future[list[tuple[int, int]]]] = {}  # mem id -> its insert
        self._waiting: list[int] = []  # in-memory ids of queued trials, oldest first
        self._running: dict[int, _Running] = {}  # by database trial id
        self._foreign_open: set[int] = set()  # another writer's unfinished trials
        self._foreign = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "running": 0}
        self._max_seen = 0
        self._timed_out: list[str] = []
        self._stopping = False
        self._cancelled = False
        self._fatal: str | None = None
        self._losses: dict[str, int] = {}
        self._counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "requeued": 0}
        target = trials if trials is not None else self._spec.trials
        if self._spec.sampler.kind == "grid":
            target = min(target, grid_size(self._spec))
        self._target = target
        self._timeout_s = self._spec.trial_timeout_s
        self._study_attrs: dict[str, Any] = {}
        self._held: list[_Held] = []  # asked ahead for packs, oldest first (see next_pack)
        kind = self._spec.trainable.removeprefix("builtin:")
        self._pack_kind = kind if self._spec.trainable.startswith("builtin:") \
            and kind in PACKABLE_KINDS else None
        self._packs = itertools.count()
        self._writer = WriteBehind(self._storage, self._study_id, retry_for_s=retry_for_s,
                                   on_fatal=self._on_fatal)
        with self._storage.engine.connect() as conn:
            if resume:  # boxes computed before the crash stay the boxes
                self._study_attrs = rows.study_attrs(conn, self._study_id)
                for key, value in self._study_attrs.items():
                    self._mem.set_user_attr(key, value)
            history = rows.load_trials(conn, self._study_id)
            ran = {n for (n,) in conn.execute(sa.select(TrialRow.number)
                                              .where(TrialRow.study_id == self._study_id))}
        if resume:
            clear_cancel(self._storage, self._study_id)
        if job is not None:
            record_job(self._storage, self._study_id, job["id"], job.get("address"))
        self._load_history(history, ran)
        if not resume:  # a new study runs the donor's configurations first (tuner._warm_start)
            for entry in warm_start or []:
                self._enqueue(entry["params"], {"warm_start_from": entry["source"]})
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(poll_s,), name="tuner-watch",
                                         daemon=True)
        self._watcher.start()
        # Off-lock asks: samplers whose draws open no stages, one trial per worker at a time.
        self._ahead = 1 if self._spec.sampler.kind == "tpe" else min(max(1, spec.resources.workers), 8)
        self._asker: threading.Thread | None = None
        # Packing or not: decided by the first worker that asks (see _decide), since with
        # `pack: auto` only a worker's probe of its device knows. False: trials run one at a time.
        self._packing: bool | None = None
        if self._pack_kind is None or self._spec.resources.pack == 1:
            self._decide(packing=False)

    # --- protocol ----------------------------------------------------------------------------
    def next_trial(self, worker: str, result: TrialResult | None = None) -> Assignment | None:
        """Record ``result`` (if any) and give ``worker`` its next trial, or None when done."""
        with self._cond:
            if self._packing is None:
                self._decide(packing=False)
            if result is not None:
                self._finish(result)
                self._cond.notify_all()  # a re-queued trial or a freed slot: the asker goes on
            while True:
                while self._held and not (self._stopping or self._fatal):
                    # asked ahead: by the asker, or for packs (a study's workers can differ)
                    started = self._start_pack(worker, [self._held.pop(0)])
                    self._cond.notify_all()
                    if started:
                        return started[0]
                if self._ask_error is not None:
                    raise self._ask_error
                if self._stopping or self._fatal:
                    return None
                if self._asker is None:
                    break
                if not self._asking and self._used() + len(self._running) >= self._target:
                    return None  # (an ask in flight may still bring a trial: wait for it)
                self._cond.wait(0.5)  # releases the lock: results and reports go on meanwhile
            while not (self._stopping or self._fatal
                       or self._used() + len(self._running) + len(self._held) >= self._target):
                assignment = self._start(worker)
                if assignment is not None:
                    return assignment
            return None

    def next_pack(self, worker: str, results: list[TrialResult] | None = None,
                  size: int = 1) -> list[Assignment]:
        """Record ``results`` and give ``worker`` up to ``size`` trials that one fused model can
        train (one pack key, one coarse-to-fine stage); ``[]`` when the study is done. With
        ``size`` <= 1 or a user trainable it is :meth:`next_trial`'s single trial. Every member
        carries the user attributes ``pack_size`` and ``pack_id``."""
        with self._lock:
            for result in results or []:
                self._finish(result)
            if self._packing is None:
                self._decide(packing=size > 1)
            if size <= 1 or not self._packing:
                assignment = self.next_trial(worker)
                return [] if assignment is None else [assignment]
            while not (self._stopping or self._fatal):
                members = self._pick(size)
                if not members:
                    return []
                assignments = self._start_pack(worker, members)
                if assignments:
                    return assignments
            return []

    def report(self, trial_id: int, epoch: int, value: float) -> bool:
        """An intermediate objective value; True means the trial should stop (pruned, or
        no longer running: failed meanwhile, timed out, the study stopped)."""
        with self._lock:
            run = self._running.get(trial_id)
            if run is None:
                return True
            if epoch not in self._mem_storage.get_trial(run.mem_id).intermediate_values:
                run.trial.report(value, epoch)
            if epoch >= self._spec.epochs:
                return False  # its training is done: pruning now would only discard its value
            return bool(run.trial.should_prune())

    def worker_lost(self, worker: str, why: str = "worker_lost") -> int | None:
        """The worker's process died: fail its trial (not counted) and queue its params again.
        Returns the lost trial's number."""
        with self._lock:
            lost = None
            for trial_id, run in list(self._running.items()):
                if run.worker == worker:  # a pack's worker held several
                    self._fail(trial_id, why)
                    lost = run.number if lost is None else lost
            self._cond.notify_all()  # its params are queued again
            return lost

    def take_timed_out(self) -> list[str]:
        """Workers whose trial ran past ``trial_timeout_s``: the driver kills and replaces them."""
        with self._lock:
            out, self._timed_out = self._timed_out, []
            return out

    def stop(self, reason: str = "interrupted") -> None:
        """Hand out no more trials; fail the running ones with ``reason`` and re-queue them."""
        with self._lock:
            self._stopping = True
            for trial_id in list(self._running):
                self._fail(trial_id, reason)
            self._drop_held()
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Flush every pending write (within ``timeout``), give the lease back; returns the
        final progress."""
        self._closed.set()
        with self._cond:
            self._cond.notify_all()  # the asker ends
        try:
            self._writer.close(timeout)
        finally:
            try:
                end_run(self._storage, self._run)
            except Exception as e:  # noqa: BLE001 - a stale lease is taken over by the next resume
                _log.warning("could not release the study's lease: %s", e)
        return self.progress()

    def progress(self) -> dict[str, Any]:
        with self._lock:
            best = self._best()
            return {
                "study": self._spec.study,
                "target": self._target,
                "used": self._used(),
                "running": len(self._running),
                "complete": self._counts["COMPLETE"],
                "pruned": self._counts["PRUNED"],
                "failed": self._counts["FAIL"],
                "requeued": self._counts["requeued"],
                "foreign": self._foreign["COMPLETE"] + self._foreign["PRUNED"] + self._foreign["FAIL"],
                "foreign_running": len(self._foreign_open),
                "best_value": None if best is None else best.value,
                "best_number": None if best is None else self._number_of(best.number),
                "pending_writes": self._writer.pending,
                "done": self._stopping or (self._used() >= self._target and not self._running),
                "cancelled": self._cancelled,
                "fatal": self._fatal,
            }

    # --- starting trials -------------------------------------------------------------------------
    def _start(self, worker: str) -> Assignment | None:
        """Ask the sampler (a queued trial comes first) and record the trial in the database.
        None when a queued trial turned out to be taken by another process: ask again."""
        trial = self._mem.ask(self._dists)
        mem_id = self._mem_storage.get_trial_id_from_study_id_trial_number(self._mem_sid, trial.number)
        self._sync_study_attrs()  # the sampler may have stored a box (coarse-to-fine)
        frozen = self._mem_storage.get_trial(mem_id)
        started = rows.utcnow()
        if mem_id in self._waiting:  # Optuna's ask popped a queued trial: claim it
            self._waiting.remove(mem_id)
            trial_id = self._db_id(mem_id)
            tag = self._tag()
            if not self._writer.claim(trial_id, started, tag, dict(frozen.params),
                                      dict(frozen.distributions)).result():
                trial.set_user_attr("reason", CLAIMED_ELSEWHERE)  # memory only: not ours
                self._mem.tell(trial, state=TrialState.FAIL)
                self._foreign_open.add(trial_id)
                return None
        else:
            tag = self._tag()
            new = rows.NewTrial(
                uid=tag, state=TrialState.RUNNING, started=started, params=dict(frozen.params),
                distributions=dict(frozen.distributions), user_attrs=dict(frozen.user_attrs),
                system_attrs={rows.RUN_KEY: tag, **copy.deepcopy(frozen.system_attrs)})
            [(trial_id, number)] = self._writer.create([new]).result()
            self._map(mem_id, trial_id, number)
        self._running[trial_id] = _Running(trial, mem_id, self._number[trial_id], worker,
                                           time.monotonic())
        return Assignment(trial_id, self._number[trial_id], dict(trial.params))

    def _enqueue(self, params: dict[str, Any], user_attrs: dict[str, Any] | None = None) -> None:
        """Queue a trial with fixed ``params``, as Optuna's ``enqueue_trial`` does (so any
        sampler honours it), in memory and in the database."""
        template = optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={"fixed_params": params},
            user_attrs=user_attrs or {})
        mem_id = self._mem_storage.create_new_trial(self._mem_sid, template_trial=template)
        self._waiting.append(mem_id)
        self._pending[mem_id] = self._writer.create([rows.NewTrial(
            uid=self._tag(), state=TrialState.WAITING, started=None,
            user_attrs=user_attrs or {}, system_attrs={"fixed_params": params})])

    def _db_id(self, mem_id: int) -> int:
        """The database id of an in-memory trial, waiting for its insert if still in flight."""
        pending = self._pending.pop(mem_id, None)
        if pending is not None:
            [(trial_id, number)] = pending.result()
            self._map(mem_id, trial_id, number)
        return self._db_of[mem_id]

    def _map(self, mem_id: int, trial_id: int, number: int) -> None:
        self._db_of[mem_id], self._mem_of[trial_id], self._number[trial_id] = trial_id, mem_id, number
        self._max_seen = max(self._max_seen, trial_id)

    def _number_of(self, mem_number: int) -> int | None:
        """The database number of the in-memory trial numbered ``mem_number``."""
        mem_id = self._mem_storage.get_trial_id_from_study_id_trial_number(self._mem_sid, mem_number)
        return self._number.get(self._db_of.get(mem_id, -1))

    def _tag(self) -> str:
        return f"{self._run_tag}-{next(self._seq)}"

    # --- packs ------------------------------------------------------------------------------------
    def _decide(self, packing: bool) -> None:
        """Fix the study's mode once, under the lock (or in ``__init__``): the first worker to
        ask decides it (its ``pack: auto`` probe, or ``pack: N``). Packing: packs are asked
        under the lock (their asks form the groups) and a worker that asks for one trial gets
        one the same way. Not packing: an asker thread keeps trials asked ahead off the lock
        (for samplers without stages), and a worker asking for a pack gets one trial."""
        self._packing = packing
        if not packing and self._asker is None and next_stage(self._sampler, self._mem) is None:
            self._asker = threading.Thread(target=self._ask_loop, name="tuner-ask", daemon=True)
            self._asker.start()

    def _pick(self, size: int) -> list[_Held]:
        """Ask ahead until one group holds ``size`` trials of similar width (or no more may be
        asked), then take them: up to ``size`` members from the narrowest of its group within
        the width window (``WIDTH_RATIO``); failing such a group, the largest window of any
        group. ``[]`` when nothing is left to run."""
        alone = next((h for h in self._held if h.group is None), None)
        if alone is not None:
            self._held.remove(alone)
            return [alone]
        ahead = 2 * size if self._spec.sampler.kind == "tpe" else AHEAD * size
        groups: dict[tuple[Any, ...], list[_Held]] = {}
        for held in self._held:
            groups.setdefault(held.group, []).append(held)  # type: ignore[arg-type]
        members = next((w for w in (_window(g, size) for g in groups.values()) if len(w) >= size),
                       None)
        while (members is None and len(self._held) < ahead and not self._stage_ends()
               and self._used() + len(self._running) + len(self._held) < self._target):
            held = self._ask_ahead()
            self._sync_study_attrs()  # the sampler may have stored a box (coarse-to-fine)
            if held.group is None:  # cannot be packed: it runs alone, now
                return [held]
            self._held.append(held)
            group = groups.setdefault(held.group, [])
            group.append(held)
            window = _window(group, size)
            if len(window) >= size:
                members = window
        if members is None:
            if not groups:
                return []
            members = max((_window(g, size) for g in groups.values()), key=len)
        for held in members:
            self._held.remove(held)
        return sorted(members, key=lambda h: h.trial.number)  # numbered in ask order

    def _stage_ends(self) -> bool:
        """Coarse-to-fine: the next ask would open a new stage while this one has trials held
        (its box would be drawn before they even ran)."""
        if not self._held:
            return False
        if any(self._mem_storage.get_trial(i).state == TrialState.WAITING for i in self._waiting):
            return False  # the next ask pops a queued trial (a re-run): no new stage starts
        stage = next_stage(self._sampler, self._mem)  # None: the sampler has no stages
        return stage is not None and any(
            trial_stage(self._mem_storage.get_trial(h.mem_id)) != stage for h in self._held)

    # --- the asker ----------------------------------------------------------------------------
    def _ask_loop(self) -> None:
        """Keep ``_ahead`` trials asked: the sampler runs here, off the lock. Optuna's in-memory
        study takes ``ask`` and ``tell`` from different threads (its ``optimize(n_jobs=...)``
        does); only this thread asks, so draws stay in one sequence. A trial asked when the study
        stopped meanwhile is failed in memory, as held trials are."""
        while True:
            with self._cond:
                while not self._ask_ends() and not self._wants_ask():
                    self._cond.wait(0.5)
                if self._ask_ends():
                    return
                self._asking += 1
            try:
                held = self._ask_ahead()
            except BaseException as e:  # noqa: BLE001 - handed to the workers that wait for it
                with self._cond:
                    self._asking -= 1
                    self._ask_error = e
                    self._cond.notify_all()
                return
            with self._cond:
                self._asking -= 1
                self._sync_study_attrs()
                if self._stopping or self._fatal:
                    held.trial.set_user_attr("reason", "interrupted")
                    self._mem.tell(held.trial, state=TrialState.FAIL)
                else:
                    self._held.append(held)
                self._cond.notify_all()

    def _ask_ends(self) -> bool:
        return bool(self._closed.is_set() or self._stopping or self._fatal or self._ask_error)

    def _wants_ask(self) -> bool:
        ahead = len(self._held) + self._asking
        return ahead < self._ahead and \
            self._used() + len(self._running) + ahead < self._target

    def _ask_ahead(self) -> _Held:
        """Ask the sampler for one trial, held in memory only. Touches nothing but the in-memory
        study, so the asker runs it off the lock; callers persist study attributes under it."""
        trial = self._mem.ask(self._dists)
        mem_id = self._mem_storage.get_trial_id_from_study_id_trial_number(self._mem_sid, trial.number)
        stage = trial_stage(self._mem_storage.get_trial(mem_id))  # set by the sampler, or None
        config = {**self._spec.fixed, **trial.params}
        key = pack_key(config, self._pack_kind or "")
        widths = pack_widths(config, self._pack_kind or "") or (0,)
        return _Held(trial, mem_id, None if key is None else (key, stage), max(widths, default=0))

    def _start_pack(self, worker: str, members: list[_Held]) -> list[Assignment]:
        """What ``_start`` does for one trial, for each member: queued trials are claimed, new
        ones created in one transaction. Members whose claim was lost are dropped."""
        started = rows.utcnow()
        claimed: list[tuple[_Held, int, str]] = []
        fresh: list[_Held] = []
        for held in members:
            if held.mem_id not in self._waiting:
                fresh.append(held)
                continue
            self._waiting.remove(held.mem_id)
            trial_id, tag = self._db_id(held.mem_id), self._tag()
            frozen = self._mem_storage.get_trial(held.mem_id)
            if self._writer.claim(trial_id, started, tag, dict(frozen.params),
                                  dict(frozen.distributions)).result():
                claimed.append((held, trial_id, tag))
            else:
                held.trial.set_user_attr("reason", CLAIMED_ELSEWHERE)  # memory only: not ours
                self._mem.tell(held.trial, state=TrialState.FAIL)
                self._foreign_open.add(trial_id)
        size = len(claimed) + len(fresh)
        if not size:
            return []
        if self._packing:  # (a study that does not pack runs no packs, even of one)
            pack_id = f"{self._run_tag}-p{next(self._packs)}"
            for held in [h for h, _, _ in claimed] + fresh:
                held.trial.set_user_attr("pack_size", size)
                held.trial.set_user_attr("pack_id", pack_id)
        news = []
        for held in fresh:
            frozen, tag = self._mem_storage.get_trial(held.mem_id), self._tag()
            news.append(rows.NewTrial(
                uid=tag, state=TrialState.RUNNING, started=started, params=dict(frozen.params),
                distributions=dict(frozen.distributions), user_attrs=dict(frozen.user_attrs),
                system_attrs={rows.RUN_KEY: tag, **copy.deepcopy(frozen.system_attrs)}))
        ids = self._writer.create(news).result() if news else []
        for held, (trial_id, number) in zip(fresh, ids, strict=True):
            self._map(held.mem_id, trial_id, number)
        out = []
        now = time.monotonic()
        for held, trial_id in [(h, i) for h, i, _ in claimed] + [(h, i) for h, (i, _) in zip(fresh, ids)]:
            self._running[trial_id] = _Running(held.trial, held.mem_id, self._number[trial_id],
                                               worker, now)
            out.append(Assignment(trial_id, self._number[trial_id], dict(held.trial.params)))
        return out

    def _drop_held(self) -> None:
        """The study stops: trials asked ahead never ran. They are failed in memory only (the
        database never had them; a queued one stays WAITING there, for ``resume``)."""
        for held in self._held:
            held.trial.set_user_attr("reason", "interrupted")
            self._mem.tell(held.trial, state=TrialState.FAIL)
        self._held.clear()

    # --- ending trials -------------------------------------------------------------------------
    def _finish(self, result: TrialResult) -> None:
        run = self._running.pop(result.trial_id, None)
        if run is None:
            return  # already failed by stop()/worker_lost()/a timeout; the late result is dropped
        trial = run.trial
        reported = self._mem_storage.get_trial(run.mem_id).intermediate_values
        for point in result.curve:  # every epoch, including the one that diverged (NaN/inf)
            value = point.get(self._objective.metric)
            if value is not None and int(point["epoch"]) not in reported:
                trial.report(float(value), int(point["epoch"]))
        if result.reason:
            trial.set_user_attr("reason", result.reason)
        for key, value in result.metrics.items():
            trial.set_user_attr(key, rows.json_safe(value))
        if result.node:
            trial.set_user_attr("ray_node", result.node)
        if result.gpu_ids:
            trial.set_user_attr("gpu_ids", list(result.gpu_ids))
        state = TrialState[result.state]
        if state == TrialState.COMPLETE:
            self._mem.tell(trial, result.value)
        else:
            self._mem.tell(trial, state=state)
        self._counts[state.name] += 1
        self._write_outcome(result.trial_id, run, TrialExtras(
            result.reason, result.host, result.device, result.worker or run.worker, result.curve))

    def _fail(self, trial_id: int, reason: str) -> None:
        """End a running trial as FAIL: infra reasons re-queue its params (no budget used); a
        worker dying three times on the same params is ``crashed`` (counted); ``timeout`` is
        counted and not re-queued."""
        run = self._running.pop(trial_id)
        params = dict(run.trial.params)
        key = json.dumps(params, sort_keys=True, default=str)
        if reason == "worker_lost":
            self._losses[key] = self._losses.get(key, 0) + 1
            if self._losses[key] >= MAX_LOSSES:  # the params kill the process: stop retrying
                reason = f"crashed: its worker died {MAX_LOSSES} times on these params"
        run.trial.set_user_attr("reason", reason)
        self._mem.tell(run.trial, state=TrialState.FAIL)
        self._write_outcome(trial_id, run, TrialExtras(reason=reason, worker=run.worker))
        if reason in INFRA_REASONS:
            self._enqueue(params)
            self._counts["requeued"] += 1
        else:
            self._counts["FAIL"] += 1

    def _write_outcome(self, trial_id: int, run: _Running, extras: TrialExtras) -> None:
        frozen = self._mem_storage.get_trial(run.mem_id)
        if self._fatal:
            return  # nothing more is written; `resume` re-runs what is left RUNNING
        self._writer.finish(trial_id, run.number, rows.Outcome(
            state=frozen.state, completed=rows.utcnow(), values=frozen.values,
            intermediate=dict(frozen.intermediate_values),
            user_attrs=copy.deepcopy(frozen.user_attrs),
            system_attrs=copy.deepcopy(frozen.system_attrs)), extras)

    # --- resume and other writers ------------------------------------------------------------------
    def _load_history(self, history: list[rows.StoredTrial], ran: set[int]) -> None:
        """Copy the stored study into memory. Trials tuner left RUNNING died with their driver
        (this run holds the lease): they are failed ``interrupted`` and re-queued first."""
        for stored in history:
            t, trial_id = stored.frozen, stored.trial_id
            ours = stored.ours or t.number in ran
            if t.state == TrialState.WAITING:
                self._add_waiting(t, trial_id)
            elif t.state == TrialState.RUNNING and ours:
                mem_id = self._add(optuna.trial.create_trial(
                    params=t.params, distributions=t.distributions, state=TrialState.RUNNING,
                    user_attrs=t.user_attrs, system_attrs=t.system_attrs,
                    intermediate_values=t.intermediate_values), trial_id, t.number)
                self._running[trial_id] = _Running(optuna.Trial(self._mem, mem_id), mem_id,
                                                   t.number, "lost driver", time.monotonic())
                self._fail(trial_id, "interrupted")
            elif t.state == TrialState.RUNNING:
                self._foreign_open.add(trial_id)
                self._max_seen = max(self._max_seen, trial_id)
            else:
                self._add(t, trial_id, t.number)
                if ours:
                    if not (t.state == TrialState.FAIL and t.user_attrs.get("reason") in INFRA_REASONS):
                        self._counts[t.state.name] += 1
                else:
                    self._foreign[t.state.name] += 1

    def _add(self, t: FrozenTrial, trial_id: int, number: int) -> int:
        mem_id = self._mem_storage.create_new_trial(self._mem_sid, template_trial=t)
        self._map(mem_id, trial_id, number)
        return mem_id

    def _add_waiting(self, t: FrozenTrial, trial_id: int) -> None:
        template = optuna.trial.create_trial(
            state=TrialState.WAITING, user_attrs=t.user_attrs,
            system_attrs={"fixed_params": t.system_attrs.get("fixed_params", t.params)})
        self._waiting.append(self._add(template, trial_id, t.number))

    def _merge_foreign(self) -> None:
        """Bring trials other writers added or finished into memory: the sampler and pruner
        see them, the budget does not count them."""
        with self._storage.engine.connect() as conn:
            seen = rows.trial_states_since(conn, self._study_id, self._max_seen,
                                           list(self._foreign_open))
            with self._lock:
                for pending in list(self._pending):
                    self._db_id(pending)  # our own inserts in flight are ours, not foreign
                fresh = [(i, n, s) for i, n, s in seen
                         if i not in self._number or i in self._foreign_open]
                done = [i for i, _, s in fresh if s in _FINISHED or s == TrialState.WAITING]
            whole = {s.trial_id: s for s in rows.load_trials(conn, self._study_id, done)} if done else {}
        with self._lock:
            for trial_id, number, state in fresh:
                self._max_seen = max(self._max_seen, trial_id)
                if state == TrialState.RUNNING:
                    self._foreign_open.add(trial_id)
                elif trial_id in whole and state == TrialState.WAITING and trial_id not in self._number:
                    self._add_waiting(whole[trial_id].frozen, trial_id)
                elif trial_id in whole and state in _FINISHED:
                    self._foreign_open.discard(trial_id)
                    self._number.pop(trial_id, None)
                    self._add(whole[trial_id].frozen, trial_id, number)
                    self._foreign[state.name] += 1

    # --- the watcher -------------------------------------------------------------------------
    def _watch(self, every_s: float) -> None:
        """Lease heartbeat, cancel requests, timeouts and foreign trials, about every ``every_s``."""
        renewed = time.monotonic()
        while not self._closed.wait(every_s):
            now = time.monotonic()
            if now - renewed >= RENEW_S:
                try:
                    if not renew_run(self._storage, self._run):
                        self._on_fatal(StorageError(
                            f"study '{self._spec.study}' was taken over by another driver; "
                            "this run stopped"))
                    renewed = now
                except Exception as e:  # noqa: BLE001 - the writer's retry bound decides
                    _log.debug("lease renewal failed: %s", e)
            self._expire(now)
            try:
                self._merge_foreign()
                wanted = cancel_requested(self._storage, self._study_id)
            except Exception as e:  # noqa: BLE001 - the database may be down; the writer decides
                _log.debug("watch poll failed: %s", e)
                continue
            if wanted and not self._cancelled:
                with self._lock:
                    self._cancelled = True
                self.stop("cancelled")

    def _expire(self, now: float) -> None:
        if self._timeout_s is None:
            return
        with self._lock:
            for trial_id, run in list(self._running.items()):
                if now - run.started > self._timeout_s:
                    self._fail(trial_id, "timeout")
                    if not any(r.worker == run.worker for r in self._running.values()):
                        self._timed_out.append(run.worker)  # a pack's other members run on

    def _on_fatal(self, error: StorageError) -> None:
        """The database is gone past the retry bound (or the lease was lost): stop at once.
        Called from the writer or watcher thread; sets a flag that the driver polls."""
        self._fatal = str(error)
        self._stopping = True

    # --- internals -------------------------------------------------------------------------------
    def _sync_study_attrs(self) -> None:
        """Persist new study user attributes (coarse-to-fine boxes) behind, like trials."""
        for key, value in self._mem.user_attrs.items():
            if self._study_attrs.get(key) != value:
                self._study_attrs[key] = value
                self._writer.study_attr(key, value)

    def _used(self) -> int:
        return self._counts["COMPLETE"] + self._counts["PRUNED"] + self._counts["FAIL"]

    def _best(self) -> FrozenTrial | None:
        try:
            return self._mem.best_trial
        except ValueError:
            return None


def _window(group: list[_Held], size: int) -> list[_Held]:
    """Up to ``size`` members of ``group``: its narrowest, and the next narrowest as long as they
    are within ``WIDTH_RATIO`` of it (or ``WIDTH_FREE`` units wide)."""
    ordered = sorted(group, key=lambda h: h.width)
    limit = max(WIDTH_RATIO * ordered[0].width, WIDTH_FREE)
    return [h for h in ordered if h.width <= limit][:size]
