"""The dashboard, page by page, in Streamlit's AppTest: on a study made by a real run (Ray workers
training torch networks), on a study plain Optuna made, and on storages that do not answer."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("streamlit", reason="the dashboard extra is not installed: "
                    "pip install 'tuner[dashboard]'")
pytest.importorskip("plotly", reason="the dashboard extra is not installed")

import optuna
import streamlit as st
from streamlit.testing.v1 import AppTest

import tuner
from tests.conftest import small_spec
from tuner._dashboard import APP

TIMEOUT = 60


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Each test reads the database, not what an earlier test's run left in Streamlit's caches."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()  # drop the cached engines with the test's database


def render(url: str, page: str = "studies", **query: str) -> AppTest:
    """One run of ``page`` with ``?query`` on storage ``url``, as a first visit would see it."""
    os.environ["TUNER_STORAGE"] = url
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    if page != "studies":
        at.switch_page(f"views/{page}.py")
    return at.run()


def texts(at: AppTest) -> str:
    """Everything the page shows, as one string (element protos: labels, values, data)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return "\n".join(out)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture(autouse=True)
def _restore_env() -> Iterator[None]:
    saved = os.environ.get("TUNER_STORAGE")
    yield
    if saved is None:
        os.environ.pop("TUNER_STORAGE", None)
    else:
        os.environ["TUNER_STORAGE"] = saved


def fmt(v: float) -> str:
    return f"{v:.6g}"


# --- a study from a real run -----------------------------------------------------------------

def test_studies_page_lists_the_study_with_its_counts_and_best(dashboard_study: tuple[str, str]) -> None:
    url, name = dashboard_study
    study = tuner.load_study(name, url)
    at = ok(render(url))
    frame = at.dataframe[0].value
    row = frame[frame["study"] == name].iloc[0]
    counts = study.counts()
    assert (row["complete"], row["failed"], row["pruned"], row["running"]) == (
        counts["COMPLETE"], counts["FAIL"], counts["PRUNED"], counts["RUNNING"])
    assert row["best value"] == fmt(study.best_trial.value) and row["state"] == "idle"
    assert int(metrics(at)["trials"]) >= 10
    assert any(link.proto.label.startswith(name) for link in at.get("page_link"))


def test_study_page_shows_counts_best_plots_and_trial_table(dashboard_study: tuple[str, str]) -> None:
    url, name = dashboard_study
    study = tuner.load_study(name, url)
    at = ok(render(url, "study", study=name))
    shown = metrics(at)
    counts = study.counts()
    assert shown["best value"] == fmt(study.best_trial.value)
    assert shown["complete"] == str(counts["COMPLETE"]) and shown["failed"] == str(counts["FAIL"])
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Optimization history" in c for c in charts)
    slices = next(c for c in charts if "Slices" in c)
    assert '"type":"log"' in slices  # lr, 1-momentum and batch size on log axes
    assert "1 - momentum" in slices and "stage 1" in slices  # points coloured by stage
    table = at.dataframe[0].value
    assert len(table) == 10 and set(table["trial"]) == set(range(10))
    assert "of 10 matching" in texts(at)


@pytest.mark.parametrize("view", ["Two parameters", "Parallel coordinates", "Importance", "Stages"])
def test_study_page_views(dashboard_study: tuple[str, str], view: str) -> None:
    url, name = dashboard_study
    at = ok(render(url, "study", study=name, view=view))
    page = texts(at)
    if view == "Stages":
        assert "Stage 0" in page and "Stage 1" in page
    elif view == "Importance":
        assert "Parameter importance" in page or "nothing to attribute" in page
    elif view == "Parallel coordinates":
        assert "log10(1-momentum)" in page and "log2 batch_size" in page
    else:
        assert "stage boxes" in page


