"""The coordinator: owns one study, hands out trials, takes results, writes behind.

It runs as a threaded Ray actor (``max_concurrency`` > workers), but is plain Python so scheduling
logic is tested without Ray. Sampling happens against an in-memory copy of the study, so a worker
that finishes a trial gets its next one in one actor round trip (~2 ms here), never waiting on the
database; :class:`WriteBehind` persists everything in order.

Counting rule: a trial *uses budget* when its outcome says something about its hyperparameters
(COMPLETE, PRUNED, or FAIL because it diverged / ran out of memory / raised). A trial that failed
for reasons outside it (its worker died, the study was interrupted) is marked FAIL with that
reason and its params are queued again, so the study ends with exactly ``trials`` outcomes.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import StudyExistsError, StudyNotFoundError
from tuner.execution._control import cancel_requested, clear_cancel, record_job
from tuner.execution._writer import WriteBehind
from tuner.samplers import CoarseToFineSampler, create_pruner, create_sampler, grid_size
from tuner.spec import StudySpec, parse_spec, to_distribution
from tuner.storage import StudyRow, open_storage
from tuner.storage._queries import trial_ids

__all__ = ["Coordinator", "Assignment", "TrialResult", "INFRA_REASONS"]

INFRA_REASONS = frozenset({"worker_lost", "interrupted", "cancelled"})
"""Failure reasons that do not use budget: the trial is re-queued with the same params."""
MAX_LOSSES = 3
"""A configuration whose worker died this many times is failed for good (``crashed``), not
re-queued: a trial that kills its process (host out of memory, a segfault) would loop forever."""


@dataclass(frozen=True)
class Assignment:
    number: int
    params: dict[str, Any]


@dataclass
class TrialResult:
    """What a worker sends back for one trial."""

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
class _Running:
    trial: optuna.Trial
    worker: str
    started: float


class Coordinator:
    """Owns the study named in ``spec``; see the module docstring for the protocol."""

    def __init__(
        self, spec_json: dict[str, Any], storage_url: str, *, resume: bool = False,
        trials: int | None = None, job: dict[str, Any] | None = None,
        cancel_poll_s: float = 1.0, warm_start: list[dict[str, Any]] | None = None,
    ) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._spec: StudySpec = parse_spec(spec_json)
        self._storage = open_storage(storage_url)
        self._dists = {n: to_distribution(p) for n, p in self._spec.params.items()}
        self._objective = self._spec.objective
        self._mem_storage = optuna.storages.InMemoryStorage()
        self._sampler = create_sampler(self._spec)
        self._mem = optuna.create_study(
            storage=self._mem_storage,
            sampler=self._sampler,
            pruner=create_pruner(self._spec),
            direction=self._objective.direction,
            study_name=self._spec.study,
        )
        self._mem_sid = self._mem_storage.get_study_id_from_name(self._spec.study)
        self._lock = threading.RLock()
        self._running: dict[int, _Running] = {}
        self._stopping = False
        self._cancelled = False
        self._losses: dict[str, int] = {}
        self._started_at = time.time()
        self._counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "requeued": 0}
        target = trials if trials is not None else self._spec.trials
        if self._spec.sampler.kind == "grid":
            target = min(target, grid_size(self._spec))
        self._target = target
        study_id, history = self._open_study(resume)
        self._study_id = study_id
        self._study_attrs: dict[str, Any] = {}
        if resume:  # boxes computed before the crash stay the boxes
            self._study_attrs = dict(self._storage.optuna.get_study_user_attrs(study_id))
            for key, value in self._study_attrs.items():
                self._mem.set_user_attr(key, value)
        if resume:
            clear_cancel(self._storage, study_id)
        if job is not None:
            record_job(self._storage, study_id, job["id"], job.get("address"))
        self._writer = WriteBehind(self._storage, study_id)
        self._load_history(history, trial_ids(self._storage.engine, study_id) if history else {})
        if not resume:  # a new study runs the donor's configurations first (tuner._warm_start)
            for entry in warm_start or []:
                self._enqueue(entry["params"], {"warm_start_from": entry["source"]})
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch_cancel, args=(cancel_poll_s,),
                                         name="tuner-cancel-watch", daemon=True)
        self._watcher.start()

    # --- protocol ----------------------------------------------------------------------------
    def next_trial(self, worker: str, result: TrialResult | None = None) -> Assignment | None:
        """Record ``result`` (if any) and give ``worker`` its next trial, or None when done."""
        with self._lock:
            if result is not None:
                self._finish(result)
            if self._stopping or self._used() + len(self._running) >= self._target:
                return None
            trial = self._mem.ask(self._dists)
            if isinstance(self._sampler, CoarseToFineSampler):
                trial.set_user_attr("stage", self._sampler.stage_of(self._mem, trial.number))
                self._sync_study_attrs()
            frozen = self._frozen(trial.number)
            if frozen.system_attrs.get("fixed_params") is not None:
                self._writer.start(frozen)
            else:
                self._writer.create(frozen)
            self._running[trial.number] = _Running(trial, worker, time.time())
            return Assignment(trial.number, dict(trial.params))

    def report(self, number: int, epoch: int, value: float) -> bool:
        """An intermediate objective value; True means the trial should stop (pruned)."""
        with self._lock:
            run = self._running.get(number)
            if run is None:
                return True  # the trial was failed meanwhile (e.g. interrupted): stop it
            run.trial.report(value, epoch)
            if epoch >= self._spec.epochs:
                return False  # its training is done: pruning now would only discard its value
            return bool(run.trial.should_prune())

    def worker_lost(self, worker: str, why: str = "worker_lost") -> int | None:
        """The worker's process died: fail its trial (not counted) and queue its params again."""
        with self._lock:
            for number, run in list(self._running.items()):
                if run.worker == worker:
                    self._fail_and_requeue(number, why)
                    return number
            return None

    def stop(self, reason: str = "interrupted") -> None:
        """Hand out no more trials; fail the running ones with ``reason`` and re-queue them."""
        with self._lock:
            self._stopping = True
            for number in list(self._running):
                self._fail_and_requeue(number, reason)

    def close(self) -> dict[str, Any]:
        """Flush every pending write; returns the final progress."""
        self._closed.set()
        self._writer.close()
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
                "best_value": None if best is None else best.value,
                "best_number": None if best is None else best.number,
                "pending_writes": self._writer.pending,
                "done": self._stopping or (self._used() >= self._target and not self._running),
                "cancelled": self._cancelled,
            }

    # --- internals ------------------------------------------------------------------------------
    def _watch_cancel(self, every_s: float) -> None:
        """``tuner cancel`` writes a request into the database; notice it within ``every_s``."""
        while not self._closed.wait(every_s):
            try:
                wanted = cancel_requested(self._storage, self._study_id)
            except Exception:  # noqa: BLE001 - the database may be down; the writer retries, so do we
                continue
            if wanted:
                with self._lock:
                    self._cancelled = True
                self.stop("cancelled")
                return

    def _sync_study_attrs(self) -> None:
        """Persist new study user attributes (coarse-to-fine boxes) behind, like trials."""
        for key, value in self._mem.user_attrs.items():
            if self._study_attrs.get(key) != value:
                self._study_attrs[key] = value
                rdb, sid = self._storage.optuna, self._study_id
                self._writer.call(lambda k=key, v=value: rdb.set_study_user_attr(sid, k, v))

    def _used(self) -> int:
        return self._counts["COMPLETE"] + self._counts["PRUNED"] + self._counts["FAIL"]

    def _best(self) -> FrozenTrial | None:
        try:
            return self._mem.best_trial
        except ValueError:
            return None

    def _frozen(self, number: int) -> FrozenTrial:
        """A snapshot of the in-memory trial: the writer reads it later, on another thread,
        while Optuna's in-memory storage goes on updating its own object in place."""
        storage = self._mem_storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self._mem_sid, number)
        return copy.deepcopy(storage.get_trial(trial_id))

    def _finish(self, result: TrialResult) -> None:
        run = self._running.pop(result.number, None)
        if run is None:
            return  # already failed by stop()/worker_lost(); the late result is dropped
        trial = run.trial
        if not result.reported:
            for point in result.curve:
                value = point.get(self._objective.metric)
                if value is not None and value == value:  # skip NaN: Optuna refuses it
                    trial.report(value, int(point["epoch"]))
        if result.reason:
            trial.set_user_attr("reason", result.reason)
        for key, value in result.metrics.items():
            trial.set_user_attr(key, value)
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
        self._writer.finish(
            self._frozen(result.number), reason=result.reason, host=result.host,
            device=result.device, worker=result.worker or run.worker, curve=result.curve,
        )

    def _fail_and_requeue(self, number: int, reason: str) -> None:
        run = self._running.pop(number)
        params = dict(run.trial.params)
        key = json.dumps(params, sort_keys=True, default=str)
        if reason == "worker_lost":
            self._losses[key] = self._losses.get(key, 0) + 1
        crashed = self._losses.get(key, 0) >= MAX_LOSSES and reason == "worker_lost"
        if crashed:  # the params themselves kill the process (host OOM, segfault): stop retrying
            reason = f"crashed: its worker died {MAX_LOSSES} times on these params"
        run.trial.set_user_attr("reason", reason)
        self._mem.tell(run.trial, state=TrialState.FAIL)
        self._writer.finish(self._frozen(number), reason=reason, host=None, device=None,
                            worker=run.worker, curve=[])
        if crashed:
            self._counts["FAIL"] += 1
        else:
            self._requeue(params)

    def _requeue(self, params: dict[str, Any]) -> None:
        self._enqueue(params)
        self._counts["requeued"] += 1

    def _enqueue(self, params: dict[str, Any], user_attrs: dict[str, Any] | None = None) -> None:
        """Queue a trial with fixed ``params`` (Optuna's enqueue, so any sampler honours it)."""
        self._mem.enqueue_trial(params, user_attrs=user_attrs, skip_if_exists=False)
        self._writer.create(self._frozen(self._mem_storage.get_n_trials(self._mem_sid) - 1))

    def _open_study(self, resume: bool) -> tuple[int, list[FrozenTrial]]:
        rdb, name = self._storage.optuna, self._spec.study
        try:
            study_id = rdb.get_study_id_from_name(name)
        except KeyError:
            study_id = None
        if not resume:
            if study_id is not None:
                raise StudyExistsError(
                    f"study '{name}' already exists in this storage; continue it with "
                    f"`tuner resume {name}` or pick a new name with --name"
                )
            study_id = rdb.create_new_study(
                [optuna.study.StudyDirection[self._objective.direction.upper()]], name)
            with self._storage.engine.begin() as conn:
                conn.execute(sa.insert(StudyRow).values(
                    study_id=study_id, study_name=name, spec_json=json.dumps(self._spec.to_json_dict()),
                    tuner_version=_version(), created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                ))
            return study_id, []
        if study_id is None:
            raise StudyNotFoundError(f"study '{name}' not found; `tuner status` lists the studies")
        return study_id, rdb.get_all_trials(study_id, deepcopy=False)

    def _load_history(self, history: list[FrozenTrial], ids: dict[int, int]) -> None:
        """Resume: copy stored trials into memory; RUNNING ones died with the old driver."""
        interrupted = []
        for t in history:
            self._writer.known(t.number, ids[t.number])
            if t.state == TrialState.RUNNING:
                interrupted.append(t)
                t = optuna.trial.create_trial(
                    params=t.params, distributions=t.distributions, state=TrialState.FAIL,
                    user_attrs={**t.user_attrs, "reason": "interrupted"}, system_attrs=t.system_attrs,
                    intermediate_values=t.intermediate_values,
                )
            self._mem.add_trial(t)
            if t.state.is_finished():
                reason = t.user_attrs.get("reason")
                if not (t.state == TrialState.FAIL and reason in INFRA_REASONS):
                    self._counts[t.state.name] += 1
        for t in interrupted:
            self._writer.finish(self._frozen(t.number), reason="interrupted", host=None,
                                device=None, worker=None, curve=[])
            self._requeue(dict(t.params))


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("tuner")
    except Exception:  # running from a source tree that is not installed
        return "0+unknown"
