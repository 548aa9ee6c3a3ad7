"""The public read API: ``load_study``, ``list_studies`` and the ``Study`` query object.

Queries run in SQL (best-k is ORDER BY ... LIMIT; counts are one GROUP BY), so they answer fast
on 100,000-trial studies and never block the writer. The CLI and the dashboard use only this.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from tuner._errors import StudyNotFoundError
from tuner._study_reads import StudyReads
from tuner.storage import Storage, open_storage, redact
from tuner.storage import _queries as q
from tuner.storage import _reads as reads
from tuner.storage._engine import REOPEN_S
from tuner.storage._transient import retry_disconnects

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from tuner.spec import StudySpec

__all__ = ["Study", "TrialRecord", "StudySummary", "StageInfo", "load_study", "list_studies"]


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


class Study(StudyReads):
    """A stored study; obtain one with :func:`load_study`.

    Besides the methods below it has the whole-study reads of :class:`StudyReads`
    (``trial``, ``trial_page``, ``best_so_far``, ``progress``, ``param_table``, ``curves``,
    ``stage_counts``): paged, sampled or aggregated in SQL for studies of any size.
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

    @property
    def best_trial(self) -> TrialRecord:
        """The best COMPLETE trial; ``ValueError`` if none has completed yet."""
        best = self.best_trials(1)
        if not best:
            raise ValueError(f"study '{self.name}' has no complete trial yet")
        return best[0]

    def best_trials(self, k: int = 5) -> list[TrialRecord]:
        """The ``k`` best COMPLETE trials, best first (ties: lower number first)."""
        rows = q.best_trial_rows(self._storage.engine, self._id, self.maximize, k)
        return self._records(rows)

    def trials(self, states: Iterable[str] | None = None, *, limit: int | None = None,
               offset: int = 0) -> list[TrialRecord]:
        """Trials by number, optionally only ``states`` (e.g. ``["COMPLETE"]``) and paged."""
        wanted = [s.upper() for s in states] if states else None
        rows = q.trial_rows(self._storage.engine, self._id, wanted, limit=limit, offset=offset)
        return self._records(rows)

    def counts(self) -> dict[str, int]:
        """Trials by state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
        entry = q.state_counts(self._storage.engine, [self._id]).get(self._id, {})
        return {s: int(entry.get(s, 0)) for s in q.STATES}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per trial; params as ``params_<name>`` columns."""
        import pandas as pd

        records = self.trials()
        rows = []
        for r in records:
            row = {k: v for k, v in r.to_dict().items() if k != "params"}
            row.update({f"params_{k}": v for k, v in r.params.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def curve(self, trial_number: int) -> pd.DataFrame:
        """Per-epoch metrics of one trial (``epoch``, ``train_loss``, ``val_loss``, ...)."""
        import pandas as pd

        return pd.DataFrame(q.curve_rows(self._storage.engine, self._id, trial_number))

    @property
    def spec(self) -> StudySpec | None:
        """The spec the study was submitted with (None for studies tuner did not create)."""
        from tuner.spec import parse_spec

        raw = q.study_spec_json(self._storage.engine, self._id)
        return None if raw is None else parse_spec(raw)

    def stages(self, *, trials: bool = True) -> list[StageInfo]:
        """Coarse-to-fine stages: each stage's box and its trial numbers (empty for other samplers).

        ``box`` is in values (lr 1e-3..1e-2, beta 0.99..0.999); ``scale_box`` in each
        parameter's sampling coordinate (log10 lr, log10(1-beta), log2 batch size).
        ``trials=False`` skips the trial numbers (each ``StageInfo.trials`` is empty): the boxes
        alone are two small reads, the numbers one row per trial.
        """
        from tuner.samplers._coarse_to_fine import BOX_ATTR
        from tuner.spec import CategoricalParam, from_internal

        spec = self.spec
        attrs = self._storage.optuna.get_study_user_attrs(self._id)
        numbers = q.stage_numbers(self._storage.engine, self._id) if trials else {}
        out = []
        for stage in sorted(set(numbers) | {int(k.rsplit("_", 1)[1]) for k in attrs
                                            if k.startswith(BOX_ATTR.split("{")[0])}):
            record = attrs.get(BOX_ATTR.format(stage=stage), {})
            stored = record.get("params", {})
            box: dict[str, Any] = {}
            scale_box: dict[str, Any] = {}
            for name, entry in stored.items():
                if "choices" in entry:
                    box[name] = scale_box[name] = list(entry["choices"])
                    continue
                scale_box[name] = (entry["low"], entry["high"])
                param = spec.params.get(name) if spec else None
                if param is None or isinstance(param, CategoricalParam):
                    box[name] = scale_box[name]
                else:
                    a, b = from_internal(param, entry["low"]), from_internal(param, entry["high"])
                    box[name] = (min(a, b), max(a, b))
            out.append(StageInfo(stage, box, scale_box, numbers.get(stage, []),
                                 list(record.get("top_trials", []))))
        return out

    def to_optuna(self) -> optuna.Study:
        """The same study through plain Optuna."""
        import optuna

        return optuna.load_study(study_name=self.name, storage=self._storage.optuna)

    def _records(self, rows: list[dict[str, Any]]) -> list[TrialRecord]:
        ids = [r["trial_id"] for r in rows]
        params = q.params_for(self._storage.engine, ids)
        stages = q.stages_for(self._storage.engine, ids)
        return [
            TrialRecord(
                number=r["number"], state=r["state"], value=r["value"], params=params[r["trial_id"]],
                duration_s=_duration(r["datetime_start"], r["datetime_complete"]),
                reason=r["reason"], host=r["host"], device=r["device"], epochs_run=r["epochs_run"],
                stage=stages.get(r["trial_id"]),
                datetime_start=r["datetime_start"], datetime_complete=r["datetime_complete"],
            )
            for r in rows
        ]


def load_study(name: str, storage: str | None = None) -> Study:
    """Open study ``name`` in ``storage`` (default: ``$TUNER_STORAGE`` or ``sqlite:///tuner.db``)."""
    st = open_storage(storage)
    for row in retry_disconnects(lambda: q.study_rows(st.engine), for_s=REOPEN_S):
        if row["study_name"] == name:
            return Study(st, row["study_id"], name, row["direction"] or "MINIMIZE")
    raise StudyNotFoundError(
        f"study '{name}' not found in {redact(st.url)}; `tuner status` lists the studies there"
    )


def list_studies(storage: str | None = None) -> list[StudySummary]:
    """Every study in ``storage`` with counts by state and best value (two aggregate queries,
    however many studies: counts, times and min/max value come from one GROUP BY)."""
    st = open_storage(storage)
    rows = q.study_rows(st.engine)
    overview = reads.study_overview(st.engine)
    out = []
    for row in rows:
        c = overview.get(row["study_id"], {})
        maximize = (row["direction"] or "").upper() == "MAXIMIZE"
        out.append(StudySummary(
            name=row["study_name"], direction=(row["direction"] or "minimize").lower(),
            counts={s: int(c.get(s, 0)) for s in q.STATES},
            best_value=c.get("max_value" if maximize else "min_value"), started=c.get("started"),
            last=c.get("last"), created_at=row["created_at"],
            other_writers=int(c.get("other_writers", 0)),
        ))
    return out


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()
