"""The public read API: ``load_study``, ``list_studies`` and the ``Study`` object.

Everything that reads a study goes through here: the CLI, the dashboard and a notebook alike.
Each read is answered in SQL (``tuner.storage._reads``: best-k is ORDER BY ... LIMIT, counts one
GROUP BY, tables one page, plots a sample), so it stays fast on a 100,000-trial study and never
blocks the study's writer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tuner._errors import StudyNotFoundError
from tuner.storage import EmptyStorageError, Storage, get_storage, redact
from tuner.storage import _reads as r
from tuner.storage._engine import REOPEN_S
from tuner.storage._reads import SORT_KEYS, STATES
from tuner.storage._transient import retry_disconnects

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from sqlalchemy.engine import Engine

    from tuner.spec import StudySpec

__all__ = ["Study", "TrialRecord", "TrialPage", "StudySummary", "StageInfo", "load_study",
           "list_studies", "STATES", "SORT_KEYS"]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as tuner reports it (the value the network used for every param)."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    duration_s: float | None
    reason: str | None = None
    host: str | None = None
    device: str | None = None
    epochs_run: int | None = None
    stage: int | None = None
    datetime_start: dt.datetime | None = None
    datetime_complete: dt.datetime | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``number``, ``value``, ``state``, ``params``, ``duration_s`` and the rest."""
        return {
            "number": self.number, "value": self.value, "state": self.state,
            "params": self.params, "duration_s": self.duration_s, "reason": self.reason,
            "host": self.host, "device": self.device, "epochs_run": self.epochs_run,
            "stage": self.stage,
            "datetime_start": _iso(self.datetime_start),
            "datetime_complete": _iso(self.datetime_complete),
        }


@dataclass(frozen=True)
class TrialPage:
    """One page of a trial table: ``total`` trials match the filters; ``trials`` is this page."""

    total: int
    trials: list[TrialRecord]
    offset: int
    limit: int


@dataclass(frozen=True)
class StageInfo:
    """One coarse-to-fine stage: its search box and the trials drawn in it."""

    stage: int
    box: dict[str, Any]
    scale_box: dict[str, Any]
    trials: list[int]
    top_trials: list[int] = field(default_factory=list)  # the earlier trials the box came from


@dataclass(frozen=True)
class StudySummary:
    """One line of ``tuner status``: counts by state and the best value."""

    name: str
    direction: str
    counts: dict[str, int]
    best_value: float | None
    started: dt.datetime | None
    last: dt.datetime | None
    created_at: dt.datetime | None
    other_writers: int = 0
    """Trials of this study that another writer (a plain Optuna process) ran; not tuner's
    budget. For a study tuner did not create, every trial."""

    @property
    def state(self) -> str:
        return "running" if self.counts.get("RUNNING", 0) else "idle"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "direction": self.direction, "state": self.state,
            "complete": self.counts.get("COMPLETE", 0), "running": self.counts.get("RUNNING", 0),
            "pruned": self.counts.get("PRUNED", 0), "failed": self.counts.get("FAIL", 0),
            "waiting": self.counts.get("WAITING", 0), "other_writers": self.other_writers,
            "best_value": self.best_value,
            "started": _iso(self.started), "last": _iso(self.last),
        }


