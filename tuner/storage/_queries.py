"""Read-side SQL over Optuna's tables and ours: aggregated and paged in the database.

Optuna's schema is declared once, in ``tuner.storage._optuna`` (which also holds every write into
it); ``tests/test_storage.py`` checks that declaration against a real Optuna database so a schema
change fails loudly.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from optuna.distributions import json_to_distribution
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy.engine import Engine

from tuner.storage import _optuna as o
from tuner.storage._tables import CurveRow, StudyRow, TrialRow

__all__ = [
    "trial_ids", "study_rows", "state_counts", "best_trial_rows", "trial_rows", "params_for",
    "user_attrs_for", "curve_rows", "study_spec_json", "stages_for", "stage_numbers", "STATES",
]

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")

_studies = o.studies
_directions = o.study_directions
_trials = o.trials
_values = o.trial_values
_params = o.trial_params
_user_attrs = o.trial_user_attrs


def trial_ids(engine: Engine, study_id: int) -> dict[int, int]:
    """number -> Optuna trial_id for one study."""
    q = sa.select(_trials.c.number, _trials.c.trial_id).where(_trials.c.study_id == study_id)
    with engine.connect() as conn:
        return {n: i for n, i in conn.execute(q)}


def study_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every study: id, name, direction, created_at (tuner's row; None for foreign studies)."""
    q = (
        sa.select(_studies.c.study_id, _studies.c.study_name, _directions.c.direction,
                  StudyRow.created_at)
        .select_from(_studies)
        .join(_directions, (_directions.c.study_id == _studies.c.study_id)
              & (_directions.c.objective == 0), isouter=True)
        .join(StudyRow, StudyRow.study_id == _studies.c.study_id, isouter=True)
        .order_by(_studies.c.study_id)
    )
    with engine.connect() as conn:
        return [_named(dict(r._mapping)) for r in conn.execute(q)]


def _named(row: dict[str, Any]) -> dict[str, Any]:
    """Optuna's enum columns as their names ('COMPLETE', 'MAXIMIZE')."""
    for key in ("state", "direction"):
        if row.get(key) is not None and not isinstance(row[key], str):
            row[key] = row[key].name
    return row


def study_spec_json(engine: Engine, study_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        raw = conn.execute(sa.select(StudyRow.spec_json).where(StudyRow.study_id == study_id)).scalar()
    return None if raw is None else json.loads(raw)


def state_counts(engine: Engine, study_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """Per study: trial counts by state, first start and last completion (one GROUP BY)."""
    q = sa.select(_trials.c.study_id, _trials.c.state, sa.func.count(),
                  sa.func.min(_trials.c.datetime_start), sa.func.max(_trials.c.datetime_complete)
                  ).group_by(_trials.c.study_id, _trials.c.state)
    if study_ids is not None:
        q = q.where(_trials.c.study_id.in_(list(study_ids)))
    out: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for sid, state, n, start, end in conn.execute(q):
            entry = out.setdefault(sid, {s: 0 for s in STATES} | {"started": None, "last": None})
            entry[state.name] = n
            if start is not None and (entry["started"] is None or start < entry["started"]):
                entry["started"] = start
            if end is not None and (entry["last"] is None or end > entry["last"]):
                entry["last"] = end
    return out


def _trial_select(*, with_value: bool = False) -> sa.Select[Any]:
    """Trial rows with value and tuner's columns; ``with_value`` makes the value join inner, so
    the planner can walk ``ix_tuner_trial_values_value`` in order for best-k (see v0.2.0)."""
    return (
        sa.select(_trials.c.trial_id, _trials.c.number, _trials.c.state, _values.c.value,
                  _trials.c.datetime_start, _trials.c.datetime_complete, TrialRow.reason,
                  TrialRow.host, TrialRow.device, TrialRow.epochs_run)
        .select_from(_trials)
        .join(_values, (_values.c.trial_id == _trials.c.trial_id) & (_values.c.objective == 0),
              isouter=not with_value)
        .join(TrialRow, (TrialRow.study_id == _trials.c.study_id)
              & (TrialRow.number == _trials.c.number), isouter=True)
    )


def best_trial_rows(engine: Engine, study_id: int, maximize: bool, k: int) -> list[dict[str, Any]]:
    """The ``k`` best COMPLETE trials, ordered and limited in SQL."""
    order = _values.c.value.desc() if maximize else _values.c.value.asc()
    q = (_trial_select(with_value=True)
         .where(_trials.c.study_id == study_id, _trials.c.state == TrialState.COMPLETE,
                _values.c.value.is_not(None))
         .order_by(order, _trials.c.number).limit(k))
    with engine.connect() as conn:
        return [_named(dict(r._mapping)) for r in conn.execute(q)]


def trial_rows(
    engine: Engine, study_id: int, states: Iterable[str] | None = None, *,
    limit: int | None = None, offset: int = 0,
) -> list[dict[str, Any]]:
    """Trials of a study by number, optionally filtered by state and paged."""
    q = _trial_select().where(_trials.c.study_id == study_id)
    if states:
        q = q.where(_trials.c.state.in_([TrialState[s] for s in states]))
    q = q.order_by(_trials.c.number).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [_named(dict(r._mapping)) for r in conn.execute(q)]


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
    out: dict[int, dict[str, Any]] = {i: {} for i in trial_ids_}
    if not trial_ids_:
        return out
    q = sa.select(_user_attrs.c.trial_id, _user_attrs.c.key, _user_attrs.c.value_json).where(
        _user_attrs.c.trial_id.in_(list(trial_ids_)))
    with engine.connect() as conn:
        for tid, key, value in conn.execute(q):
            out[tid][key] = json.loads(value)
    return out


def stages_for(engine: Engine, trial_ids_: Sequence[int]) -> dict[int, int]:
    """trial_id -> coarse-to-fine stage (user attribute ``stage``) for trials that have one."""
    if not trial_ids_:
        return {}
    q = sa.select(_user_attrs.c.trial_id, _user_attrs.c.value_json).where(
        _user_attrs.c.trial_id.in_(list(trial_ids_)), _user_attrs.c.key == "stage")
    with engine.connect() as conn:
        return {tid: int(json.loads(v)) for tid, v in conn.execute(q)}


def stage_numbers(engine: Engine, study_id: int) -> dict[int, list[int]]:
    """stage -> trial numbers, for a coarse-to-fine study (one query)."""
    q = (sa.select(_trials.c.number, _user_attrs.c.value_json)
         .join(_user_attrs, _user_attrs.c.trial_id == _trials.c.trial_id)
         .where(_trials.c.study_id == study_id, _user_attrs.c.key == "stage")
         .order_by(_trials.c.number))
    out: dict[int, list[int]] = {}
    with engine.connect() as conn:
        for number, value in conn.execute(q):
            out.setdefault(int(json.loads(value)), []).append(number)
    return out


def curve_rows(engine: Engine, study_id: int, number: int) -> list[dict[str, Any]]:
    """The per-epoch metrics of one trial, by epoch."""
    q = (sa.select(CurveRow.epoch, CurveRow.metrics)
         .where(CurveRow.study_id == study_id, CurveRow.number == number)
         .order_by(CurveRow.epoch))
    with engine.connect() as conn:
        return [{"epoch": e, **(m if isinstance(m, dict) else json.loads(m))} for e, m in conn.execute(q)]