def test_trial_table_filters_sort_and_search(dashboard_study: tuple[str, str]) -> None:
    url, name = dashboard_study
    study = tuner.load_study(name, url)
    at = ok(render(url, "study", study=name))
    at.selectbox(key=f"tt_{name}_sort").select("value")
    at.toggle(key=f"tt_{name}_desc").set_value(True)
    ok(at.run())
    assert at.dataframe[0].value["trial"].iloc[0] == study.best_trial.number
    at.multiselect(key=f"tt_{name}_states").select("COMPLETE")
    ok(at.run())
    assert f"of {study.counts()['COMPLETE']} matching" in texts(at)
    at.multiselect(key=f"tt_{name}_states").unselect("COMPLETE")
    at.text_input(key=f"tt_{name}_search").input("no-such-host")
    ok(at.run())
    assert "No trials match" in texts(at)
    at.text_input(key=f"tt_{name}_search").input("")
    at.selectbox(key=f"tt_{name}_stage").select(1)
    ok(at.run())
    assert f"of {sum(1 for t in study.trials() if t.stage == 1)} matching" in texts(at)


def test_trial_page_shows_outcome_curves_and_the_best(dashboard_study: tuple[str, str]) -> None:
    url, name = dashboard_study
    study = tuner.load_study(name, url)
    best = study.best_trial
    at = ok(render(url, "trial", study=name, trial=str(best.number)))
    shown = metrics(at)
    assert shown["value"] == fmt(best.value) and shown["state"] == "COMPLETE"
    assert shown["epochs run"] == "2"
    page = texts(at)
    assert "Training vs validation loss" in page and "host: " in page and "device: cpu" in page
    assert at.dataframe[0].value["this trial"].tolist() == [fmt(v) if isinstance(v, float) else str(v)
                                                            for v in best.params.values()]
    other = next(t for t in study.trials() if t.number != best.number)
    at = ok(render(url, "trial", study=name, trial=str(other.number)))
    page = texts(at)
    assert f"best #{best.number}" in page  # its curves overlaid, its params beside
    assert "best trial" in at.dataframe[0].value.columns
    failed = [t for t in study.trials() if t.state == "FAIL"]
    if failed:
        at = ok(render(url, "trial", study=name, trial=str(failed[0].number)))
        assert f"failed: {failed[0].reason}" in texts(at)


def test_compare_page_overlays_curves(dashboard_study: tuple[str, str]) -> None:
    url, name = dashboard_study
    study = tuner.load_study(name, url)
    picked = [t.number for t in study.trials(["COMPLETE"])][:3]
    query = ",".join(map(str, picked))
    at = ok(render(url, "compare", study=name, trials=query))
    chart = at.get("plotly_chart")[0].proto.spec
    assert all(f"trial {n}: val_loss" in chart for n in picked)
    assert at.dataframe[0].value["trial"].tolist() == picked
    assert at.query_params["trials"] == query
    diverged = [t.number for t in study.trials(["FAIL"]) if t.reason == "diverged"]
    if diverged:
        n = diverged[0]
        at = ok(render(url, "compare", study=name, trials=f"{n},{picked[0]}"))
        curve = study.curve(n)
        if any(curve[m].isna().all() for m in ("train_loss", "val_loss")):
            # NaN at every epoch draws nothing: the page says why instead
            assert f"trial {n}" in texts(at) and "NaN" in texts(at)
        else:  # it diverged after finite epochs (its init is random): those are drawn
            assert f"trial {n}: val_loss" in at.get("plotly_chart")[0].proto.spec
            assert "NaN or missing" not in texts(at)


def test_missing_trial_and_missing_study_are_messages(dashboard_study: tuple[str, str]) -> None:
    url, name = dashboard_study
    at = render(url, "trial", study=name, trial="999")
    assert not at.exception and "has no trial 999" in at.error[0].value
    at = render(url, "study", study="no-such-study")
    assert not at.exception and "study 'no-such-study' not found" in at.error[0].value