class Study:
    """A stored study; obtain one with :func:`load_study`.

    Trial reads (``best_trials``, ``trials``, ``trial``, ``trial_page``), aggregates (``counts``,
    ``best_so_far``, ``progress``, ``stage_counts``, ``stages``), plot samples (``param_table``)
    and curves (``curve``, ``curves``): each paged, sampled or aggregated in SQL, so a study of
    any size costs a few small result sets.
    """

    def __init__(self, storage: Storage, study_id: int, name: str, direction: str) -> None:
        self._storage = storage
        self._id = study_id
        self.name = name
        self.direction = direction.lower()

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, storage={redact(self._storage.url)!r})"

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    # --- trials ------------------------------------------------------------------------------
    @property
    def best_trial(self) -> TrialRecord:
        """The best COMPLETE trial; ``ValueError`` if none has completed yet."""
        best = self.best_trials(1)
        if not best:
            raise ValueError(f"study '{self.name}' has no complete trial yet")
        return best[0]

    def best_trials(self, k: int = 5) -> list[TrialRecord]:
        """The ``k`` best COMPLETE trials, best first (ties: lower number first)."""
        return self._records(r.best_trial_rows(self._engine, self._id, self.maximize, k))

    def trials(self, states: Iterable[str] | None = None, *, limit: int | None = None,
               offset: int = 0) -> list[TrialRecord]:
        """Trials by number, optionally only ``states`` (e.g. ``["COMPLETE"]``) and paged."""
        rows = r.trial_rows(self._engine, self._id, _upper(states), limit=limit, offset=offset)
        return self._records(rows)

    def trial(self, number: int) -> TrialRecord | None:
        """Trial ``number`` with its user attributes, or None if the study has no such trial."""
        row = r.trial_row(self._engine, self._id, number)
        if row is None:
            return None
        attrs = r.user_attrs_for(self._engine, [row["trial_id"]])[row["trial_id"]]
        return replace(self._records([row])[0], user_attrs=attrs)

    def trial_page(
        self, *, states: Iterable[str] | None = None, stage: int | None = None,
        search: str | None = None, sort: str = "number", descending: bool = False,
        limit: int = 50, offset: int = 0,
    ) -> TrialPage:
        """Trials filtered by state/stage/text, sorted, one page: LIMIT/OFFSET run in SQL.

        ``search`` matches the reason, host or device (substring, any case) or a trial number;
        ``sort`` is one of :data:`SORT_KEYS` or ``param:<name>`` (unset values last).
        """
        limit, offset = max(1, limit), max(0, offset)
        total, rows = r.trial_page(self._engine, self._id, states=_upper(states), stage=stage,
                                   search=search, sort=sort, descending=descending,
                                   limit=limit, offset=offset)
        return TrialPage(total, self._records(rows), offset, limit)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per trial; params as ``params_<name>`` columns."""
        import pandas as pd

        rows = []
        for t in self.trials():
            row = {k: v for k, v in t.to_dict().items() if k != "params"}
            row.update({f"params_{k}": v for k, v in t.params.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def param_table(self, max_trials: int = 2000, *, states: Sequence[str] = ("COMPLETE",),
                    top: int = 100) -> pd.DataFrame:
        """A plot-ready sample of trials: every k-th trial plus the ``top`` best, one row each.

        Columns: ``number``, ``state``, ``value``, ``stage``, ``duration_s``, ``reason``,
        ``datetime_complete`` and one ``params_<name>`` column per parameter (the value the
        network used). All trials when the study has at most ``max_trials`` in ``states``.
        """
        import pandas as pd

        ids = r.sample_ids(self._engine, self._id, _upper(states) or [], max_trials, top,
                           self.maximize)
        records = self._records(r.rows_for(self._engine, ids))
        columns = ["number", "state", "value", "stage", "duration_s", "reason", "datetime_complete"]
        out = [{**{c: getattr(t, c) for c in columns},
                **{f"params_{k}": v for k, v in t.params.items()}} for t in records]
        params = sorted({k for row in out for k in row if k.startswith("params_")})
        return pd.DataFrame(out, columns=columns + params)

    # --- aggregates ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Trials by state (each of :data:`STATES`, 0 if none)."""
        return _counts(r.state_counts(self._engine, [self._id]).get(self._id, {}))

    def pack_sizes(self) -> dict[int, int]:
        """Pack size -> trials trained in fused packs of that size (``resources.pack``); empty
        when every trial ran alone. Says what ``pack: auto`` chose on the workers' devices."""
        return r.pack_sizes(self._engine, self._id)

    def best_so_far(self) -> pd.DataFrame:
        """The trials that set a new best value, by number: ``number``, ``value``,
        ``datetime_complete`` (a step line of the optimisation; a few rows even at 100k trials)."""
        import pandas as pd

        rows = r.best_so_far(self._engine, self._id, self.maximize)
        return pd.DataFrame(rows, columns=["number", "value", "datetime_complete"])

    def progress(self, points: int = 300) -> pd.DataFrame:
        """Finished trials over time, thinned in SQL to about ``points`` rows:
        ``datetime_complete``, ``finished`` (the running count)."""
        import pandas as pd

        rows = r.progress(self._engine, self._id, points)
        return pd.DataFrame(rows, columns=["datetime_complete", "finished"])

    def stage_counts(self) -> dict[int, int]:
        """Coarse-to-fine stage -> number of trials drawn in it (empty for other samplers)."""
        return r.stage_counts(self._engine, self._id)

    def stages(self, *, trials: bool = True) -> list[StageInfo]:
        """Coarse-to-fine stages: each stage's box and its trial numbers (empty for other samplers).

        ``box`` is in values (lr 1e-3..1e-2, beta 0.99..0.999); ``scale_box`` in each
        parameter's sampling coordinate (log10 lr, log10(1-beta), log2 batch size).
        ``trials=False`` skips the trial numbers (each ``StageInfo.trials`` is empty): the boxes
        alone are two small reads, the numbers one row per trial.
        """
        from tuner.samplers import box_values, decode_box, stored_boxes

        spec = self.spec
        records = stored_boxes(self._storage.optuna.get_study_user_attrs(self._id))
        numbers = r.stage_numbers(self._engine, self._id) if trials else {}
        out = []
        for stage in sorted(set(numbers) | set(records)):
            record = records.get(stage, {})
            scale_box: dict[str, Any] = decode_box(record.get("params", {}))
            box: dict[str, Any] = box_values(scale_box, spec.params if spec else {})
            out.append(StageInfo(stage, box, scale_box, numbers.get(stage, []),
                                 list(record.get("top_trials", []))))
        return out

    # --- curves --------------------------------------------------------------------------------
    def curve(self, trial_number: int) -> pd.DataFrame:
        """Per-epoch metrics of one trial (``epoch``, ``train_loss``, ``val_loss``, ...)."""
        import pandas as pd

        points = r.curve_points(self._engine, self._id, [trial_number])
        return pd.DataFrame([{"epoch": e, **m} for _, e, m in points])

    def curves(self, numbers: Sequence[int]) -> pd.DataFrame:
        """Per-epoch metrics of several trials in one query: ``number``, ``epoch``, metrics."""
        import pandas as pd

        points = r.curve_points(self._engine, self._id, [int(n) for n in numbers])
        rows = [{"number": n, "epoch": e, **m} for n, e, m in points]
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["number", "epoch"])

    # --- the study itself ----------------------------------------------------------------------
    @property
    def spec(self) -> StudySpec | None:
        """The spec the study was submitted with (None for studies tuner did not create)."""
        from tuner.spec import parse_spec

        raw = r.study_spec_json(self._engine, self._id)
        return None if raw is None else parse_spec(raw)

    def to_optuna(self) -> optuna.Study:
        """The same study through plain Optuna."""
        import optuna

        return optuna.load_study(study_name=self.name, storage=self._storage.optuna)

    @property
    def _engine(self) -> Engine:
        return self._storage.engine

    def _records(self, rows: list[dict[str, Any]]) -> list[TrialRecord]:
        """Trial rows as records, with their params and stages (two queries for all of them)."""
        ids = [row["trial_id"] for row in rows]
        params = r.params_for(self._engine, ids)
        stages = r.stages_for(self._engine, ids)
        return [
            TrialRecord(
                number=row["number"], state=row["state"], value=row["value"],
                params=params[row["trial_id"]],
                duration_s=_duration(row["datetime_start"], row["datetime_complete"]),
                reason=row["reason"], host=row["host"], device=row["device"],
                epochs_run=row["epochs_run"], stage=stages.get(row["trial_id"]),
                datetime_start=row["datetime_start"], datetime_complete=row["datetime_complete"],
            )
            for row in rows
        ]


