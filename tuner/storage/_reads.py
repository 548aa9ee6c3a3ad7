"""Read-side SQL over Optuna's tables and tuner's: every query behind :class:`tuner.Study`.

Each query is aggregated, limited, paged or sampled in the database (best-k is ORDER BY ... LIMIT,
counts are one GROUP BY, plots get a sample), so a 100,000-trial study costs a reader a few small
result sets, never 100,000 Python objects. They are plain reads: on SQLite (WAL) they never block
the study's writer, and a read-only role or file will do.

Optuna's schema is declared once, in ``tuner.storage._optuna`` (which also holds every write into
it); ``tests/test_storage.py`` checks that declaration against a real Optuna database so a schema
change fails loudly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from optuna.distributions import json_to_distribution
from optuna.trial import TrialState
from sqlalchemy.engine import Engine

from tuner.samplers import LEGACY_STAGE_ATTR, STAGE_ATTR
from tuner.storage import _optuna as o
from tuner.storage._tables import CurveRow, StudyRow, TrialRow

__all__ = [
    "STATES", "SORT_KEYS",
    "study_rows", "study_row", "study_spec_json", "state_counts",
    "best_trial_rows", "trial_rows", "trial_row", "trial_page", "rows_for", "sample_ids",
    "best_so_far", "progress", "params_for", "user_attrs_for", "pack_sizes",
    "stage_attrs", "stage_int", "stages_for", "stage_numbers", "stage_counts", "curve_points",
]

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
"""Optuna's trial states as tuner counts and filters them (``TrialState`` names), in this order."""

_studies = o.studies
_directions = o.study_directions
_trials = o.trials
_values = o.trial_values
_params = o.trial_params
_user_attrs = o.trial_user_attrs
_system_attrs = o.trial_system_attrs

_OBJECTIVE_0 = (_values.c.trial_id == _trials.c.trial_id) & (_values.c.objective == 0)
"""Join ``trial_values`` to ``trials`` for the (first) objective's value."""
_TUNER_ROW = (TrialRow.study_id == _trials.c.study_id) & (TrialRow.number == _trials.c.number)
"""Join tuner's ``tuner_trials`` row (reason, host, device, epochs run) to ``trials``."""