@pytest.mark.usefixtures("ray_session")
def test_reads_while_a_study_runs(tmp_path: Path) -> None:
    """SQLite in WAL: the pages render while the writer commits (no 'database is locked')."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    tuner.list_studies(url)
    name = f"live-{uuid.uuid4().hex[:6]}"
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            tuner.submit(small_spec(name, trials=8, epochs=3), storage=url)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    renders = 0
    while not done.is_set() or renders < 2:
        st.cache_data.clear()
        ok(render(url))
        if any(s.name == name for s in tuner.list_studies(url)):
            ok(render(url, "study", study=name))
        renders += 1
    assert not failure, failure
    assert tuner.load_study(name, url).counts()["COMPLETE"] + tuner.load_study(name, url).counts()[
        "FAIL"] == 8


# --- other studies and storages --------------------------------------------------------------

def test_a_study_plain_optuna_made(tmp_path: Path) -> None:
    """No spec, no curves: params on linear/category axes, everything still renders."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tuner.list_studies(url)  # tuner's tables, as any tuner command would create them
    study = optuna.create_study(study_name="plain", storage=url)
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2
                   + (t.suggest_categorical("c", ["a", "b"]) == "b"), n_trials=6)
    at = ok(render(url, "study", study="plain"))
    assert metrics(at)["best value"] == fmt(study.best_value)
    ok(render(url, "trial", study="plain", trial="0"))
    assert "No per-epoch curve" in texts(render(url, "trial", study="plain", trial="0"))
    ok(render(url, "study", study="plain", view="Importance"))


