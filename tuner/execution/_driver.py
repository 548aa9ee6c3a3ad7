"""The driver: start Ray (or join a cluster), start the coordinator and workers, show progress.

Everything that can be checked without Ray (the spec, the storage, the study name) is checked
first, so a typo costs a second, not a Ray start-up.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner._errors import SpecError, StorageError, StudyCancelled, TunerError
from tuner._text import error_line
from tuner.execution._coordinator import Coordinator
from tuner.execution._head import (WARM_CONCURRENCY, PoolLease, head_pool, head_to_join,
                                   join_head)
from tuner.execution._local_ray import init_local
from tuner.execution._pool import return_workers, take_workers
from tuner.execution._worker import TrialWorker
from tuner.execution._writer import RETRY_S
from tuner.spec import StudySpec
from tuner.storage import Storage, get_storage
from tuner.storage._runs import Run, begin_run, end_run

__all__ = ["run_study", "ensure_ray"]

_log = logging.getLogger(__name__)
ProgressFn = Callable[[dict[str, Any]], None]
DONE_GRACE_S = 10.0
"""How long, once every outcome is stored, the driver waits for workers still to report."""
ABORT_FLUSH_S = 30.0
"""How long a stopping study waits for its pending writes; what is not stored re-runs on resume."""


def ensure_ray(address: str | None = None) -> None:
    """Join ``address`` (``auto``, ``ray://host:10001``), the head `tuner up` started, or start a
    local Ray on demand.

    With no address (and no ``$RAY_ADDRESS``) a running tuner head of this Python environment
    is joined (see ``_head``); else a *new* local Ray starts, even when some other process runs
    a cluster on this machine (``ray.init()`` alone would join that one): the embedded default
    must not borrow a stranger's resources. ``--address auto`` joins it.
    """
    global _on_head
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    _on_head = False
    if address is None and not os.environ.get("RAY_ADDRESS"):
        head = head_to_join()
        if head is not None:
            try:
                join_head(head, **kwargs)
                _on_head = True
                return
            except (ConnectionError, ValueError) as e:  # it stopped meanwhile: start our own
                _log.warning("could not join the tuner head (%s); starting a local Ray",
                             error_line(e))
        init_local(include_dashboard=False, **kwargs)  # see _local_ray: port 52365 stays free
        return
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError) as e:
        raise TunerError(f"cannot reach the Ray cluster at {address!r}: {e}; check --address") from None


_on_head = False
"""This process joined the head of `tuner up` (its workers come from the head's pool)."""


def run_study(
    spec: StudySpec, storage: Storage | str | None = None, *, address: str | None = None,
    resume: bool = False, trials: int | None = None, on_progress: ProgressFn | None = None,
    poll_s: float = 0.2, job: dict[str, Any] | None = None,
    warm_start: list[dict[str, Any]] | None = None, on_ray: Callable[[], None] | None = None,
    retry_for_s: float = RETRY_S,
) -> dict[str, Any]:
    """Run ``spec`` to its trial count; returns the coordinator's final progress dict.

    The study is created (or, with ``resume``, taken over) and its lease taken on this process,
    before Ray starts: a taken name or a study another driver runs fails in a second, and a study
    exists whole or not at all. ``on_ray`` runs once Ray is up (the CLI installs its signal
    handlers there, after Ray's own). ``job`` (``{"id", "address"}``; by default from the
    ``TUNER_JOB_*`` variables of a ``--detach`` job) is recorded on the study. Raises :class:`StudyCancelled` when ``tuner cancel``
    stops the study meanwhile, :class:`StorageError` when the database is lost past
    ``retry_for_s``; every error is a :class:`TunerError` with a one-line message.
    """
    if job is None and os.environ.get("TUNER_JOB_ID"):  # the Ray job `submit --detach` made
        job = {"id": os.environ["TUNER_JOB_ID"], "address": os.environ.get("TUNER_JOB_ADDRESS")}
    store = get_storage(storage, create=True)
    url = store.url
    owned = not isinstance(storage, Storage)  # what we opened, we close
    try:
        run = begin_run(store, spec.study, resume=resume, direction=spec.objective.direction,
                        spec_json=spec.to_json_dict(), version=_version())
    except BaseException:
        if owned:
            store.engine.dispose()
        raise
    try:
        ensure_ray(address)
        if on_ray is not None:
            on_ray()
        _check_fits(spec, strict=address is None)
        return _drive(spec, url, run, address=address, resume=resume, trials=trials,
                      on_progress=on_progress, poll_s=poll_s, job=job, warm_start=warm_start,
                      retry_for_s=retry_for_s)
    except RayError as e:  # anything Ray wraps that is not one of ours: one line, not a dump
        cause = getattr(e, "cause", None)
        if isinstance(cause, TunerError):
            raise cause from None
        raise TunerError(f"the study stopped: {error_line(e)}") from None
    finally:
        try:
            end_run(store, run)
        except Exception as e:  # noqa: BLE001 - a stale lease is taken over by the next resume
            _log.warning("could not release the study's lease: %s", error_line(e))
        if owned:
            store.engine.dispose()


def _drive(spec: StudySpec, url: str, run: Run, *, address: str | None, resume: bool,
           trials: int | None, on_progress: ProgressFn | None, poll_s: float,
           job: dict[str, Any] | None, warm_start: list[dict[str, Any]] | None,
           retry_for_s: float) -> dict[str, Any]:
    n_workers = spec.resources.workers
    res = spec.resources
    code_dir = os.getcwd()
    shape = (res.cpus_per_trial, res.gpus_per_trial, code_dir)
    args = (max(1, int(res.cpus_per_trial)), res.gpus_per_trial > 0, code_dir)
    # On the head of `tuner up`, workers come from (and go back to) its pool and outlive us, and
    # the coordinator's process is started before the study arrives.
    pool = head_pool() if _on_head else None
    lease = PoolLease(pool, shape, args) if pool is not None else None
    concurrency = 2 * n_workers + 8
    study = dict(run=run, resume=resume, trials=trials, job=job, warm_start=warm_start,
                 retry_for_s=retry_for_s)
    if lease is not None and concurrency <= WARM_CONCURRENCY:
        coord = lease.coordinator()
        try:  # before any worker calls it: a threaded actor runs calls in no set order
            _unwrap(lambda: ray.get(coord.start.remote(spec, url, **study)))
        except BaseException:
            ray.kill(coord)
            lease.give([])
            raise
        started = coord.progress.remote()
    else:
        # Beside the driver (the head node for jobs and Ray Client): a GPU node that goes away
        # must not take the study's only copy of its in-memory state with it.
        coord = ray.remote(Coordinator).options(
            num_cpus=0, max_concurrency=concurrency, max_restarts=0,
            scheduling_strategy=_near_driver(),
        ).remote(spec, url, **study)
        started = coord.progress.remote()
    worker_cls = ray.remote(TrialWorker).options(
        num_cpus=res.cpus_per_trial, num_gpus=res.gpus_per_trial, max_restarts=0, max_task_retries=0,
    )
    runs: dict[Any, tuple[str, Any]] = {}
    survivors: list[Any] = []
    killed: set[str] = set()  # workers killed on purpose (their trial timed out)
    seq = 0

    def spawn(actor: Any = None) -> None:
        nonlocal seq
        wid = f"w{seq}"
        seq += 1
        if actor is None:
            actor = lease.spawn() if lease is not None else worker_cls.remote(*args)
        runs[actor.run.remote(coord, spec, wid)] = (wid, actor)

    # Workers start (torch, dataset) while the coordinator loads the study: both take seconds.
    # A worker with nothing left to do gets None at once and returns to the pool.
    wanted = min(n_workers, trials if trials is not None else spec.trials)
    warm = lease.take(wanted) if lease is not None else take_workers(wanted, shape)
    for actor in warm:
        spawn(actor)
    for _ in range(wanted - len(warm)):
        spawn()
    early_deaths = 0
    done_at: float | None = None
    try:
        _unwrap(lambda: ray.get(started))  # the coordinator started (or why not)
        while runs:
            if lease is not None:
                lease.renew()
            ready, _ = ray.wait(list(runs), num_returns=1, timeout=poll_s)
            for ref in ready:
                wid, actor = runs.pop(ref)
                try:
                    ray.get(ref)
                    survivors.append(actor)
                    continue
                except (RayActorError, RayTaskError) as e:
                    ray.kill(actor)
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, TunerError):
                        raise cause from None  # e.g. the trainable does not import on the worker
                    if wid in killed:  # its trial timed out: it was failed and counted already
                        killed.discard(wid)
                    else:
                        lost = ray.get(coord.worker_lost.remote(wid))
                        _log.warning("worker %s died (%s); trial %s re-queued", wid,
                                     type(e).__name__, lost)
                        early_deaths = early_deaths + 1 if lost is None else 0
                        if early_deaths >= 3:
                            raise TunerError("workers die before running any trial: "
                                             f"{error_line(e)}") from None
                    if not ray.get(coord.progress.remote())["done"]:
                        spawn()
            for wid in ray.get(coord.take_timed_out.remote()):
                for ref, (other, actor) in runs.items():
                    if other == wid:
                        killed.add(wid)
                        ray.kill(actor)  # a hung trainable cannot be stopped from inside
            progress = ray.get(coord.progress.remote())
            if on_progress is not None:
                on_progress(progress)
            if progress["fatal"]:
                raise StorageError(progress["fatal"])
            if progress["done"] and runs:
                # Every outcome is in: what still runs only fetches its "nothing left". A worker
                # Ray cannot place (its node died and no CPU is free for the replacement) never
                # would, so after a grace period the study ends without it.
                done_at = done_at if done_at is not None else time.monotonic()
                if time.monotonic() - done_at > DONE_GRACE_S:
                    for _, actor in runs.values():
                        ray.kill(actor)
                    runs.clear()
            if progress["cancelled"]:  # running trials were failed and re-queued; stop them now
                raise StudyCancelled(
                    f"study '{spec.study}' was cancelled: {progress['complete']} complete, "
                    f"{progress['pruned']} pruned, {progress['failed']} failed; "
                    f"continue it with `tuner resume {spec.study}`")
    except BaseException:
        _abort(coord, [a for _, a in runs.values()] + survivors)
        if lease is not None:
            lease.give([])
        raise
    final = _unwrap(lambda: ray.get(coord.close.remote()))
    ray.kill(coord)
    if lease is not None:
        lease.give(survivors)
    else:
        return_workers(survivors)
    if on_progress is not None:
        on_progress(final)
    return final


def _near_driver() -> Any:
    try:
        return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    except Exception:  # noqa: BLE001 - no node id (some Ray Client setups): Ray's default then
        return "DEFAULT"


def _check_fits(spec: StudySpec, strict: bool) -> None:
    """A trial no node can hold would wait forever. On a cluster an autoscaler may add such a
    node, so that is only a warning there; on this machine it is an error that says the fix."""
    res = spec.resources
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, want, field in (("CPU", res.cpus_per_trial, "cpus_per_trial"),
                             ("GPU", res.gpus_per_trial, "gpus_per_trial")):
        most = max((n.get(key, 0.0) for n in nodes), default=0.0)
        if want <= most:
            continue
        msg = (f"{want:g} {key}s per trial, but the largest Ray node has {most:g}; "
               + ("set 0 to train on the CPU, or run on a GPU cluster with --address"
                  if key == "GPU" else f"lower resources.{field} to at most {most:g}"))
        if strict:
            raise SpecError(f"resources.{field}", msg)
        _log.warning("%s (waiting for the autoscaler to add such a node)", msg)


def _abort(coord: Any, workers: list[Any]) -> None:
    """Stop: running trials -> FAIL (interrupted), writes flushed, actors gone. Never masks the
    error that brought us here (the coordinator itself may be what failed)."""
    try:
        ray.get(coord.stop.remote())
    except Exception as e:  # noqa: BLE001 - best effort on the way out
        _log.warning("could not stop the coordinator cleanly: %s", error_line(e))
    for actor in workers:
        ray.kill(actor)
    try:
        ray.get(coord.close.remote(ABORT_FLUSH_S), timeout=ABORT_FLUSH_S + 5)
    except Exception as e:  # noqa: BLE001
        _log.warning("could not flush the study's pending writes: %s", error_line(e))
    ray.kill(coord)


def _unwrap(call: Callable[[], Any]) -> Any:
    """Re-raise a TunerError raised inside an actor as itself, not wrapped by Ray."""
    try:
        return call()
    except (RayActorError, RayTaskError) as e:
        cause = getattr(e, "cause", None) or getattr(getattr(e, "error", None), "cause", None)
        if isinstance(cause, TunerError):
            raise cause from None
        raise


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("tuner")
    except Exception:  # noqa: BLE001 - running from a source tree that is not installed
        return "0+unknown"


