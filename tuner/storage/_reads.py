"""Read-side SQL for views over whole studies: overviews, pages, samples, best-so-far.

Everything here is aggregated, limited or sampled in the database, so a 100,000-trial study costs
the dashboard a few small result sets, never 100,000 Python objects. Plain reads only: on SQLite
(WAL) they never block the study's writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import Engine

from tuner.storage._optuna import RUN_KEY
from tuner.storage._optuna import trial_params as _params
from tuner.storage._optuna import trial_system_attrs as _system_attrs
from tuner.storage._optuna import trial_user_attrs as _user_attrs
from tuner.storage._optuna import trial_values as _values
from tuner.storage._optuna import trials as _trials
from tuner.storage._queries import STATES, _named, _trial_select
from tuner.storage._tables import CurveRow, TrialRow

__all__ = [
    "SORT_KEYS",
    "best_so_far",
    "curves_for",
    "progress",
    "rows_for",
    "sample_ids",
    "stage_counts",
    "study_overview",
    "trial_page",
    "trial_row",
]

SORT_KEYS = ("number", "value", "duration", "state", "epochs_run")
"""What :func:`trial_page` sorts by, besides ``param:<name>``."""


def study_overview(engine: Engine) -> dict[int, dict[str, Any]]:
    """Per study: counts by state, first start, last completion, min and max objective value.

    One GROUP BY over ``trials`` joined to ``trial_values`` (objective 0), for every study at
    once: the studies page and ``tuner status`` cost one query however many studies there are.
    """
    q = (
        sa.select(_trials.c.study_id, _trials.c.state, sa.func.count(),
                  sa.func.min(_trials.c.datetime_start), sa.func.max(_trials.c.datetime_complete),
                  sa.func.min(_values.c.value), sa.func.max(_values.c.value),
                  sa.func.sum(sa.case((_foreign(), 1), else_=0)))
        .select_from(_trials)
        .join(_values, (_values.c.trial_id == _trials.c.trial_id) & (_values.c.objective == 0),
              isouter=True)
        .group_by(_trials.c.study_id, _trials.c.state)
    )
    out: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for sid, state, n, start, end, lo, hi, other in conn.execute(q):
            e = out.setdefault(sid, {s: 0 for s in STATES} | {
                "started": None, "last": None, "min_value": None, "max_value": None,
                "other_writers": 0})
            e[state.name] = n
            if state != TrialState.WAITING:  # a queued trial is nobody's yet
                e["other_writers"] += int(other or 0)
            if start is not None and (e["started"] is None or start < e["started"]):
                e["started"] = start
            if end is not None and (e["last"] is None or end > e["last"]):
                e["last"] = end
            if state == TrialState.COMPLETE:
                e["min_value"], e["max_value"] = lo, hi
    return out


def _foreign() -> Any:
    """A trial another writer ran (plain Optuna's ``ask``/``optimize``): tuner marks every trial
    it runs with the ``tuner:run`` system attribute, and versions before that wrote a
    ``tuner_trials`` row; a trial with neither is not tuner's."""
    attrs = _system_attrs
    return ~sa.exists().where(attrs.c.trial_id == _trials.c.trial_id, attrs.c.key == RUN_KEY) \
        & ~sa.exists().where(TrialRow.study_id == _trials.c.study_id,
                             TrialRow.number == _trials.c.number)


def _duration(engine: Engine) -> Any:
    """Seconds from start to completion, in the dialect's date arithmetic (for ORDER BY)."""
    start, end = _trials.c.datetime_start, _trials.c.datetime_complete
    if engine.dialect.name == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    if engine.dialect.name == "postgresql":
        return sa.extract("epoch", end - start)
    return end - start


def _stage_value(stage: int) -> Any:
    """The ``stage`` user attribute's value, as stored (JSON text)."""
    return (sa.select(_user_attrs.c.trial_id)
            .where(_user_attrs.c.key == "stage", _user_attrs.c.value_json == json.dumps(stage)))


def _filtered(q: Any, study_id: int, states: Iterable[str] | None, stage: int | None,
              search: str | None) -> Any:
    q = q.where(_trials.c.study_id == study_id)
    if states:
        q = q.where(_trials.c.state.in_([TrialState[s] for s in states]))
    if stage is not None:
        q = q.where(_trials.c.trial_id.in_(_stage_value(stage)))
    text = (search or "").strip()
    if text:
        like = f"%{text.replace('%', '').replace('_', '')}%"
        terms = [TrialRow.reason.ilike(like), TrialRow.host.ilike(like),
                 TrialRow.device.ilike(like)]
        if text.lstrip("#").isdigit():
            terms.append(_trials.c.number == int(text.lstrip("#")))
        q = q.where(sa.or_(*terms))
    return q


def trial_page(
    engine: Engine, study_id: int, *, states: Iterable[str] | None = None,
    stage: int | None = None, search: str | None = None, sort: str = "number",
    descending: bool = False, limit: int = 50, offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of a study's trials (filtered, sorted, LIMIT/OFFSET in SQL) and the total count.

    ``sort`` is one of :data:`SORT_KEYS` or ``param:<name>``; trials without the sort key (no
    value yet, no such param) come last either way, then ties go by number.
    """
    states = list(states or [])
    counted: Any = sa.select(sa.func.count()).select_from(_trials)
    if (search or "").strip():  # tuner's row is only needed to match reason/host/device
        counted = counted.join(TrialRow, (TrialRow.study_id == _trials.c.study_id)
                               & (TrialRow.number == _trials.c.number), isouter=True)
    count_q = _filtered(counted, study_id, states, stage, search)
    key: Any
    if sort == "number":
        key = _trials.c.number
    elif sort == "value":
        key = _values.c.value
    elif sort == "duration":
        key = _duration(engine)
    elif sort == "state":
        key = sa.cast(_trials.c.state, sa.String)
    elif sort == "epochs_run":
        key = TrialRow.epochs_run
    elif sort.startswith("param:"):
        key = (sa.select(_params.c.param_value)
               .where(_params.c.trial_id == _trials.c.trial_id,
                      _params.c.param_name == sort.split(":", 1)[1])
               .scalar_subquery())
    else:
        raise ValueError(f"unknown sort key '{sort}'; use one of {', '.join(SORT_KEYS)} or param:NAME")
    ordered = key.desc() if descending else key.asc()
    q = (_filtered(_trial_select(), study_id, states, stage, search)
         .order_by(key.is_(None), ordered, _trials.c.number).limit(limit).offset(offset))
    with engine.connect() as conn:
        total = int(conn.execute(count_q).scalar() or 0)
        rows = [_named(dict(r._mapping)) for r in conn.execute(q)]
    return total, rows


def trial_row(engine: Engine, study_id: int, number: int) -> dict[str, Any] | None:
    """One trial's row by number (None if the study has no such trial)."""
    q = _trial_select().where(_trials.c.study_id == study_id, _trials.c.number == number)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else _named(dict(row._mapping))


def best_so_far(engine: Engine, study_id: int, maximize: bool) -> list[dict[str, Any]]:
    """The COMPLETE trials that set a new best, by number (a window function: a handful of rows).

    The running best is a ROWS frame (cheaper than the default RANGE frame, which compares
    peers) over COMPLETE trials in number order, which ``ix_tuner_trials_state`` gives unsorted.
    """
    value = _values.c.value
    running = (sa.func.max(value) if maximize else sa.func.min(value)).over(
        order_by=_trials.c.number, rows=(None, 0))
    inner = (  # narrow rows: the completion time is joined back for the few winners only
        sa.select(_trials.c.number, value.label("value"), running.label("best"))
        .select_from(_trials)
        .join(_values, (_values.c.trial_id == _trials.c.trial_id) & (_values.c.objective == 0))
        .where(_trials.c.study_id == study_id, _trials.c.state == TrialState.COMPLETE,
               value.is_not(None))
        .subquery()
    )
    when = _trials.alias("winner")
    q = (sa.select(inner.c.number, inner.c.value, inner.c.best, when.c.datetime_complete)
         .join(when, (when.c.study_id == study_id) & (when.c.state == TrialState.COMPLETE)
               & (when.c.number == inner.c.number))
         .where(inner.c.value == inner.c.best).order_by(inner.c.number))
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            if not out or r.best != out[-1]["value"]:  # ties with the best are not new bests
                out.append({"number": r.number, "value": r.value,
                            "datetime_complete": r.datetime_complete})
    return out


def progress(engine: Engine, study_id: int, points: int = 300) -> list[dict[str, Any]]:
    """Finished trials over time: ``(datetime_complete, finished)``, thinned in SQL to ~points.

    Every finished trial (and only those) has a completion time, so the walk is over
    ``ix_tuner_trials_complete`` in time order, counted with ROW_NUMBER.
    """
    finished = (_trials.c.study_id == study_id) & _trials.c.datetime_complete.is_not(None)
    with engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(_trials)
                                 .where(finished)).scalar() or 0)
        if not total:
            return []
        stride = max(1, total // max(points, 1))
        rank = sa.func.row_number().over(order_by=_trials.c.datetime_complete)
        inner = (sa.select(_trials.c.datetime_complete, rank.label("finished"))
                 .where(finished).subquery())
        q = (sa.select(inner.c.datetime_complete, inner.c.finished)
             .where((inner.c.finished % stride == 0) | (inner.c.finished == total)
                    | (inner.c.finished == 1))
             .order_by(inner.c.finished))
        return [{"datetime_complete": t, "finished": int(n)} for t, n in conn.execute(q)]


def sample_ids(engine: Engine, study_id: int, states: Sequence[str], n: int, top: int,
               maximize: bool) -> list[int]:
    """Trial ids of a spread-out sample: every k-th trial in ``states`` (k so that about ``n``
    remain) plus the ``top`` best COMPLETE ones. Two index walks, no sort of the whole study."""
    wanted = (_trials.c.study_id == study_id) & _trials.c.state.in_([TrialState[s] for s in states])
    order = _values.c.value.desc() if maximize else _values.c.value.asc()
    best = (sa.select(_trials.c.trial_id).select_from(_trials)
            .join(_values, (_values.c.trial_id == _trials.c.trial_id) & (_values.c.objective == 0))
            .where(_trials.c.study_id == study_id, _trials.c.state == TrialState.COMPLETE,
                   _values.c.value.is_not(None))
            .order_by(order, _trials.c.number).limit(top))
    with engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(_trials)
                                 .where(wanted)).scalar() or 0)
        stride = max(1, -(-total // max(n, 1)))
        every = sa.select(_trials.c.trial_id).where(wanted, _trials.c.number % stride == 0)
        ids = {i for (i,) in conn.execute(every)}
        if top > 0:
            ids |= {i for (i,) in conn.execute(best)}
    return sorted(ids)


def rows_for(engine: Engine, trial_ids_: Sequence[int]) -> list[dict[str, Any]]:
    """Trial rows (as :func:`trial_page` returns them) of the given trials, by number."""
    if not trial_ids_:
        return []
    q = _trial_select().where(_trials.c.trial_id.in_(list(trial_ids_))).order_by(_trials.c.number)
    with engine.connect() as conn:
        return [_named(dict(r._mapping)) for r in conn.execute(q)]


def stage_counts(engine: Engine, study_id: int) -> dict[int, int]:
    """stage -> number of trials, for a coarse-to-fine study (one GROUP BY)."""
    q = (sa.select(_user_attrs.c.value_json, sa.func.count())
         .join(_trials, _user_attrs.c.trial_id == _trials.c.trial_id)
         .where(_trials.c.study_id == study_id, _user_attrs.c.key == "stage")
         .group_by(_user_attrs.c.value_json))
    with engine.connect() as conn:
        return {int(json.loads(v)): int(n) for v, n in conn.execute(q)}


def curves_for(engine: Engine, study_id: int, numbers: Sequence[int]) -> list[dict[str, Any]]:
    """Per-epoch metrics of several trials in one query (``number``, ``epoch``, metrics...)."""
    if not numbers:
        return []
    q = (sa.select(CurveRow.number, CurveRow.epoch, CurveRow.metrics)
         .where(CurveRow.study_id == study_id, CurveRow.number.in_(list(numbers)))
         .order_by(CurveRow.number, CurveRow.epoch))
    with engine.connect() as conn:
        return [{"number": n, "epoch": e, **(m if isinstance(m, dict) else json.loads(m))}
                for n, e, m in conn.execute(q)]