def test_elapsed_is_first_start_to_last_completion_even_under_a_second(tmp_path: Path) -> None:
    """A finished study's elapsed time spans its first trial start to its last completion. 16
    small trials run in about 0.3 s once Ray is up: in whole seconds that read ``0:00:00``, as if
    the study had never run, so under a minute it is shown to a fraction of a second."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tuner.list_studies(url)  # tuner's tables, as any tuner command would create them
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    spans = {  # (start, completion) of each trial, in seconds after t0
        "quick": [(0.0, 0.02)] + [(0.02 * i, 0.02 * i + 0.02) for i in range(1, 16)],
        "long": [(0.0, 60.0), (3600.0, 93784.0)],  # 1 day, 2 h, 3 min, 4 s in all
    }
    for name, trials in spans.items():
        study = optuna.create_study(study_name=name, storage=url)
        for number, (start, end) in enumerate(trials):
            study.add_trial(optuna.trial.FrozenTrial(
                number=number, trial_id=number, state=optuna.trial.TrialState.COMPLETE,
                value=float(number), datetime_start=t0 + dt.timedelta(seconds=start),
                datetime_complete=t0 + dt.timedelta(seconds=end), params={"x": 0.5},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                user_attrs={}, system_attrs={}, intermediate_values={}))
    frame = ok(render(url)).dataframe[0].value.set_index("study")
    assert frame.loc["quick", "complete"] == 16
    assert frame.loc["quick", "elapsed"] == "0.32 s"
    assert frame.loc["long", "elapsed"] == "1 d 2:03:04"


def test_an_empty_storage_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    tuner.list_studies(url)
    assert "No studies" in texts(ok(render(url)))
    at = render(url, "study")
    assert not at.exception and "no studies" in at.error[0].value


def test_a_missing_sqlite_file_is_a_message_not_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    at = render(f"sqlite:///{path}")
    assert not at.exception and "No studies" in texts(at)
    at = render(f"sqlite:///{path}", "study", study="s")
    assert not at.exception and "not found" in at.error[0].value and str(path) in at.error[0].value
    assert not path.exists()  # the dashboard never writes, not even an empty file


def test_an_unreachable_server_is_a_message_without_the_password() -> None:
    url = "postgresql+psycopg://tuner:s3cr3t-pw-123@127.0.0.1:9/tuner"  # port 9: nothing listens
    at = render(url)
    assert not at.exception and at.error
    assert "cannot open storage" in at.error[0].value
    assert "s3cr3t-pw-123" not in texts(at) and "***" in at.error[0].value


def test_postgres_password_never_shown(pg_url: str, caplog: pytest.LogCaptureFixture,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A PostgreSQL URL with a password: no page and no log line contains it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(pg_url)
    if not parsed.password:  # trust auth ignores a password, so one can be added for the check
        parsed = parsed.set(password="tuner-test-secret-9")
    url = parsed.render_as_string(hide_password=False)
    name = f"pw-{uuid.uuid4().hex[:6]}"
    tuner.list_studies(url)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1, log=True), n_trials=4)
    seen = []
    for page, query in [("studies", {}), ("study", {"study": name}),
                        ("trial", {"study": name, "trial": "0"}),
                        ("compare", {"study": name, "trials": "0,1"})]:
        at = ok(render(url, page, **query))
        seen.append(texts(at))
    assert name in seen[0] and fmt(study.best_value) in seen[1]
    everything = "\n".join(seen) + caplog.text + "".join(capsys.readouterr())
    assert parsed.password not in everything
    assert "***" in seen[0]  # the sidebar shows the storage, redacted


# --- the pieces without Streamlit: scales, importance, the command --------------------------

def test_axes_put_each_parameter_on_its_own_scale() -> None:
    import pandas as pd

    from tuner._dashboard._axes import axis_for

    spec = tuner.load_spec(small_spec(params={
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
        "beta": {"type": "float", "low": 0.9, "high": 0.999, "scale": "one_minus_log"},
        "bs": {"type": "int", "low": 32, "high": 512, "scale": "pow2"},
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5}}))
    lr, beta, bs, opt, dropout = (axis_for(n, spec) for n in ("lr", "beta", "bs", "opt", "dropout"))
    assert (lr.kind, beta.kind, bs.kind, opt.kind, dropout.kind) == (
        "log", "log", "log", "category", "linear")
    assert beta.plot_values(pd.Series([0.99])).iloc[0] == pytest.approx(0.01)
    assert beta.plot_range(0.9, 0.999) == pytest.approx((0.001, 0.1))
    assert beta.coordinate(pd.Series([0.999])).iloc[0] == pytest.approx(-3)
    assert bs.ticks == (32, 64, 128, 256, 512) and bs.coordinate(pd.Series([64])).iloc[0] == 6
    assert opt.coordinate(pd.Series(["adam"])).iloc[0] == 1
    assert axis_for("x", None, pd.Series(["a", "b"])).kind == "category"  # no spec: by values


def test_importance_needs_two_trials_and_finds_the_parameter_that_matters() -> None:
    import numpy as np
    import pandas as pd

    from tuner._dashboard._axes import axis_for
    from tuner._dashboard._importance import importance

    rng = np.random.default_rng(0)
    lr, noise = 10 ** rng.uniform(-4, 0, 400), rng.uniform(0, 1, 400)
    frame = pd.DataFrame({"state": "COMPLETE", "value": (np.log10(lr) + 2) ** 2 + 0.01 * noise,
                          "params_lr": lr, "params_noise": noise})
    axes = [axis_for("lr", None), axis_for("noise", None)]
    assert importance(frame.head(1), axes) == {}
    scores = importance(frame, axes)
    assert next(iter(scores)) == "lr" and scores["lr"] > 0.9
    assert importance(frame.assign(value=1.0), axes) == {}  # nothing varies: nothing to attribute


def test_the_command_passes_the_storage_by_environment(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tuner.cli import _dashboard as cli
    from tuner.cli import app

    seen: dict[str, Any] = {}

    class FakePopen:
        def __init__(self, argv: list[str], env: dict[str, str]) -> None:
            seen.update(argv=argv, env=env)

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(cli, "_check", lambda url: None)
    url = "postgresql+psycopg://me:hunter2-pw@db.example/tuner"
    result = CliRunner().invoke(app, ["dashboard", "--storage", url, "--port", "8600"])
    assert result.exit_code == 0, result.output
    assert seen["env"]["TUNER_STORAGE"] == url and "hunter2-pw" not in " ".join(seen["argv"])
    assert seen["argv"][seen["argv"].index("--server.port") + 1] == "8600"
    assert seen["argv"][seen["argv"].index("--server.address") + 1] == "127.0.0.1"
    assert "hunter2-pw" not in result.output and "me:***@db.example" in result.output


def test_the_command_says_what_to_install_or_create(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    import importlib.util

    from typer.testing import CliRunner

    from tuner.cli import app

    missing = CliRunner().invoke(app, ["dashboard", "--storage", f"sqlite:///{tmp_path}/no.db"])
    assert missing.exit_code == 1 and "no database at" in missing.output
    assert not (tmp_path / "no.db").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "streamlit" else real(name, *a))
    result = CliRunner().invoke(app, ["dashboard"])
    assert result.exit_code == 1 and "pip install 'tuner[dashboard]'" in result.output
