"""The driver: start Ray (or join a cluster), start the coordinator and workers, show progress.

Everything that can be checked without Ray (the spec, the storage, the study name) is checked
first, so a typo costs a second, not a Ray start-up.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from tuner._errors import StudyExistsError, StudyNotFoundError, TunerError
from tuner.execution._coordinator import Coordinator
from tuner.execution._pool import return_workers, take_workers
from tuner.execution._worker import TrialWorker
from tuner.spec import StudySpec
from tuner.storage import open_storage, resolve_url

__all__ = ["run_study", "ensure_ray", "absolute_url"]

_log = logging.getLogger(__name__)
ProgressFn = Callable[[dict[str, Any]], None]


def absolute_url(url: str) -> str:
    """Make a relative SQLite path absolute: Ray workers may not share the driver's cwd."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            return "sqlite:///" + os.path.abspath(path)
    return url


def ensure_ray(address: str | None = None) -> None:
    """Join ``address`` (``auto``, ``ray://host:10001``) or start a local Ray on demand."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError) as e:
        raise TunerError(f"cannot reach the Ray cluster at {address!r}: {e}; check --address") from None


def run_study(
    spec: StudySpec, storage: str | None = None, *, address: str | None = None,
    resume: bool = False, trials: int | None = None, on_progress: ProgressFn | None = None,
    poll_s: float = 0.2,
) -> dict[str, Any]:
    """Run ``spec`` to its trial count; returns the coordinator's final progress dict."""
    url = absolute_url(resolve_url(storage))
    _check_study_name(spec.study, url, resume)
    ensure_ray(address)
    spec_json = spec.to_json_dict()
    n_workers = spec.resources.workers
    coord = ray.remote(Coordinator).options(
        num_cpus=0, max_concurrency=2 * n_workers + 8, max_restarts=0,
    ).remote(spec_json, url, resume=resume, trials=trials)
    res = spec.resources
    worker_cls = ray.remote(TrialWorker).options(
        num_cpus=res.cpus_per_trial, num_gpus=res.gpus_per_trial, max_restarts=0, max_task_retries=0,
    )
    code_dir = os.getcwd()
    shape = (res.cpus_per_trial, res.gpus_per_trial, code_dir)
    runs: dict[Any, tuple[str, Any]] = {}
    survivors: list[Any] = []
    seq = 0

    def spawn(actor: Any = None) -> None:
        nonlocal seq
        wid = f"w{seq}"
        seq += 1
        if actor is None:
            actor = worker_cls.remote(max(1, int(res.cpus_per_trial)), res.gpus_per_trial > 0, code_dir)
        runs[actor.run.remote(coord, spec_json, wid)] = (wid, actor)

    # Workers start (torch, dataset) while the coordinator opens the study: both take seconds.
    # A worker with nothing left to do gets None at once and returns to the pool.
    wanted = min(n_workers, trials if trials is not None else spec.trials)
    warm = take_workers(wanted, shape)
    for actor in warm:
        spawn(actor)
    for _ in range(wanted - len(warm)):
        spawn()
    early_deaths = 0
    try:
        _unwrap(lambda: ray.get(coord.progress.remote()))  # the study opened (or why not)
        while runs:
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
                    lost = ray.get(coord.worker_lost.remote(wid))
                    _log.warning("worker %s died (%s); trial %s re-queued", wid, type(e).__name__, lost)
                    early_deaths = early_deaths + 1 if lost is None else 0
                    if early_deaths >= 3:
                        raise TunerError(f"workers die before running any trial: {_first_line(e)}") from None
                    if not ray.get(coord.progress.remote())["done"]:
                        spawn()
            if on_progress is not None:
                on_progress(ray.get(coord.progress.remote()))
    except BaseException:
        _abort(coord, [a for _, a in runs.values()] + survivors)
        raise
    final = _unwrap(lambda: ray.get(coord.close.remote()))
    ray.kill(coord)
    return_workers(survivors)
    if on_progress is not None:
        on_progress(final)
    return final


def _abort(coord: Any, workers: list[Any]) -> None:
    """Stop: running trials -> FAIL (interrupted), writes flushed, actors gone. Never masks the
    error that brought us here (the coordinator itself may be what failed)."""
    try:
        ray.get(coord.stop.remote())
    except Exception as e:  # noqa: BLE001 - best effort on the way out
        _log.warning("could not stop the coordinator cleanly: %s", _first_line(e))
    for actor in workers:
        ray.kill(actor)
    try:
        ray.get(coord.close.remote())
    except Exception as e:  # noqa: BLE001
        _log.warning("could not flush the study's pending writes: %s", _first_line(e))
    ray.kill(coord)


def _check_study_name(name: str, url: str, resume: bool) -> None:
    storage = open_storage(url)
    try:
        storage.optuna.get_study_id_from_name(name)
        exists = True
    except KeyError:
        exists = False
    finally:
        storage.engine.dispose()
    if exists and not resume:
        raise StudyExistsError(
            f"study '{name}' already exists in this storage; continue it with `tuner resume {name}`"
            " or pick a new name with --name"
        )
    if resume and not exists:
        raise StudyNotFoundError(f"study '{name}' not found; `tuner status` lists the studies")


def _unwrap(call: Callable[[], Any]) -> Any:
    """Re-raise a TunerError raised inside an actor as itself, not wrapped by Ray."""
    try:
        return call()
    except (RayActorError, RayTaskError) as e:
        cause = getattr(e, "cause", None) or getattr(getattr(e, "error", None), "cause", None)
        if isinstance(cause, TunerError):
            raise cause from None
        raise


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__


