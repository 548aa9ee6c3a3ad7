"""Optuna's schema, declared once, and every statement tuner writes into it.

tuner writes Optuna's tables directly (SQLAlchemy Core, many rows per transaction) instead of
through ``RDBStorage``'s one-transaction-per-call API, which costs ~10x more per trial. Doing so
is only safe when every write follows Optuna's own rules, so they live here and nowhere else:

- **Numbers.** A trial's number is assigned in the database, in the inserting transaction, with
  Optuna's rule and lock: the study row is locked (``SELECT ... FOR UPDATE``), the trial is
  inserted, and its number is the count of the study's trials with a smaller ``trial_id``. Any
  plain Optuna process writing the same study takes the same lock, so numbers never collide.
- **Claims.** A WAITING (enqueued) trial becomes RUNNING only through a conditional update
  (``... WHERE state = 'WAITING'``); a lost claim means another process took it.
- **Times** are naive UTC, exactly as Optuna 5's ORM stores them (it converts local times on the
  way in and out).
- **Non-finite floats** go where Optuna puts them: NULL plus a type tag.
- **Idempotence.** Every tuner-created trial carries a unique ``tuner:uid`` system attribute and a
  finished trial is never written again, so a batch retried after a commit whose reply was lost
  neither duplicates nor rewrites anything.

The read-side queries (``_reads``) use the table objects declared here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Connection

__all__ = [
    "studies", "study_directions", "study_user_attrs", "study_system_attrs", "trials",
    "trial_params", "trial_values", "trial_intermediate", "trial_user_attrs", "trial_system_attrs",
    "UID_KEY", "RUN_KEY", "NewTrial", "Outcome", "StoredTrial", "utcnow", "insert_study",
    "insert_trials", "find_uids", "claim_waiting", "write_outcome", "set_study_attr",
    "load_trials", "trial_states_since", "json_safe",
]

UID_KEY = "tuner:uid"
"""Trial system attribute: a unique id per trial tuner created (idempotent retries)."""
RUN_KEY = "tuner:run"
"""Trial system attribute: the trial was run by tuner (created RUNNING or claimed by a driver).
Trials without it were run by another writer (plain Optuna) and never use tuner's budget."""

_STATE = sa.Enum(TrialState, name="trialstate")
studies = sa.table("studies", sa.column("study_id", sa.Integer), sa.column("study_name"))
study_directions = sa.table(
    "study_directions", sa.column("study_direction_id", sa.Integer), sa.column("study_id"),
    sa.column("direction", sa.Enum(StudyDirection, name="studydirection")),
    sa.column("objective"))
study_user_attrs = sa.table("study_user_attributes", sa.column("study_id"), sa.column("key"),
                            sa.column("value_json"))
study_system_attrs = sa.table("study_system_attributes", sa.column("study_id"),
                              sa.column("key"), sa.column("value_json"))
trials = sa.table(
    "trials", sa.column("trial_id", sa.Integer), sa.column("number", sa.Integer),
    sa.column("study_id", sa.Integer), sa.column("state", _STATE),
    sa.column("datetime_start", sa.DateTime), sa.column("datetime_complete", sa.DateTime))
trial_params = sa.table("trial_params", sa.column("trial_id"), sa.column("param_name"),
                        sa.column("param_value", sa.Float), sa.column("distribution_json"))
trial_values = sa.table(
    "trial_values", sa.column("trial_id"), sa.column("objective"), sa.column("value", sa.Float),
    sa.column("value_type", sa.Enum("FINITE", "INF_POS", "INF_NEG", name="trialvaluetype")))
trial_intermediate = sa.table(
    "trial_intermediate_values", sa.column("trial_id"), sa.column("step"),
    sa.column("intermediate_value", sa.Float),
    sa.column("intermediate_value_type", sa.Enum(
        "FINITE", "INF_POS", "INF_NEG", "NAN", name="trialintermediatevaluetype")))
trial_user_attrs = sa.table("trial_user_attributes", sa.column("trial_id"), sa.column("key"),
                            sa.column("value_json"))
trial_system_attrs = sa.table("trial_system_attributes", sa.column("trial_id"),
                              sa.column("key"), sa.column("value_json"))


