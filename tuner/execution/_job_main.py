"""Entrypoint of a detached study's Ray job (``python -m tuner.execution._job_main``).

``tuner submit --detach`` puts the resolved spec and the job id into the job's environment; this
runs the study on the cluster the job belongs to and logs one progress line per change, which
``tuner logs STUDY`` (or ``ray job logs``) shows. SIGTERM from ``ray job stop`` / ``tuner cancel``
stops it the same clean way as Ctrl-C: running trials are marked and re-run on ``tuner resume``.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

from tuner._errors import StudyCancelled, TunerError

__all__ = ["main"]


def main() -> NoReturn:
    try:
        code = _run()
    except StudyCancelled as e:
        print(f"cancelled: {e}", flush=True)
        code = 130
    except TunerError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = e.exit_code
    except KeyboardInterrupt:
        print("stopped: running trials were marked FAIL and re-run on `tuner resume`", flush=True)
        code = 130
    sys.exit(code)


def _run() -> int:
    import tuner
    from tuner.spec import parse_spec

    raw = os.environ.get("TUNER_JOB_SPEC")
    if not raw:
        raise TunerError("TUNER_JOB_SPEC is not set: this module is the entrypoint of jobs that "
                         "`tuner submit --detach` creates, not a command to run by hand")
    storage = os.environ.get("TUNER_STORAGE")
    if not storage:
        raise TunerError("TUNER_STORAGE is not set on the cluster: the submitted database URL held "
                         "a password, so it was not sent with the job; set TUNER_STORAGE on the "
                         "Ray nodes from a secret (see deploy/README.md)")
    spec = parse_spec(json.loads(raw))
    print(f"study '{spec.study}': {spec.trials} trials, {spec.resources.workers} workers, "
          f"job {os.environ.get('TUNER_JOB_ID', 'unknown')}", flush=True)
    trials = os.environ.get("TUNER_JOB_TRIALS")
    on_ray = functools.partial(signal.signal, signal.SIGTERM, _interrupt)  # after Ray's own
    if os.environ.get("TUNER_JOB_RESUME") == "1":
        study = tuner.resume(spec.study, storage=storage, address="auto", progress=_ProgressLog(),
                             trials=None if trials is None else int(trials), on_ray=on_ray)
    else:
        study = tuner.submit(spec, storage=storage, address="auto", progress=_ProgressLog(),
                             on_ray=on_ray)
    counts = study.counts()
    best = study.best_trials(1)
    print(f"done: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} "
          f"failed, best {best[0].value if best else None} "
          f"(trial {best[0].number if best else None})", flush=True)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _ProgressLog:
    """One line when the counts change, at most every ``every_s`` seconds (logs stay readable)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self._every_s = every_s
        self._last: tuple[int, ...] = ()
        self._at = 0.0

    def __call__(self, p: dict[str, Any]) -> None:
        key = (p["complete"], p["pruned"], p["failed"], p["running"])
        now = time.monotonic()
        if key != self._last and (now - self._at >= self._every_s or p["done"]):
            self._last, self._at = key, now
            print(f"trials {p['used']}/{p['target']}: {p['complete']} complete, {p['pruned']} "
                  f"pruned, {p['failed']} failed, {p['running']} running; best {p['best_value']}",
                  flush=True)


if __name__ == "__main__":
    main()
