"""Scheduling logic without Ray: the coordinator on real storage, driven by hand."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest

from tests.conftest import open_coordinator, small_spec, wait_until
from tuner import StudyExistsError, load_study
from tuner.execution import Coordinator, TrialResult
from tuner.execution import _coordinator as coordinator_module
from tuner.storage import open_storage


def _result(a, value: float, state: str = "COMPLETE", reason: str | None = None) -> TrialResult:
    curve = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_accuracy": value / 2},
             {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": value}]
    return TrialResult(trial_id=a.trial_id, number=a.number, state=state,
                       value=value if state == "COMPLETE" else None,
                       reason=reason, curve=curve, host="h", device="cpu", worker="w0")


def test_exact_count_and_write_behind(storage_url: str) -> None:
    spec = small_spec(trials=5)
    c = open_coordinator(spec, storage_url)
    a, b = c.next_trial("w0"), c.next_trial("w1")
    values = iter([0.5, 0.9, 0.7, 0.2, 0.8])
    while True:
        a = c.next_trial("w0", _result(a, next(values))) if a else None
        if a is None:
            break
    assert c.next_trial("w1", _result(b, next(values))) is None
    final = c.close()
    assert final["complete"] == 5 and final["done"] and final["pending_writes"] == 0
    study = load_study(spec["study"], storage_url)
    assert study.counts()["COMPLETE"] == 5 and study.counts()["RUNNING"] == 0
    assert [t.value for t in study.best_trials(3)] == [0.9, 0.8, 0.7]
    best = study.best_trial
    assert best.host == "h" and best.device == "cpu" and best.epochs_run == 2
    curve = study.curve(best.number)
    assert list(curve["epoch"]) == [1, 2] and list(curve["val_accuracy"]) == [0.45, 0.9]
    plain = optuna.load_study(study_name=spec["study"], storage=storage_url)
    assert len(plain.trials) == 5 and plain.best_value == 0.9
    assert plain.best_trial.intermediate_values == {1: 0.45, 2: 0.9}
    assert set(plain.best_trial.params) == {"lr", "batch_size", "layers"}


def test_failed_outcomes_use_budget_but_lost_workers_do_not(storage_url: str) -> None:
    spec = small_spec(trials=3)
    c = open_coordinator(spec, storage_url)
    a = c.next_trial("w0")
    lost = c.next_trial("w1")
    assert c.worker_lost("w1") == lost.number  # re-queued with the same params
    a2 = c.next_trial("w0", _result(a, 0.0, "FAIL", "diverged"))
    assert a2.params == lost.params  # the queued trial comes first
    a3 = c.next_trial("w0", _result(a2, 0.6))
    assert c.next_trial("w0", _result(a3, 0.7)) is None
    final = c.close()
    assert (final["complete"], final["failed"], final["requeued"]) == (2, 1, 1)
    study = load_study(spec["study"], storage_url)
    by_reason = {t.number: t.reason for t in study.trials(["FAIL"])}
    assert sorted(by_reason.values()) == ["diverged", "worker_lost"]
    numbers = [t.number for t in study.trials()]
    assert numbers == sorted(set(numbers))  # no duplicate numbers


def test_interrupt_then_resume_reaches_exact_count(storage_url: str) -> None:
    spec = small_spec(trials=4)
    c = open_coordinator(spec, storage_url)
    a = c.next_trial("w0")
    b = c.next_trial("w0", _result(a, 0.3))
    running = c.next_trial("w1")
    c.stop()
    c.close()
    study = load_study(spec["study"], storage_url)
    assert study.counts()["RUNNING"] == 0
    assert [t.reason for t in study.trials(["FAIL"])] == ["interrupted", "interrupted"]

    r = open_coordinator(spec, storage_url, resume=True)
    first = r.next_trial("w0")
    second = r.next_trial("w1")
    assert [first.params, second.params] == [b.params, running.params]  # interrupted run first
    pending, n = [first, second], 0
    while pending:
        n += 1
        nxt = r.next_trial("w0", _result(pending.pop(0), 0.1 * n))
        if nxt is not None:
            pending.append(nxt)
    final = r.close()
    assert final["complete"] == 4
    counts = load_study(spec["study"], storage_url).counts()
    assert counts["COMPLETE"] == 4 and counts["RUNNING"] == 0 and counts["WAITING"] == 0


def test_resume_after_crash_fails_running_trials(sqlite_url: str) -> None:
    """A driver that dies without stop(): its RUNNING trials are failed and re-queued on resume."""
    spec = small_spec(trials=2)
    c = open_coordinator(spec, sqlite_url)
    a = c.next_trial("w0")
    # the RUNNING row is stored when next_trial returns; then the process "dies" (its lease with
    # it: a dead pid on this host is a stale lease)
    from tuner.storage import _lease
    with open_storage(sqlite_url).engine.begin() as conn:
        conn.execute(_lease.LeaseRow.__table__.update().values(pid=2**22 + 12345))
    r = open_coordinator(spec, sqlite_url, resume=True)
    assert r.progress()["requeued"] == 1
    b = r.next_trial("w0")
    assert b.params == a.params and b.number != a.number
    r.close()


def test_duplicate_name_refused(sqlite_url: str) -> None:
    spec = small_spec()
    open_coordinator(spec, sqlite_url).close()
    with pytest.raises(StudyExistsError, match="tuner resume"):
        open_coordinator(spec, sqlite_url)


def test_pruning_reports_reach_the_pruner(sqlite_url: str) -> None:
    spec = small_spec(trials=4, pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    c = open_coordinator(spec, sqlite_url)
    a = c.next_trial("w0")
    assert c.report(a.trial_id, 1, 0.9) is False
    r = _result(a, 0.9)
    r.reported = True
    b = c.next_trial("w0", r)
    assert c.report(b.trial_id, 1, 0.1) is True  # far below the median of finished trials
    c.close()


def test_grid_caps_the_count_at_the_grid_size(sqlite_url: str) -> None:
    spec = small_spec(trials=50, sampler={"kind": "grid"},
                      params={"batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"}})
    c = open_coordinator(spec, sqlite_url)
    seen = []
    a = c.next_trial("w0")
    while a is not None:
        seen.append(a.params["batch_size"])
        a = c.next_trial("w0", _result(a, 0.5))
    assert sorted(seen) == [64, 128, 256]
    c.close()


def test_stored_times_are_the_coordinators_in_utc(sqlite_url: str) -> None:
    import datetime as dt

    def utc() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    spec = small_spec(trials=1)
    c = open_coordinator(spec, sqlite_url)
    start = utc()
    a = c.next_trial("w0")
    before = utc()
    assert c.next_trial("w0", _result(a, 0.5)) is None
    after = utc()
    c.close()
    t = load_study(spec["study"], sqlite_url).trials()[0]
    assert start <= t.datetime_start <= before <= t.datetime_complete <= after
    assert t.duration_s is not None and 0 <= t.duration_s < 0.5


class _Gated(optuna.samplers.BaseSampler):
    """The spec's own sampler, whose draws wait until ``gate`` opens: an ask as slow as a test
    needs it (TPE over 100k trials takes about a second per ask), at a moment the test knows."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner, self.gate, self.asking = inner, threading.Event(), threading.Event()
        self.error: Exception | None = None  # raised by draws once the gate opens

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
        self.asking.set()
        assert self.gate.wait(60), "the test never opened the gate"
        if self.error is not None:
            raise self.error
        return self.inner.sample_independent(study, trial, name, distribution)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> list[_Gated]:
    """Coordinators made in the test get a gated sampler (the list holds it)."""
    made: list[_Gated] = []
    real = coordinator_module.create_sampler

    def create(spec):  # type: ignore[no-untyped-def]
        made.append(_Gated(real(spec)))
        return made[-1]

    monkeypatch.setattr(coordinator_module, "create_sampler", create)
    return made


