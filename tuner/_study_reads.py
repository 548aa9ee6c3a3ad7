"""Study reads for views over a whole study: paged trial tables, samples for plots, curves.

These are the queries a dashboard (or a notebook) needs on a study of any size: each one is
aggregated, paged or sampled in SQL (``tuner.storage._reads``), so its cost does not grow with
the number of trials beyond one indexed scan. ``Study`` inherits them from :class:`StudyReads`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.storage import _reads as r

if TYPE_CHECKING:
    import pandas as pd

    from tuner._study import TrialRecord
    from tuner.storage import Storage

__all__ = ["SORT_KEYS", "StudyReads", "TrialPage"]

SORT_KEYS = r.SORT_KEYS


@dataclass(frozen=True)
class TrialPage:
    """One page of a trial table: ``total`` trials match the filters; ``trials`` is this page."""

    total: int
    trials: list[TrialRecord]
    offset: int
    limit: int


class StudyReads:
    """Read methods for studies of any size; mixed into :class:`tuner.Study`."""

    _storage: Storage
    _id: int
    maximize: bool

    def _records(self, rows: list[dict[str, Any]]) -> list[TrialRecord]:  # pragma: no cover
        raise NotImplementedError

    def trial(self, number: int) -> TrialRecord | None:
        """Trial ``number`` with its user attributes, or None if the study has no such trial."""
        from dataclasses import replace

        from tuner.storage import _queries as q

        row = r.trial_row(self._storage.engine, self._id, number)
        if row is None:
            return None
        record = self._records([row])[0]
        attrs = q.user_attrs_for(self._storage.engine, [row["trial_id"]])[row["trial_id"]]
        return replace(record, user_attrs=attrs)

    def trial_page(
        self, *, states: Iterable[str] | None = None, stage: int | None = None,
        search: str | None = None, sort: str = "number", descending: bool = False,
        limit: int = 50, offset: int = 0,
    ) -> TrialPage:
        """Trials filtered by state/stage/text, sorted, one page: LIMIT/OFFSET run in SQL.

        ``search`` matches the reason, host or device (substring, any case) or a trial number;
        ``sort`` is ``number``, ``value``, ``duration``, ``state``, ``epochs_run`` or
        ``param:<name>`` (unset values last).
        """
        wanted = [s.upper() for s in states] if states else None
        total, rows = r.trial_page(self._storage.engine, self._id, states=wanted, stage=stage,
                                   search=search, sort=sort, descending=descending,
                                   limit=max(1, limit), offset=max(0, offset))
        return TrialPage(total, self._records(rows), max(0, offset), max(1, limit))

    def best_so_far(self) -> pd.DataFrame:
        """The trials that set a new best value, by number: ``number``, ``value``,
        ``datetime_complete`` (a step line of the optimisation; a few rows even at 100k trials)."""
        import pandas as pd

        rows = r.best_so_far(self._storage.engine, self._id, self.maximize)
        return pd.DataFrame(rows, columns=["number", "value", "datetime_complete"])

    def progress(self, points: int = 300) -> pd.DataFrame:
        """Finished trials over time, thinned in SQL to about ``points`` rows:
        ``datetime_complete``, ``finished`` (the running count)."""
        import pandas as pd

        rows = r.progress(self._storage.engine, self._id, points)
        return pd.DataFrame(rows, columns=["datetime_complete", "finished"])

    def param_table(self, max_trials: int = 2000, *, states: Sequence[str] = ("COMPLETE",),
                    top: int = 100) -> pd.DataFrame:
        """A plot-ready sample of trials: every k-th trial plus the ``top`` best, one row each.

        Columns: ``number``, ``state``, ``value``, ``stage``, ``duration_s``, ``reason``,
        ``datetime_complete`` and one ``params_<name>`` column per parameter (the value the
        network used). All trials when the study has at most ``max_trials`` in ``states``.
        """
        import pandas as pd

        from tuner.storage import _queries as q

        engine = self._storage.engine
        ids = r.sample_ids(engine, self._id, [s.upper() for s in states], max_trials, top,
                           self.maximize)
        rows = r.rows_for(engine, ids)
        stages = q.stages_for(engine, ids)
        params = {tid: {f"params_{k}": v for k, v in p.items()}
                  for tid, p in q.params_for(engine, ids).items()}
        out = []
        for row in rows:
            start, end = row["datetime_start"], row["datetime_complete"]
            out.append({
                "number": row["number"], "state": row["state"], "value": row["value"],
                "stage": stages.get(row["trial_id"]),
                "duration_s": None if start is None or end is None else (end - start).total_seconds(),
                "reason": row["reason"], "datetime_complete": end,
                **params.get(row["trial_id"], {}),
            })
        columns = ["number", "state", "value", "stage", "duration_s", "reason", "datetime_complete"]
        return pd.DataFrame(out, columns=columns + sorted({k for p in params.values() for k in p}))

    def stage_counts(self) -> dict[int, int]:
        """Coarse-to-fine stage -> number of trials drawn in it (empty for other samplers)."""
        return r.stage_counts(self._storage.engine, self._id)

    def curves(self, numbers: Sequence[int]) -> pd.DataFrame:
        """Per-epoch metrics of several trials in one query: ``number``, ``epoch``, metrics."""
        import pandas as pd

        rows = r.curves_for(self._storage.engine, self._id, [int(n) for n in numbers])
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["number", "epoch"])