def load_study(name: str, storage: Storage | str | None = None) -> Study:
    """Open study ``name`` in ``storage``: an open :class:`~tuner.storage.Storage` or a URL
    (default: ``$TUNER_STORAGE`` or ``sqlite:///tuner.db``). Reading never creates or migrates
    anything, so a read-only role or file will do."""
    try:
        st = get_storage(storage)
    except EmptyStorageError as e:
        raise StudyNotFoundError(f"study '{name}' not found: {e}") from None
    row = retry_disconnects(lambda: r.study_row(st.engine, name), for_s=REOPEN_S)
    if row is None:
        raise StudyNotFoundError(
            f"study '{name}' not found in {redact(st.url)}; `tuner status` lists the studies there")
    return Study(st, row["study_id"], name, row["direction"] or "MINIMIZE")


def list_studies(storage: Storage | str | None = None) -> list[StudySummary]:
    """Every study in ``storage`` with counts by state and best value (two aggregate queries,
    however many studies: counts, times and min/max value come from one GROUP BY). An empty
    storage (no file, no tables yet) has none."""
    try:
        st = get_storage(storage)
    except EmptyStorageError:
        return []
    rows = r.study_rows(st.engine)
    overview = r.state_counts(st.engine, overview=True)
    out = []
    for row in rows:
        c = overview.get(row["study_id"], {})
        maximize = (row["direction"] or "").upper() == "MAXIMIZE"
        out.append(StudySummary(
            name=row["study_name"], direction=(row["direction"] or "minimize").lower(),
            counts=_counts(c),
            best_value=c.get("max_value" if maximize else "min_value"), started=c.get("started"),
            last=c.get("last"), created_at=row["created_at"],
            other_writers=int(c.get("other_writers", 0)),
        ))
    return out


def _counts(entry: dict[str, Any]) -> dict[str, int]:
    """Counts by state from a :func:`~tuner.storage._reads.state_counts` entry (0 where none)."""
    return {s: int(entry.get(s, 0)) for s in STATES}


def _upper(states: Iterable[str] | None) -> list[str] | None:
    """States as ``TrialState`` names (``complete`` -> ``COMPLETE``); None or empty: any state."""
    return [s.upper() for s in states] if states else None


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    """Seconds a trial ran (None until it has both times); the one rule for ``duration_s``."""
    return None if start is None or end is None else (end - start).total_seconds()


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()
