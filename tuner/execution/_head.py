"""`tuner up` / `tuner down`: a local Ray head that outlives one `tuner submit`, with warm workers.

Without it every `tuner submit` pays a Ray start and stop (about 6 s here) and a cold start of
its workers (torch, the first optimizer, the data set: several seconds of CPU each). `tuner up`
starts a head process that owns a local Ray and a :class:`WarmPool` actor; a later
`tuner submit` with no ``--address`` on this machine and in this Python environment joins that
Ray instead of starting one, and takes its workers from the pool, warm from the last study. The
head stops itself after ``idle`` seconds without a study (30 minutes by default), or on
`tuner down`.

It is tuner's own Ray, found through tuner's own state file (``TUNER_STATE_DIR``, else
``$XDG_STATE_HOME/tuner`` or ``~/.local/state/tuner``): a Ray cluster some other program
started on this machine is still never joined without ``--address``.

Idle pooled workers hold their CPUs (and GPUs) in the head's Ray; nothing else runs there.
Warm workers are owned by the head, so what a trainable prints goes to the head's log
(``head.log`` beside the state file), not to the terminal of the study that ran it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray

from tuner._errors import TunerError
from tuner._text import error_line
from tuner.execution._coordinator import Coordinator
from tuner.execution._local_ray import init_local

__all__ = ["HeadInfo", "WarmPool", "PoolLease", "head_pool", "head_stats", "head_to_join", "join_head",
           "read_head", "start_head", "stop_head", "WarmCoordinator", "LEASE_S", "IDLE_S"]

NAMESPACE = "tuner"
POOL_NAME = "tuner-warm-pool"
IDLE_S = 1800.0
"""How long the head waits for the next study before it stops itself."""
LEASE_S = 30.0
"""A study renews its hold on its workers every few seconds; a driver that died (SIGKILL)
without giving them back loses them after this long, and its workers are killed."""
START_TIMEOUT_S = 120.0
_log = logging.getLogger(__name__)


def state_dir() -> Path:
    """Where the head's state file and log live."""
    root = os.environ.get("TUNER_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "tuner")
    return Path(root)


@dataclass(frozen=True)
class HeadInfo:
    """What ``head.json`` records about a running head."""

    pid: int
    address: str
    prefix: str
    """``sys.prefix`` of the head: drivers from another Python environment must not join it."""
    started: float
    idle_s: float
    log: str
    auth: str = ""
    """The head's ``RAY_AUTH_MODE`` (``token`` by default since Ray 2.5x; the token is the
    user's ``~/.ray/auth_token``)."""


def read_head() -> HeadInfo | None:
    """The running head, or None (never started, stopped, or its process is gone)."""
    path = state_dir() / "head.json"
    try:
        info = HeadInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return info if _is_head(info.pid) else None


def _is_head(pid: int) -> bool:
    """``pid`` is alive and is a tuner head (not a later process that reused the number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not ours to use
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): a live pid is the best evidence there is
    return b"tuner.execution._head" in cmdline


def start_head(idle_s: float = IDLE_S, num_cpus: int | None = None,
               num_gpus: int | None = None) -> tuple[HeadInfo, bool]:
    """Start the head in the background (or find the running one); returns it and whether it
    was started now."""
    running = read_head()
    if running is not None:
        return running, False
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "head.log"
    cmd = [sys.executable, "-m", "tuner.execution._head", "--idle-s", str(idle_s)]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, cwd=folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = read_head()
        if info is not None and info.pid == proc.pid:
            return info, True
        if proc.poll() is not None:
            raise TunerError(f"the tuner head did not start: {_last_line(log)} (log: {log})")
        time.sleep(0.1)
    proc.terminate()
    raise TunerError(f"the tuner head did not start in {START_TIMEOUT_S:.0f} s (log: {log})")


def stop_head(timeout_s: float = 60.0) -> HeadInfo | None:
    """Stop the running head (its Ray and its warm workers); None when none was up."""
    info = read_head()
    if info is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _is_head(info.pid):
        time.sleep(0.1)
    if _is_head(info.pid):
        raise TunerError(f"the tuner head (pid {info.pid}) did not stop in {timeout_s:.0f} s; "
                         f"kill it with `kill {info.pid}`")
    return info


def join_head(info: HeadInfo, **kwargs: Any) -> None:
    """``ray.init`` on the head. Ray turns token authentication on by itself only for a cluster
    it finds on its own (``address=None``/``auto``, which could be anyone's), never for an explicit
    address; the head's mode is switched on here, as Ray's own discovery does it."""
    if info.auth and not os.environ.get("RAY_AUTH_MODE"):
        from ray._raylet import Config

        os.environ["RAY_AUTH_MODE"] = info.auth
        Config.initialize("")  # Ray caches its config at import; re-read it with the mode
    ray.init(address=info.address, **kwargs)


def head_stats(info: HeadInfo) -> dict[str, int]:
    """The pool's counts (idle, studies, created, reused), read by a short-lived connection."""
    if ray.is_initialized():
        raise TunerError("head_stats needs a process that is not connected to Ray yet")
    join_head(info, logging_level=logging.WARNING, log_to_driver=False)
    try:
        return dict(ray.get(ray.get_actor(POOL_NAME, namespace=NAMESPACE).stats.remote()))
    finally:
        ray.shutdown()


def head_to_join() -> HeadInfo | None:
    """The head a driver with no ``--address`` should join: running, and of this environment."""
    info = read_head()
    if info is None:
        return None
    if os.path.realpath(info.prefix) != os.path.realpath(sys.prefix):
        _log.warning("a tuner head is up for another Python environment (%s); starting a local "
                     "Ray for this study instead", info.prefix)
        return None
    return info


def head_pool() -> Any | None:
    """The warm pool of the head this driver joined, or None (a local Ray, or a cluster)."""
    try:
        return ray.get_actor(POOL_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


WARM_CONCURRENCY = 64
"""Threads of a warm coordinator: enough for ``(64 - 8) / 2`` workers (see ``_driver``); a study
with more gets a coordinator started for it."""


class WarmCoordinator(Coordinator):
    """A coordinator process started before its study, so that a study on the head does not
    wait for a process to start and import Optuna, SQLAlchemy and the samplers (2-3 s here).
    ``start`` takes the study: it is :class:`Coordinator`'s constructor, run later."""

    def __init__(self) -> None:  # noqa: D107 - the study arrives in start()
        pass

    def start(self, *args: Any, **kwargs: Any) -> None:
        Coordinator.__init__(self, *args, **kwargs)


class WarmPool:
    """Trial workers kept between studies, as a Ray actor in the head.

    A study takes workers under a lease it renews (``renew``) and gives back the ones that are
    still alive (``give``). Workers of one resource shape are kept; a study of another shape
    gets new ones and the old idle ones are killed (they hold CPUs the new ones need). The pool
    creates the workers itself so that they outlive the driver that asked for them.
    """

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._shape: tuple[Any, ...] | None = None
        self._leases: dict[str, tuple[float, list[Any]]] = {}
        self._last = time.monotonic()
        self._created = 0
        self._reused = 0
        self._lock = threading.Lock()
        self._spare = self._new_coordinator()

    def coordinator(self, lease: str) -> Any:
        """A started coordinator process for the next study (held under ``lease``); the next
        spare starts at once, in the background."""
        with self._lock:
            actor, self._spare = self._spare, self._new_coordinator()
            self._hold(lease, [actor])
            return actor

    def take(self, lease: str, n: int, shape: tuple[Any, ...], args: tuple[Any, ...]) -> list[Any]:
        """``n`` workers of ``shape`` (warm ones first), held under ``lease``."""
        with self._lock:
            if shape != self._shape:
                self._kill(self._idle)
                self._idle, self._shape = [], shape
            taken, self._idle = self._idle[:n], self._idle[n:]
            self._reused += len(taken)
            taken += [self._new(shape, args) for _ in range(n - len(taken))]
            self._hold(lease, taken)
            return taken

    def spawn(self, lease: str, shape: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        """One new worker under ``lease`` (a replacement for one that died)."""
        with self._lock:
            actor = self._new(shape, args)
            self._hold(lease, [actor])
            return actor

    def renew(self, lease: str) -> None:
        with self._lock:
            self._hold(lease, [])

    def give(self, lease: str, actors: list[Any], shape: tuple[Any, ...]) -> None:
        """End ``lease``: ``actors`` (alive, idle) wait for the next study."""
        with self._lock:
            self._leases.pop(lease, None)
            if shape == self._shape:
                self._idle.extend(actors)
            else:
                self._kill(actors)
            self._last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last study ended (0 while one runs); expires dead drivers' leases."""
        with self._lock:
            now = time.monotonic()
            for lease, (deadline, actors) in list(self._leases.items()):
                if deadline < now:  # its driver is gone: its workers may be mid-trial for nobody
                    self._kill(actors)
                    del self._leases[lease]
                    self._last = now
            return 0.0 if self._leases else now - self._last

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"idle": len(self._idle), "studies": len(self._leases),
                    "created": self._created, "reused": self._reused}

    def _hold(self, lease: str, actors: list[Any]) -> None:
        held = self._leases.get(lease, (0.0, []))[1]
        self._leases[lease] = (time.monotonic() + LEASE_S, held + actors)

    def _new(self, shape: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        from tuner.execution._worker import TrialWorker

        cpus, gpus, _ = shape
        self._created += 1
        return ray.remote(TrialWorker).options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0).remote(*args)

    @staticmethod
    def _new_coordinator() -> Any:
        return ray.remote(WarmCoordinator).options(
            num_cpus=0, max_concurrency=WARM_CONCURRENCY, max_restarts=0).remote()

    @staticmethod
    def _kill(actors: list[Any]) -> None:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)


class PoolLease:
    """A driver's side of :class:`WarmPool`: take, spawn, renew every few seconds, give back."""

    RENEW_S = 5.0

    def __init__(self, pool: Any, shape: tuple[Any, ...], args: tuple[Any, ...]) -> None:
        self._pool, self._shape, self._args = pool, shape, args
        self._id = uuid.uuid4().hex
        self._renewed = time.monotonic()

    def take(self, n: int) -> list[Any]:
        return list(ray.get(self._pool.take.remote(self._id, n, self._shape, self._args)))

    def spawn(self) -> Any:
        return ray.get(self._pool.spawn.remote(self._id, self._shape, self._args))

    def coordinator(self) -> Any:
        return ray.get(self._pool.coordinator.remote(self._id))

    def renew(self) -> None:
        if time.monotonic() - self._renewed >= self.RENEW_S:
            self._renewed = time.monotonic()
            self._pool.renew.remote(self._id)

    def give(self, actors: list[Any]) -> None:
        with contextlib.suppress(Exception):  # the head stopping meanwhile loses nothing stored
            ray.get(self._pool.give.remote(self._id, actors, self._shape), timeout=10)


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return error_line(lines[-1]) if lines else "no output"


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner.execution._head")
    parser.add_argument("--idle-s", type=float, default=IDLE_S)
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--num-gpus", type=int, default=None)
    args = parser.parse_args(argv)
    stop = threading.Event()
    # Its dashboard agent on a free port: a Ray the user starts while the head is up keeps 52365
    # for its own job submissions (see _local_ray).
    ctx = init_local(namespace=NAMESPACE, include_dashboard=False, num_cpus=args.num_cpus,
                     num_gpus=args.num_gpus, logging_level=logging.WARNING)
    # After ray.init: Ray installs its own SIGTERM handler, and `tuner down` must stop us cleanly.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    pool = ray.remote(WarmPool).options(name=POOL_NAME, namespace=NAMESPACE, num_cpus=0,
                                        max_concurrency=64).remote()
    ray.get(pool.stats.remote())
    folder = state_dir()
    path = folder / "head.json"
    info = HeadInfo(pid=os.getpid(), address=ctx.address_info["gcs_address"],
                    prefix=sys.prefix, started=time.time(), idle_s=args.idle_s,
                    log=str(folder / "head.log"), auth=os.environ.get("RAY_AUTH_MODE", ""))
    tmp = path.with_name(f".head.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)
    print(f"tuner head up: pid {info.pid}, Ray at {info.address}", flush=True)
    try:
        while not stop.wait(1.0):
            if ray.get(pool.idle_for.remote()) > args.idle_s:
                print(f"idle for {args.idle_s:g} s: stopping", flush=True)
                break
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        ray.shutdown()
    print("tuner head stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