def utcnow() -> dt.datetime:
    """Naive UTC: what Optuna's ORM stores in ``datetime_start`` / ``datetime_complete``."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so that it is valid JSON: PostgreSQL's
    JSON type refuses ``NaN``, and a JSON reader cannot parse what SQLite would keep."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(json_safe(value))


@dataclass(frozen=True)
class NewTrial:
    """A trial to insert: RUNNING (sampled now) or WAITING (enqueued with fixed params)."""

    uid: str
    state: TrialState
    started: dt.datetime | None
    params: Mapping[str, Any] = field(default_factory=dict)
    distributions: Mapping[str, BaseDistribution] = field(default_factory=dict)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as Optuna records it."""

    state: TrialState
    completed: dt.datetime
    values: Sequence[float] | None = None
    intermediate: Mapping[int, float] = field(default_factory=dict)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StoredTrial:
    """A trial as read back: Optuna's view plus whether tuner ran it."""

    frozen: FrozenTrial
    trial_id: int
    ours: bool


def insert_study(conn: Connection, name: str, direction: str) -> int:
    """Insert a study and its direction (objective 0); the caller's transaction decides."""
    study_id = int(conn.execute(sa.insert(studies).values(study_name=name)
                                .returning(studies.c.study_id)).scalar_one())
    conn.execute(sa.insert(study_directions).values(
        study_id=study_id, direction=StudyDirection[direction.upper()], objective=0))
    return study_id


def insert_trials(conn: Connection, study_id: int, new: Sequence[NewTrial]) -> list[tuple[int, int]]:
    """Insert ``new`` trials; returns ``(trial_id, number)`` for each, numbered by Optuna's rule.

    Optuna's order is kept: lock the study row, insert, then count the study's trials with a
    smaller id. Counting after the insert matters on SQLite, where the insert is what takes the
    database's write lock: a count taken before it could race another writer.
    """
    if not new:
        return []
    conn.execute(sa.select(studies.c.study_id).where(studies.c.study_id == study_id)
                 .with_for_update())
    ids = []
    for t in new:
        ids.append(int(conn.execute(sa.insert(trials).values(
            number=None, study_id=study_id, state=t.state, datetime_start=t.started,
            datetime_complete=None).returning(trials.c.trial_id)).scalar_one()))
    first = int(conn.execute(sa.select(sa.func.count()).select_from(trials).where(
        trials.c.study_id == study_id, trials.c.trial_id < ids[0])).scalar_one())
    out = []
    for offset, (trial_id, t) in enumerate(zip(ids, new, strict=True)):
        # ids inserted under the study lock are the study's newest, in order: numbers follow
        number = first + offset
        conn.execute(sa.update(trials).where(trials.c.trial_id == trial_id).values(number=number))
        _insert_params(conn, trial_id, t.params, t.distributions)
        _insert_attrs(conn, trial_system_attrs, trial_id, {UID_KEY: t.uid, **t.system_attrs})
        _insert_attrs(conn, trial_user_attrs, trial_id, t.user_attrs)
        out.append((trial_id, number))
    return out