# --- studies ---------------------------------------------------------------------------------
def study_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every study: id, name, direction, created_at (tuner's row; None for foreign studies)."""
    with engine.connect() as conn:
        return [_named(dict(r._mapping)) for r in conn.execute(_study_select())]


def study_row(engine: Engine, name: str) -> dict[str, Any] | None:
    """One study by name (the unique index on ``study_name``), or None."""
    with engine.connect() as conn:
        row = conn.execute(_study_select().where(_studies.c.study_name == name)).first()
    return None if row is None else _named(dict(row._mapping))


def _study_select() -> sa.Select[Any]:
    return (
        sa.select(_studies.c.study_id, _studies.c.study_name, _directions.c.direction,
                  StudyRow.created_at)
        .select_from(_studies)
        .join(_directions, (_directions.c.study_id == _studies.c.study_id)
              & (_directions.c.objective == 0), isouter=True)
        .join(StudyRow, StudyRow.study_id == _studies.c.study_id, isouter=True)
        .order_by(_studies.c.study_id)
    )


def _named(row: dict[str, Any]) -> dict[str, Any]:
    """Optuna's enum columns as their names ('COMPLETE', 'MAXIMIZE')."""
    for key in ("state", "direction"):
        if row.get(key) is not None and not isinstance(row[key], str):
            row[key] = row[key].name
    return row


def study_spec_json(engine: Engine, study_id: int) -> dict[str, Any] | None:
    """The spec a study was submitted with, as stored (None for studies tuner did not create)."""
    q = sa.select(StudyRow.spec_json).where(StudyRow.study_id == study_id)
    with engine.connect() as conn:
        raw = conn.execute(q).scalar()
    return None if raw is None else json.loads(raw)


def state_counts(engine: Engine, study_ids: Sequence[int] | None = None, *,
                 overview: bool = False) -> dict[int, dict[str, Any]]:
    """Per study: trial counts by state (every one of :data:`STATES`, 0 if none).

    One GROUP BY over (study, state) for all the studies asked for (every study when
    ``study_ids`` is None), so ``tuner status`` and the studies page cost one query however many
    studies there are. ``overview`` adds what those show beside the counts: the first start
    (``started``), the last completion (``last``), the min and max objective value of COMPLETE
    trials (``min_value``, ``max_value``) and the trials another writer ran (``other_writers``);
    counts alone skip the value join and the per-trial checks that takes.
    """
    columns: list[Any] = [_trials.c.study_id, _trials.c.state, sa.func.count()]
    if overview:
        columns += [sa.func.min(_trials.c.datetime_start), sa.func.max(_trials.c.datetime_complete),
                    sa.func.min(_values.c.value), sa.func.max(_values.c.value),
                    sa.func.sum(sa.case((_foreign(), 1), else_=0))]
    q = sa.select(*columns).select_from(_trials)
    if overview:
        q = q.join(_values, _OBJECTIVE_0, isouter=True)
    if study_ids is not None:
        q = q.where(_trials.c.study_id.in_(list(study_ids)))
    q = q.group_by(_trials.c.study_id, _trials.c.state)
    out: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for sid, state, n, *more in conn.execute(q):
            entry = out.setdefault(sid, {s: 0 for s in STATES} | (
                {"started": None, "last": None, "min_value": None, "max_value": None,
                 "other_writers": 0} if overview else {}))
            entry[state.name] = n
            if overview:
                _add_overview(entry, state, *more)
    return out


def _add_overview(entry: dict[str, Any], state: TrialState, start: Any, end: Any, lo: float | None,
                  hi: float | None, other: int | None) -> None:
    """Fold one (study, state) group's times, values and foreign trials into the study's entry."""
    if state != TrialState.WAITING:  # a queued trial is nobody's yet
        entry["other_writers"] += int(other or 0)
    if start is not None and (entry["started"] is None or start < entry["started"]):
        entry["started"] = start
    if end is not None and (entry["last"] is None or end > entry["last"]):
        entry["last"] = end
    if state == TrialState.COMPLETE:
        entry["min_value"], entry["max_value"] = lo, hi


def _foreign() -> Any:
    """A trial another writer ran (plain Optuna's ``ask``/``optimize``): tuner marks every trial
    it runs with the ``tuner:run`` system attribute, and versions before that wrote a
    ``tuner_trials`` row; a trial with neither is not tuner's."""
    attrs = _system_attrs
    return ~sa.exists().where(attrs.c.trial_id == _trials.c.trial_id, attrs.c.key == o.RUN_KEY) \
        & ~sa.exists().where(_TUNER_ROW)


# --- trials ----------------------------------------------------------------------------------
def _trial_select(*, with_value: bool = False) -> sa.Select[Any]:
    """Trial rows with value and tuner's columns; ``with_value`` makes the value join inner, so
    the planner can walk ``ix_tuner_trial_values_value`` in order for best-k (see v0.2.0)."""
    return (
        sa.select(_trials.c.trial_id, _trials.c.number, _trials.c.state, _values.c.value,
                  _trials.c.datetime_start, _trials.c.datetime_complete, TrialRow.reason,
                  TrialRow.host, TrialRow.device, TrialRow.epochs_run)
        .select_from(_trials)
        .join(_values, _OBJECTIVE_0, isouter=not with_value)
        .join(TrialRow, _TUNER_ROW, isouter=True)
    )


def _rows(engine: Engine, q: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [_named(dict(r._mapping)) for r in conn.execute(q)]


def _completed(study_id: int) -> Any:
    """The study's COMPLETE trials that have a value (joined to it with :data:`_OBJECTIVE_0`)."""
    return (_trials.c.study_id == study_id) & (_trials.c.state == TrialState.COMPLETE) \
        & _values.c.value.is_not(None)


def _best(q: Any, study_id: int, maximize: bool, k: int) -> Any:
    """``q`` (trials inner-joined to their value) narrowed to the ``k`` best COMPLETE trials,
    best first, ties by number: ORDER BY ... LIMIT in SQL."""
    order = _values.c.value.desc() if maximize else _values.c.value.asc()
    return q.where(_completed(study_id)).order_by(order, _trials.c.number).limit(k)


def best_trial_rows(engine: Engine, study_id: int, maximize: bool, k: int) -> list[dict[str, Any]]:
    """The ``k`` best COMPLETE trials, ordered and limited in SQL."""
    return _rows(engine, _best(_trial_select(with_value=True), study_id, maximize, k))


def trial_rows(
    engine: Engine, study_id: int, states: Iterable[str] | None = None, *,
    limit: int | None = None, offset: int = 0,
) -> list[dict[str, Any]]:
    """Trials of a study by number, optionally filtered by state and paged."""
    q = _filtered(_trial_select(), study_id, states).order_by(_trials.c.number).offset(offset)
    return _rows(engine, q if limit is None else q.limit(limit))


def trial_row(engine: Engine, study_id: int, number: int) -> dict[str, Any] | None:
    """One trial's row by number (None if the study has no such trial)."""
    rows = _rows(engine, _trial_select().where(_trials.c.study_id == study_id,
                                               _trials.c.number == number))
    return rows[0] if rows else None


def rows_for(engine: Engine, trial_ids_: Sequence[int]) -> list[dict[str, Any]]:
    """Trial rows (as :func:`trial_page` returns them) of the given trials, by number."""
    if not trial_ids_:
        return []
    return _rows(engine, _trial_select().where(_trials.c.trial_id.in_(list(trial_ids_)))
                 .order_by(_trials.c.number))


def _duration_sql(engine: Engine) -> Any:
    """Seconds from start to completion in the dialect's date arithmetic, to sort by in SQL
    (the values a reader sees are computed from the two times in Python: ``tuner._study``)."""
    start, end = _trials.c.datetime_start, _trials.c.datetime_complete
    if engine.dialect.name == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    if engine.dialect.name == "postgresql":
        return sa.extract("epoch", end - start)
    return end - start


_SORTS: dict[str, Callable[[Engine], Any]] = {
    "number": lambda _: _trials.c.number,
    "value": lambda _: _values.c.value,
    "duration": _duration_sql,
    "state": lambda _: sa.cast(_trials.c.state, sa.String),
    "epochs_run": lambda _: TrialRow.epochs_run,
}
"""Sort key -> its column (some depend on the dialect)."""

SORT_KEYS = tuple(_SORTS)
"""What :func:`trial_page` sorts by, besides ``param:<name>``."""


def _sort_column(engine: Engine, sort: str) -> Any:
    if sort in _SORTS:
        return _SORTS[sort](engine)
    if sort.startswith("param:"):
        return (sa.select(_params.c.param_value)
                .where(_params.c.trial_id == _trials.c.trial_id,
                       _params.c.param_name == sort.split(":", 1)[1])
                .scalar_subquery())
    raise ValueError(f"unknown sort key '{sort}'; use one of {', '.join(SORT_KEYS)} or param:NAME")


def _stage_value(stage: int) -> Any:
    """The trials recorded in coarse-to-fine stage ``stage`` (the value as stored: JSON text)."""
    stages = stage_attrs()
    return sa.select(stages.c.trial_id).where(stages.c.value_json == json.dumps(stage))


def _filtered(q: Any, study_id: int, states: Iterable[str] | None, stage: int | None = None,
              search: str | None = None) -> Any:
    """``q`` limited to one study's trials in ``states``, in ``stage``, matching ``search``."""
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
        counted = counted.join(TrialRow, _TUNER_ROW, isouter=True)
    count_q = _filtered(counted, study_id, states, stage, search)
    key = _sort_column(engine, sort)
    ordered = key.desc() if descending else key.asc()
    q = (_filtered(_trial_select(), study_id, states, stage, search)
         .order_by(key.is_(None), ordered, _trials.c.number).limit(limit).offset(offset))
    with engine.connect() as conn:
        total = int(conn.execute(count_q).scalar() or 0)
        rows = [_named(dict(r._mapping)) for r in conn.execute(q)]
    return total, rows


def sample_ids(engine: Engine, study_id: int, states: Sequence[str], n: int, top: int,
               maximize: bool) -> list[int]:
    """Trial ids of a spread-out sample: every k-th trial in ``states`` (k so that about ``n``
    remain) plus the ``top`` best COMPLETE ones. Two index walks, no sort of the whole study."""
    wanted = (_trials.c.study_id == study_id) & _trials.c.state.in_([TrialState[s] for s in states])
    best = _best(sa.select(_trials.c.trial_id).select_from(_trials).join(_values, _OBJECTIVE_0),
                 study_id, maximize, top)
    with engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(_trials)
                                 .where(wanted)).scalar() or 0)
        stride = max(1, -(-total // max(n, 1)))
        every = sa.select(_trials.c.trial_id).where(wanted, _trials.c.number % stride == 0)
        ids = {i for (i,) in conn.execute(every)}
        if top > 0:
            ids |= {i for (i,) in conn.execute(best)}
    return sorted(ids)


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
        .join(_values, _OBJECTIVE_0)
        .where(_completed(study_id))
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


# --- what hangs off a trial: params, attributes, stages, curves -----------------------------
def params_for(engine: Engine, trial_ids_: Sequence[int]) -> dict[int, dict[str, Any]]:
    """trial_id -> {param: external value} for the given trials (one query)."""
    out: dict[int, dict[str, Any]] = {i: {} for i in trial_ids_}
    if not trial_ids_:
        return out
    dist_cache: dict[str, Any] = {}
    q = sa.select(_params.c.trial_id, _params.c.param_name, _params.c.param_value,
                  _params.c.distribution_json).where(_params.c.trial_id.in_(list(trial_ids_)))
    with engine.connect() as conn:
        for tid, name, value, dist_json in conn.execute(q):
            dist = dist_cache.get(dist_json)
            if dist is None:
                dist = dist_cache[dist_json] = json_to_distribution(dist_json)
            out[tid][name] = dist.to_external_repr(value)
    return out


def user_attrs_for(engine: Engine, trial_ids_: Sequence[int]) -> dict[int, dict[str, Any]]:
    """trial_id -> {key: value} of the given trials' user attributes (one query)."""
    out: dict[int, dict[str, Any]] = {i: {} for i in trial_ids_}
    if not trial_ids_:
        return out
    q = sa.select(_user_attrs.c.trial_id, _user_attrs.c.key, _user_attrs.c.value_json).where(
        _user_attrs.c.trial_id.in_(list(trial_ids_)))
    with engine.connect() as conn:
        for tid, key, value in conn.execute(q):
            out[tid][key] = json.loads(value)
    return out


def pack_sizes(engine: Engine, study_id: int) -> dict[int, int]:
    """Pack size -> how many of the study's trials were trained in packs of that size (the
    ``pack_size`` user attribute a packing coordinator sets); trials trained alone are not
    counted. One query over one attribute, so it stays cheap at 100k trials."""
    q = sa.select(_user_attrs.c.value_json).join(
        _trials, _trials.c.trial_id == _user_attrs.c.trial_id).where(
        _trials.c.study_id == study_id, _user_attrs.c.key == "pack_size")
    out: dict[int, int] = {}
    with engine.connect() as conn:
        for (value,) in conn.execute(q):
            size = json.loads(value)
            if isinstance(size, int) and not isinstance(size, bool) and size > 1:
                out[size] = out.get(size, 0) + 1
    return dict(sorted(out.items()))


def stage_attrs(trial_ids_: Sequence[int] | None = None) -> Any:
    """A subquery of ``(trial_id, value_json)``: each trial's coarse-to-fine stage. The sampler
    records it as the system attribute ``c2f:stage``; trials stored before that key carry the
    user attribute ``stage`` instead, read only where the system attribute is absent (so a trial
    is never counted twice). ``trial_ids_`` limits both halves to those trials."""
    new = sa.select(_system_attrs.c.trial_id, _system_attrs.c.value_json).where(
        _system_attrs.c.key == STAGE_ATTR)
    old = sa.select(_user_attrs.c.trial_id, _user_attrs.c.value_json).where(
        _user_attrs.c.key == LEGACY_STAGE_ATTR,
        ~sa.exists().where(_system_attrs.c.trial_id == _user_attrs.c.trial_id,
                           _system_attrs.c.key == STAGE_ATTR))
    if trial_ids_ is not None:
        new = new.where(_system_attrs.c.trial_id.in_(list(trial_ids_)))
        old = old.where(_user_attrs.c.trial_id.in_(list(trial_ids_)))
    return sa.union_all(new, old).subquery("stage_attrs")


def stage_int(value_json: str) -> int | None:
    """A stored stage as an int; None for a ``stage`` user attribute that a user trainable set
    to something else (it is not a coarse-to-fine stage)."""
    value = json.loads(value_json)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stages_for(engine: Engine, trial_ids_: Sequence[int]) -> dict[int, int]:
    """trial_id -> coarse-to-fine stage (see :func:`stage_attrs`) for trials that have one."""
    if not trial_ids_:
        return {}
    stages = stage_attrs(trial_ids_)
    with engine.connect() as conn:
        found = {tid: stage_int(v) for tid, v in conn.execute(sa.select(stages))}
    return {tid: s for tid, s in found.items() if s is not None}


def stage_numbers(engine: Engine, study_id: int) -> dict[int, list[int]]:
    """stage -> trial numbers, for a coarse-to-fine study (one query)."""
    stages = stage_attrs()
    q = (sa.select(_trials.c.number, stages.c.value_json)
         .join(stages, stages.c.trial_id == _trials.c.trial_id)
         .where(_trials.c.study_id == study_id)
         .order_by(_trials.c.number))
    out: dict[int, list[int]] = {}
    with engine.connect() as conn:
        for number, value in conn.execute(q):
            stage = stage_int(value)
            if stage is not None:
                out.setdefault(stage, []).append(number)
    return out


def stage_counts(engine: Engine, study_id: int) -> dict[int, int]:
    """stage -> number of trials, for a coarse-to-fine study (one GROUP BY)."""
    stages = stage_attrs()
    q = (sa.select(stages.c.value_json, sa.func.count())
         .join(_trials, stages.c.trial_id == _trials.c.trial_id)
         .where(_trials.c.study_id == study_id)
         .group_by(stages.c.value_json))
    with engine.connect() as conn:
        counted = [(stage_int(v), int(n)) for v, n in conn.execute(q)]
    return {s: n for s, n in counted if s is not None}


def curve_points(engine: Engine, study_id: int,
                 numbers: Sequence[int]) -> list[tuple[int, int, dict[str, Any]]]:
    """``(number, epoch, metrics)`` of the given trials' per-epoch metrics, by number and epoch
    (one query, whether one trial's curve or several)."""
    if not numbers:
        return []
    q = (sa.select(CurveRow.number, CurveRow.epoch, CurveRow.metrics)
         .where(CurveRow.study_id == study_id, CurveRow.number.in_(list(numbers)))
         .order_by(CurveRow.number, CurveRow.epoch))
    with engine.connect() as conn:
        return [(n, e, m if isinstance(m, dict) else json.loads(m)) for n, e, m in conn.execute(q)]
