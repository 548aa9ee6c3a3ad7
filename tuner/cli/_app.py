"""The ``tuner`` command line (Typer). Exit codes: 0 ok, 1 failure, 2 bad input, 130 Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape

import tuner
from tuner._errors import TunerError
from tuner._secrets import scrub
from tuner._study import STATES
from tuner._text import MAX_LINE, one_line
from tuner.cli._format import render_rows, render_trials
from tuner.cli._progress import StudyProgress
from tuner.spec import SAMPLER_KINDS
from tuner.storage import ENV_VAR

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hyperparameter tuning for PyTorch networks: Optuna decides, Ray runs, SQL keeps.")
out = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True)
T = TypeVar("T")

StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", help="Database URL (default: $TUNER_STORAGE or sqlite:///tuner.db).")]


class Fmt(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _interrupt_on_term() -> None:
    """SIGTERM (a scheduler, ``kill``) and SIGINT stop a study the same clean way as Ctrl-C.

    Installed after Ray starts: Ray's driver replaces SIGTERM with a handler that aborts.

    A process started in the background by a non-interactive shell inherits SIGINT as ignored;
    a study must still be stoppable there.
    """
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _error_line(e: TunerError) -> str:
    """The one line an error prints: no database password (from --storage or $TUNER_STORAGE, in
    any form), no line breaks or control characters, at most ``MAX_LINE`` characters."""
    ctx = click.get_current_context(silent=True)
    urls = [ctx.params.get("storage") if ctx is not None else None, os.environ.get(ENV_VAR)]
    return one_line("error: " + scrub(str(e), urls), MAX_LINE)


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body: TunerError -> one line on stderr and its exit code; ^C -> 130."""
    try:
        return fn()
    except TunerError as e:
        line = _error_line(e).removeprefix("error: ")
        # escaped: a message may hold brackets (pip install 'tuner[dashboard]') that are not markup
        err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True,
                  emoji=False)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted: running trials were marked FAIL (interrupted) and will re-run on "
                  "`tuner resume`")
        raise typer.Exit(130) from None


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="Study spec (YAML).")],
    name: Annotated[Optional[str], typer.Option(help="Study name (overrides `study:`).")] = None,
    storage: StorageOpt = None,
    trials: Annotated[Optional[int], typer.Option(help="Number of trials.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Concurrent trials.")] = None,
    sampler: Annotated[Optional[str], typer.Option(help=" | ".join(SAMPLER_KINDS))] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampler seed.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per trial.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster (auto, ray://host:10001).")] = None,
    warm_start: Annotated[Optional[str], typer.Option(
        "--warm-start", help="Run this stored study's best configurations first.")] = None,
    warm_start_k: Annotated[int, typer.Option(
        "--warm-start-k", min=1, help="How many of its best configurations.")] = 5,
    detach: Annotated[bool, typer.Option(
        "--detach", help="Submit as a Ray job and return its id at once (see `tuner cancel`).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a study to completion (local Ray by default), then print the best trials."""
    def body() -> None:
        if detach and warm_start is not None:
            raise tuner.SpecError("--warm-start", "does not work with --detach yet; run the "
                                  "study in the foreground, or drop --warm-start")
        # a detached study runs on the cluster, which decides what fits
        parsed = tuner.validate(spec, address=address, resources=not detach, name=name,
                                trials=trials, workers=workers, sampler=sampler, seed=seed,
                                epochs=epochs, storage=storage, warm_start=warm_start,
                                warm_start_k=warm_start_k)
        if detach:
            _detach(parsed, storage, address)
            return
        with StudyProgress(err, parsed.study, enabled=not quiet) as bar, _warnings_on_stderr():
            study = tuner.submit(parsed, storage=storage, address=address, warm_start=warm_start,
                                 warm_start_k=warm_start_k, progress=bar.update,
                                 on_ray=_interrupt_on_term)
        _finish(study)
    _guard(body)


@app.command()
def resume(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    trials: Annotated[Optional[int], typer.Option(help="New total trial count.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address.")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Resume as a Ray job.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Continue a stored study to its trial count; trials interrupted by a crash run again."""
    def body() -> None:
        spec = tuner.load_study(study, storage).spec  # a missing study: one line, no Ray
        if spec is None:
            raise tuner.StudyNotFoundError(
                f"study '{study}' was not created by tuner; it has no spec to resume")
        if detach:
            _detach(spec, storage, address, resume=True, trials=trials)
            return
        with StudyProgress(err, study, enabled=not quiet) as bar:
            _finish(tuner.resume(study, storage=storage, address=address, trials=trials,
                                 progress=bar.update, on_ray=_interrupt_on_term))
    _guard(body)


def _detach(spec: Any, storage: str | None, address: str | None, *, resume: bool = False,
            trials: int | None = None) -> None:
    from tuner.execution._jobs import submit_detached
    from tuner.storage import resolve_url

    job = submit_detached(spec, resolve_url(storage), address, resume=resume, trials=trials)
    out.print(job.job_id, highlight=False)
    if not job.storage_shipped:
        err.print("note: the database URL holds a password, so it was not sent with the job; the "
                  "job uses the cluster's $TUNER_STORAGE (see deploy/README.md)")
    where = f" --address {address}" if address else ""
    err.print(f"submitted study '{job.study}' as Ray job {job.job_id} at {job.address}; "
              f"watch: `tuner status{where}`, logs: `tuner logs {job.study}`, "
              f"stop: `tuner cancel {job.study}`", highlight=False, soft_wrap=True)


def _finish(study: tuner.Study) -> None:
    c = study.counts()
    packs = study.pack_sizes()
    packed = f"; {sum(packs.values())} trained in packs of up to {max(packs)} trials " \
        "(resources.pack)" if packs else ""
    err.print(f"study '{study.name}': {c['COMPLETE']} complete, {c['PRUNED']} pruned, "
              f"{c['FAIL']} failed{packed}", soft_wrap=True)
    best = study.best_trials(5)
    if best:
        render_trials(out, best, "table", f"best trials of {study.name}", wide=False, ranked=True)


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """A ``UserWarning`` from the API (what a warm start dropped) as one ``warning:`` line."""
    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        err.print(f"warning: {message}", highlight=False, soft_wrap=True, markup=False)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="Study spec (YAML).")],
    address: Annotated[Optional[str], typer.Option(
        help="The Ray cluster it will run on: resources are then not checked against this "
             "machine.")] = None,
) -> None:
    """Check a spec without running it: every check `submit` makes before Ray starts (fields,
    ranges, the dataset file, trainable import, built-in values, sampler, resources)."""
    def body() -> None:
        from tuner.samplers import grid_size

        parsed = tuner.validate(spec, address=address)
        extra = f", grid of {grid_size(parsed)}" if parsed.sampler.kind == "grid" else ""
        out.print(f"ok: study '{parsed.study}', {len(parsed.params)} params, {parsed.trials} trials,"
                  f" sampler {parsed.sampler.kind}{extra}")
    _guard(body)


@app.command()
def status(
    storage: StorageOpt = None, format: Annotated[Fmt, typer.Option("--format")] = Fmt.table,
    address: Annotated[Optional[str], typer.Option(
        help="Also list the studies submitted to this Ray cluster with --detach.")] = None,
) -> None:
    """Every study: state, counts by trial state, best value (and its Ray job, if detached)."""
    def body() -> None:
        from tuner.execution._jobs import study_status

        rows = study_status(storage, address)
        if not rows and format == Fmt.table:
            out.print("no studies yet; run `tuner submit SPEC`")
            return
        render_rows(out, rows, format.value, "studies")
    _guard(body)


db_app = typer.Typer(no_args_is_help=True, help="The study database (tuner's tables beside Optuna's).")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(storage: StorageOpt = None) -> None:
    """Create tuner's tables, or migrate them to this version. Reading commands (status, best,
    trials, the dashboard) never do: they run on read-only roles and files. Submit and resume
    do it themselves."""
    def body() -> None:
        from tuner.storage import open_storage, redact
        from tuner.storage._migrate import head_revision

        st = open_storage(storage, create=True)
        st.engine.dispose()
        out.print(f"ok: tuner's tables in {redact(st.url)} are at revision {head_revision()}",
                  highlight=False, soft_wrap=True)
    _guard(body)


@app.command()
def cancel(
    study: Annotated[str, typer.Argument(help="Study name.")], storage: StorageOpt = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster of a detached study.")] = None,
) -> None:
    """Stop a study (foreground or --detach): running trials re-run on `tuner resume`."""
    def body() -> None:
        from tuner.execution._jobs import cancel_study

        for line in cancel_study(study, storage, address):
            err.print(line, highlight=False)
    _guard(body)


@app.command()
def logs(
    study: Annotated[str, typer.Argument(help="Study name.")], storage: StorageOpt = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster of the detached study.")] = None,
) -> None:
    """The driver log of a study submitted with --detach."""
    def body() -> None:
        from tuner.execution._jobs import job_logs

        print(job_logs(study, storage, address), end="")
    _guard(body)


@app.command()
def best(
    study: Annotated[str, typer.Argument()], k: Annotated[int, typer.Option("--k", min=1)] = 5,
    storage: StorageOpt = None, format: Annotated[Fmt, typer.Option("--format")] = Fmt.table,
    wide: Annotated[bool, typer.Option(
        "--wide", help="Also duration, epochs, reason, host and device (the table only: json "
                       "and csv always carry every column).")] = False,
) -> None:
    """The k best complete trials of a study: rank, trial number, value, state, stage and params."""
    _guard(lambda: render_trials(out, tuner.load_study(study, storage).best_trials(k),
                                 format.value, f"best {k} of {study}", wide=wide, ranked=True))


@app.command()
def trials(
    study: Annotated[str, typer.Argument()],
    state: Annotated[Optional[list[str]], typer.Option(help=f"{', '.join(STATES)} (repeatable)")] = None,
    storage: StorageOpt = None, format: Annotated[Fmt, typer.Option("--format")] = Fmt.table,
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
) -> None:
    """Trials of a study by number."""
    def body() -> None:

        for s in state or []:
            if s.upper() not in STATES:
                raise tuner.SpecError("--state", f"unknown state '{s}'; use one of {', '.join(STATES)}")
        render_trials(out, tuner.load_study(study, storage).trials(state, limit=limit),
                      format.value, f"trials of {study}")
    _guard(body)


@app.command()
def spaces() -> None:
    """The specs shipped with tuner (copy one and edit it)."""
    def body() -> None:
        from tuner._spaces import DIR

        rows = []
        for path in sorted(DIR.glob("*.yaml")):
            s = tuner.load_spec(path)
            rows.append({"file": str(path), "study": s.study, "trainable": s.trainable,
                         "dataset": s.dataset.name if s.dataset else "-",
                         "params": ", ".join(s.params), "trials": s.trials})
        render_rows(out, rows, "table", "shipped search spaces")
    _guard(body)


@app.command()
def dashboard(
    storage: StorageOpt = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option(
        help="Address to bind; 0.0.0.0 exposes the dashboard to the network.")] = "127.0.0.1",
) -> None:
    """Watch studies live in the browser (Streamlit): read-only, until Ctrl-C."""
    from tuner.cli._dashboard import run_dashboard

    code = _guard(lambda: run_dashboard(storage, host=host, port=port))
    if code:
        raise typer.Exit(code)


@app.command()
def up(
    idle_minutes: Annotated[float, typer.Option(
        min=0.0, help="Stop by itself after this long without a study.")] = 30.0,
    cpus: Annotated[Optional[int], typer.Option(min=1, help="CPUs it offers (default: all).")] = None,
    gpus: Annotated[Optional[int], typer.Option(min=0, help="GPUs it offers (default: all).")] = None,
) -> None:
    """Keep a local Ray and warm workers up between studies: a later `tuner submit` on this
    machine joins it (no Ray start, no cold workers). Stops when idle, or on `tuner down`."""
    from tuner.execution._head import head_stats, start_head

    def body() -> None:
        info, started = start_head(idle_s=idle_minutes * 60.0, num_cpus=cpus, num_gpus=gpus)
        if started:
            out.print(f"tuner head up: pid {info.pid}, Ray at {info.address}; stops after "
                      f"{info.idle_s / 60:g} min without a study (log: {info.log})")
            return
        stats = head_stats(info)
        out.print(f"tuner head already up: pid {info.pid}, Ray at {info.address}; "
                  f"{stats['idle']} warm workers idle, {stats['studies']} studies running, "
                  f"{stats['created']} workers started, {stats['reused']} reused")
    _guard(body)


@app.command()
def down() -> None:
    """Stop the local Ray and warm workers of `tuner up` (studies running on it are stopped as
    Ctrl-C stops them: their running trials re-run on `tuner resume`)."""
    from tuner.execution._head import stop_head

    def body() -> None:
        info = stop_head()
        out.print("no tuner head is up" if info is None else f"tuner head stopped (pid {info.pid})")
    _guard(body)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the study spec (for editor completion and validation)."""
    print(json.dumps(tuner.spec.spec_json_schema(), indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