def find_uids(conn: Connection, study_id: int, uids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """uid -> (trial_id, number) for trials already inserted: a retried batch skips them."""
    wanted = [json.dumps(u) for u in uids]
    if not wanted:
        return {}
    q = (sa.select(trial_system_attrs.c.value_json, trials.c.trial_id, trials.c.number)
         .join(trials, trials.c.trial_id == trial_system_attrs.c.trial_id)
         .where(trials.c.study_id == study_id, trial_system_attrs.c.key == UID_KEY,
                trial_system_attrs.c.value_json.in_(wanted)))
    return {json.loads(v): (int(i), int(n)) for v, i, n in conn.execute(q)}


def claim_waiting(conn: Connection, trial_id: int, started: dt.datetime, run: str,
                  params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> bool:
    """WAITING -> RUNNING if nobody else took it first; stores the params it will run with.

    ``run`` (unique per claim) is recorded as ``tuner:run``; :func:`claimed_by` tells a retried
    claim whose first attempt did commit from one that another process won.
    """
    taken = conn.execute(sa.update(trials).where(
        trials.c.trial_id == trial_id, trials.c.state == TrialState.WAITING,
    ).values(state=TrialState.RUNNING, datetime_start=started)).rowcount
    if taken != 1:
        return False
    conn.execute(sa.delete(trial_params).where(trial_params.c.trial_id == trial_id))
    _insert_params(conn, trial_id, params, distributions)
    _replace_attrs(conn, trial_system_attrs, trial_id, {RUN_KEY: run})
    return True


def claimed_by(conn: Connection, trial_id: int) -> str | None:
    value = conn.execute(sa.select(trial_system_attrs.c.value_json).where(
        trial_system_attrs.c.trial_id == trial_id, trial_system_attrs.c.key == RUN_KEY)).scalar()
    return None if value is None else json.loads(value)


def write_outcome(conn: Connection, trial_id: int, o: Outcome) -> bool:
    """Write how a RUNNING trial ended; False (and nothing written) if it already ended, which
    is how a retried batch stays idempotent and how another writer's ``tell`` is respected."""
    state = conn.execute(sa.select(trials.c.state).where(trials.c.trial_id == trial_id)
                         .with_for_update()).scalar()
    if state is None or _state(state).is_finished():
        return False
    if o.intermediate:
        conn.execute(sa.delete(trial_intermediate).where(trial_intermediate.c.trial_id == trial_id))
        conn.execute(sa.insert(trial_intermediate), [
            {"trial_id": trial_id, "step": int(step), **_typed(value, "intermediate_value")}
            for step, value in sorted(o.intermediate.items())])
    _replace_attrs(conn, trial_user_attrs, trial_id, o.user_attrs)
    _replace_attrs(conn, trial_system_attrs, trial_id, o.system_attrs)
    if o.state == TrialState.COMPLETE and o.values:
        conn.execute(sa.delete(trial_values).where(trial_values.c.trial_id == trial_id))
        conn.execute(sa.insert(trial_values), [
            {"trial_id": trial_id, "objective": i, **_typed(v, "value")}
            for i, v in enumerate(o.values)])
    conn.execute(sa.update(trials).where(trials.c.trial_id == trial_id)
                 .values(state=o.state, datetime_complete=o.completed))
    return True


def set_study_attr(conn: Connection, study_id: int, key: str, value: Any, *,
                   system: bool = False) -> None:
    """Upsert one study user (or system) attribute, JSON-encoded as Optuna does."""
    table = study_system_attrs if system else study_user_attrs
    conn.execute(sa.delete(table).where(table.c.study_id == study_id, table.c.key == key))
    conn.execute(sa.insert(table).values(study_id=study_id, key=key, value_json=_dumps(value)))


def study_attrs(conn: Connection, study_id: int, *, system: bool = False) -> dict[str, Any]:
    table = study_system_attrs if system else study_user_attrs
    return {k: json.loads(v) for k, v in conn.execute(
        sa.select(table.c.key, table.c.value_json).where(table.c.study_id == study_id))}


def trial_states_since(conn: Connection, study_id: int, after_id: int,
                       watch: Iterable[int] = ()) -> list[tuple[int, int, TrialState]]:
    """``(trial_id, number, state)`` of trials newer than ``after_id`` or in ``watch``: the cheap
    poll that tells the coordinator what other writers added or finished."""
    cond = trials.c.trial_id > after_id
    watched = list(watch)
    if watched:
        cond = cond | trials.c.trial_id.in_(watched)
    q = (sa.select(trials.c.trial_id, trials.c.number, trials.c.state)
         .where(trials.c.study_id == study_id, cond).order_by(trials.c.trial_id))
    return [(int(i), int(n), _state(s)) for i, n, s in conn.execute(q) if n is not None]


def load_trials(conn: Connection, study_id: int, trial_ids: Sequence[int] | None = None
                ) -> list[StoredTrial]:
    """Whole trials (params, values, intermediate values, attributes) of a study, by number;
    only ``trial_ids`` when given. Six queries however many trials."""
    cond = trials.c.study_id == study_id
    if trial_ids is not None:
        if not trial_ids:
            return []
        cond = cond & trials.c.trial_id.in_(list(trial_ids))
    rows = conn.execute(sa.select(trials).where(cond).order_by(trials.c.number)).all()
    ids = [int(r.trial_id) for r in rows]
    params: dict[int, dict[str, Any]] = {i: {} for i in ids}
    dists: dict[int, dict[str, BaseDistribution]] = {i: {} for i in ids}
    cache: dict[str, BaseDistribution] = {}
    for tid, name, value, dist_json in _rows_for(conn, trial_params, ids, trial_params.c.param_name,
                                                 trial_params.c.param_value,
                                                 trial_params.c.distribution_json):
        dist = cache.get(dist_json) or cache.setdefault(dist_json, json_to_distribution(dist_json))
        params[tid][name] = dist.to_external_repr(value)
        dists[tid][name] = dist
    values: dict[int, dict[int, float]] = {i: {} for i in ids}
    for tid, objective, value, kind in _rows_for(conn, trial_values, ids, trial_values.c.objective,
                                                 trial_values.c.value, trial_values.c.value_type):
        values[tid][int(objective)] = _untyped(value, kind)
    inter: dict[int, dict[int, float]] = {i: {} for i in ids}
    for tid, step, value, kind in _rows_for(conn, trial_intermediate, ids, trial_intermediate.c.step,
                                            trial_intermediate.c.intermediate_value,
                                            trial_intermediate.c.intermediate_value_type):
        inter[tid][int(step)] = _untyped(value, kind)
    user: dict[int, dict[str, Any]] = {i: {} for i in ids}
    for tid, key, value in _rows_for(conn, trial_user_attrs, ids, trial_user_attrs.c.key,
                                     trial_user_attrs.c.value_json):
        user[tid][key] = json.loads(value)
    system: dict[int, dict[str, Any]] = {i: {} for i in ids}
    for tid, key, value in _rows_for(conn, trial_system_attrs, ids, trial_system_attrs.c.key,
                                     trial_system_attrs.c.value_json):
        system[tid][key] = json.loads(value)
    out = []
    for r in rows:
        tid = int(r.trial_id)
        vals = [values[tid][k] for k in sorted(values[tid])] or None
        frozen = FrozenTrial(
            number=int(r.number), state=_state(r.state), value=None, values=vals,
            datetime_start=_local(r.datetime_start), datetime_complete=_local(r.datetime_complete),
            params=params[tid], distributions=dists[tid], user_attrs=user[tid],
            system_attrs={k: v for k, v in system[tid].items() if not k.startswith("tuner:")},
            intermediate_values=inter[tid], trial_id=tid)
        out.append(StoredTrial(frozen, tid, ours=RUN_KEY in system[tid]))
    return out


def _rows_for(conn: Connection, table: Any, ids: Sequence[int], *cols: Any) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(ids), 5000):  # bounded IN lists
        chunk = ids[i:i + 5000]
        out.extend(conn.execute(sa.select(table.c.trial_id, *cols)
                                .where(table.c.trial_id.in_(chunk))).all())
    return out


def _insert_params(conn: Connection, trial_id: int, params: Mapping[str, Any],
                   dists: Mapping[str, BaseDistribution]) -> None:
    if params:
        conn.execute(sa.insert(trial_params), [
            {"trial_id": trial_id, "param_name": name,
             "param_value": dists[name].to_internal_repr(value),
             "distribution_json": distribution_to_json(dists[name])}
            for name, value in params.items()])


def _insert_attrs(conn: Connection, table: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    if attrs:
        conn.execute(sa.insert(table), [{"trial_id": trial_id, "key": k, "value_json": _dumps(v)}
                                        for k, v in attrs.items()])


def _replace_attrs(conn: Connection, table: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Upsert as delete-then-insert: portable across SQLite and PostgreSQL."""
    if attrs:
        conn.execute(sa.delete(table).where(table.c.trial_id == trial_id,
                                            table.c.key.in_(list(attrs))))
        _insert_attrs(conn, table, trial_id, attrs)


def _typed(value: float, column: str) -> dict[str, Any]:
    """Optuna stores non-finite floats as NULL plus a type tag (``<column>_type``)."""
    tag = "value_type" if column == "value" else f"{column}_type"
    if math.isnan(value):
        return {column: None, tag: "NAN"}
    if math.isinf(value):
        return {column: None, tag: "INF_POS" if value > 0 else "INF_NEG"}
    return {column: value, tag: "FINITE"}


def _untyped(value: float | None, kind: Any) -> float:
    name = getattr(kind, "name", kind)
    if name == "NAN":
        return math.nan
    if name == "INF_POS":
        return math.inf
    if name == "INF_NEG":
        return -math.inf
    return float(value)  # type: ignore[arg-type]


def _state(value: Any) -> TrialState:
    return value if isinstance(value, TrialState) else TrialState[getattr(value, "name", value)]


def _local(value: dt.datetime | None) -> dt.datetime | None:
    """Stored naive UTC -> naive local, as Optuna's ORM hands datetimes to FrozenTrial."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)