FIXED = {"lr": 0.01, "batch_size": 64, "layers": 1}


def test_a_slow_ask_delays_no_result_and_no_report(sqlite_url: str, gated: list[_Gated]) -> None:
    spec = small_spec(trials=3, resources={"workers": 1, "cpus_per_trial": 1},
                      pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    c = open_coordinator(spec, sqlite_url, warm_start=[{"params": FIXED, "source": "donor"}])
    (sampler,) = gated
    a = c.next_trial("w0")  # the queued trial: its params are fixed, the sampler draws nothing
    assert a.params == FIXED
    assert sampler.asking.wait(30)  # the asker now waits inside the sampler for trial 1
    with ThreadPoolExecutor(2) as pool:
        # While that ask runs: a pruning report is answered, and a result is recorded...
        assert pool.submit(c.report, a.trial_id, 1, 0.4).result(timeout=30) is False
        r = _result(a, 0.8)
        r.reported = True
        nxt = pool.submit(c.next_trial, "w0", r)
        wait_until("the result to be recorded", lambda: c.progress()["complete"] == 1, 30, 0.02)
        assert not nxt.done()  # ...while the worker waits for its next trial, off the lock
        sampler.gate.set()
        b = nxt.result(timeout=30)
    assert b is not None and b.number == 1 and b.params != FIXED
    b2 = c.next_trial("w0", _result(b, 0.6))
    assert b2 is not None and c.next_trial("w0", _result(b2, 0.7)) is None
    final = c.close()
    assert (final["complete"], final["failed"], final["done"]) == (3, 0, True)
    trials = optuna.load_study(study_name=spec["study"], storage=sqlite_url).trials
    assert [t.number for t in trials] == [0, 1, 2] and trials[0].params == FIXED
    assert [t.value for t in trials] == [0.8, 0.6, 0.7]


def test_a_trial_asked_while_the_study_stops_never_reaches_the_database(
        sqlite_url: str, gated: list[_Gated]) -> None:
    spec = small_spec(trials=3, resources={"workers": 1, "cpus_per_trial": 1})
    c = open_coordinator(spec, sqlite_url, warm_start=[{"params": FIXED, "source": "donor"}])
    (sampler,) = gated
    a = c.next_trial("w0")
    assert sampler.asking.wait(30)
    c.stop()  # trial 0 fails "interrupted" (and is queued for resume); trial 1 is being asked
    sampler.gate.set()
    wait_until("the asker to finish its ask", lambda: c._asking == 0, 30, 0.02)
    assert c.next_trial("w0") is None
    c.close()
    trials = optuna.load_study(study_name=spec["study"], storage=sqlite_url).trials
    assert [(t.number, t.state.name) for t in trials] == [(0, "FAIL"), (1, "WAITING")]
    assert trials[0].user_attrs["reason"] == "interrupted" and trials[1].params == {}
    assert trials[1].system_attrs["fixed_params"] == FIXED


def test_a_sampler_that_raises_on_the_asker_reaches_the_waiting_worker(
        sqlite_url: str, gated: list[_Gated]) -> None:
    """An ask fails on the asker thread (a sampler bug): the worker waiting for that trial gets
    the error, as it did when it asked itself, instead of waiting for ever."""
    spec = small_spec(trials=3, resources={"workers": 1, "cpus_per_trial": 1})
    c = open_coordinator(spec, sqlite_url)
    (sampler,) = gated
    sampler.error = RuntimeError("sampler bug")
    sampler.gate.set()
    with pytest.raises(RuntimeError, match="sampler bug"):
        c.next_trial("w0")
    c.stop()
    c.close()
    assert optuna.load_study(study_name=spec["study"], storage=sqlite_url).trials == []
