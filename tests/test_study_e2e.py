"""Real studies: real Ray workers training real torch networks into SQLite and PostgreSQL."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

import tuner
from tests.conftest import assert_stopped_trials_rerun_first, small_spec
from tuner.cli import app
from tuner.samplers import trial_stage

pytestmark = pytest.mark.usefixtures("ray_session")
runner = CliRunner()


def test_two_workers_give_exactly_n_finished_trials(storage_url: str) -> None:
    spec = small_spec(trials=8)
    study = tuner.submit(spec, storage=storage_url)
    counts = study.counts()
    assert counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"] == 8
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0
    trials = study.trials()
    assert len({t.host for t in trials}) == 1 and {t.device for t in trials} == {"cpu"}
    best = study.best_trial
    assert 0.5 < best.value <= 1.0
    curve = study.curve(best.number)
    assert list(curve["epoch"]) == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(curve.columns)
    assert curve["val_accuracy"].iloc[-1] == pytest.approx(best.value) or best.value == curve["val_accuracy"].max()
    # plain Optuna reads the same study
    plain = optuna.load_study(study_name=spec["study"], storage=storage_url)
    assert len(plain.trials) == 8 and plain.best_value == pytest.approx(best.value)
    assert plain.best_trial.params == best.params


def test_divergence_fails_the_trial_and_the_study_goes_on(sqlite_url: str) -> None:
    spec = small_spec(
        trials=4, epochs=3, sampler={"kind": "grid"},
        params={"lr": {"type": "categorical", "choices": [1.0e6, 0.01]}},
        fixed={"optimizer": "sgd", "momentum": 0.9, "hidden_units": 32})
    spec["trials"] = 2
    study = tuner.submit(spec, storage=sqlite_url)
    by_lr = {t.params["lr"]: t for t in study.trials()}
    assert by_lr[1.0e6].state == "FAIL" and by_lr[1.0e6].reason == "diverged"
    assert by_lr[0.01].state == "COMPLETE" and by_lr[0.01].value > 0.5
    plain = optuna.load_study(study_name=spec["study"], storage=sqlite_url)
    failed = [t for t in plain.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed[0].user_attrs["reason"] == "diverged"


_VERSIONED = """
import os

from tuner.training import load_dataset
from mypkg.helper import VERSION


def fit(config, ctx):
    data = load_dataset(ctx.dataset, ctx.device)
    rows = data.x_train.shape[0] + data.x_val.shape[0]
    return {"val_loss": float(rows), "version": VERSION, "pid": os.getpid()}
"""


def test_warm_workers_train_the_code_and_data_as_they_are_now(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    """Workers kept warm between studies (one Python session here; `tuner up` likewise) must not
    go on with the code and data files of the study before once the user has edited them."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text(_VERSIONED)
    (pkg / "helper.py").write_text("VERSION = 1\n")
    data = tmp_path / "data.csv"
    data.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    monkeypatch.chdir(tmp_path)

    def study(n_rows: int, version: int) -> set[int]:
        spec = {"study": f"warm-{uuid.uuid4().hex[:6]}", "trainable": "mypkg.train:fit",
                "dataset": {"name": f"csv:{data}", "target": "y"},
                "objective": {"metric": "val_loss", "direction": "minimize"}, "trials": 4,
                "epochs": 1, "resources": {"workers": 2},
                "params": {"x": {"type": "float", "low": 0, "high": 1}}}
        tuner.submit(spec, storage=sqlite_url)
        stored = tuner.load_study(spec["study"], sqlite_url)
        trials = [stored.trial(t.number) for t in stored.trials()]  # with their user attributes
        assert [(t.state, t.value, t.user_attrs["version"]) for t in trials] == \
            [("COMPLETE", float(n_rows), version)] * 4
        return {t.user_attrs["pid"] for t in trials}

    first = study(20, 1)
    # The user edits a helper module their trainable imports, and their data file.
    (pkg / "helper.py").write_text("VERSION = 2  # edited\n")
    data.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(30)))
    second = study(30, 2)
    assert first & second, "the second study ran on new workers: nothing warm was tested"


def test_custom_trainable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text(textwrap.dedent("""
        import torch

        def fit(config, ctx):
            # a 1-d quadratic: the best x is 0.3; curves are reported per epoch
            x = torch.tensor(config["x"], device=ctx.device)
            loss = (x - 0.3) ** 2
            for epoch in range(1, ctx.epochs + 1):
                ctx.report(epoch, train_loss=loss * 2, val_loss=loss)
            return {"val_loss": float(loss), "where": str(ctx.device)}
    """))
    monkeypatch.chdir(tmp_path)
    spec = {
        "study": f"custom-{uuid.uuid4().hex[:6]}", "trainable": "mypkg.train:fit",
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": {"kind": "random", "seed": 1}, "trials": 10, "epochs": 3,
        "resources": {"workers": 2}, "params": {"x": {"type": "float", "low": -1, "high": 1}},
    }
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["submit", str(path), "--storage", sqlite_url, "--quiet"])
    assert result.exit_code == 0, result.output
    study = tuner.load_study(spec["study"], sqlite_url)
    assert study.counts()["COMPLETE"] == 10
    best = study.best_trial
    assert best.value == pytest.approx((best.params["x"] - 0.3) ** 2, rel=1e-5)
    assert list(study.curve(best.number)["epoch"]) == [1, 2, 3]


def test_cli_submit_best_trials_status_json(tmp_path: Path, sqlite_url: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_spec(name, trials=5)))
    result = runner.invoke(app, ["submit", str(path), "--storage", sqlite_url, "--quiet",
                                 "--trials", "6", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "6 complete" in result.stderr or "complete" in result.stderr

    best = runner.invoke(app, ["best", name, "--k", "3", "--format", "json", "--storage", sqlite_url])
    assert best.exit_code == 0
    rows = json.loads(best.stdout)
    assert len(rows) == 3
    assert {"number", "value", "state", "params", "duration_s"} <= set(rows[0])
    assert [r["value"] for r in rows] == sorted((r["value"] for r in rows), reverse=True)
    assert rows[0]["value"] == tuner.load_study(name, sqlite_url).best_trial.value

    everything = runner.invoke(app, ["trials", name, "--format", "json", "--storage", sqlite_url])
    assert len(json.loads(everything.stdout)) == 6

    csv_out = runner.invoke(app, ["best", name, "--k", "2", "--format", "csv", "--storage", sqlite_url])
    assert csv_out.stdout.splitlines()[0].startswith("number,value,state,duration_s")
    assert len(csv_out.stdout.splitlines()) == 3

    def table_columns(*flags: str) -> list[str]:
        """The header row of ``tuner best``'s table."""
        table = runner.invoke(app, ["best", name, "--k", "2", "--storage", sqlite_url, *flags])
        assert table.exit_code == 0, table.output
        header = next(line for line in table.stdout.splitlines() if line.startswith("┃"))
        return [c.strip() for c in header.strip("┃").split("┃")]

    params = {"lr", "batch_size", "layers"}
    narrow = table_columns()  # fits a terminal: no run details by default
    assert narrow[:4] == ["rank", "number", "value", "state"] and set(narrow[4:]) == params
    wide = table_columns("--wide")
    assert wide[:6] == ["rank", "number", "value", "state", "duration_s", "epochs"]
    assert set(wide[6:-3]) == params and wide[-3:] == ["reason", "host", "device"]

    status = runner.invoke(app, ["status", "--format", "json", "--storage", sqlite_url])
    entry = [s for s in json.loads(status.stdout) if s["name"] == name][0]
    assert entry["complete"] == 6 and entry["running"] == 0 and entry["best_value"] == rows[0]["value"]

    again = runner.invoke(app, ["submit", str(path), "--storage", sqlite_url, "--quiet"])
    assert again.exit_code == 2 and "tuner resume" in again.stderr

    more = runner.invoke(app, ["resume", name, "--storage", sqlite_url, "--trials", "8", "--quiet"])
    assert more.exit_code == 0, more.output
    assert tuner.load_study(name, sqlite_url).counts()["COMPLETE"] == 8


def test_unknown_study_is_exit_2(sqlite_url: str) -> None:
    result = runner.invoke(app, ["best", "nope", "--storage", sqlite_url])
    assert result.exit_code == 2 and "not found" in result.stderr


def test_python_api_lists_and_frames(sqlite_url: str) -> None:
    spec = small_spec(trials=4)
    study = tuner.submit(spec, storage=sqlite_url, workers=1)
    names = [s.name for s in tuner.list_studies(sqlite_url)]
    assert spec["study"] in names
    df = study.to_dataframe()
    assert len(df) == 4 and {"params_lr", "params_batch_size", "value", "state"} <= set(df.columns)
    assert len(study.trials(["COMPLETE"])) == study.counts()["COMPLETE"]


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    """A real `tuner submit` process, stopped mid-study: no trial is left RUNNING, the running
    ones are marked interrupted, exit code 130; `tuner resume` reaches exactly the count."""
    import os
    import signal
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'stop.db'}"
    name = f"stop-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_spec(name, trials=400, epochs=3)))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "submit", str(path), "--storage", url,
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            if tuner.load_study(name, url).counts()["COMPLETE"] >= 3:
                break
        except tuner.StudyNotFoundError:
            continue
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    study = tuner.load_study(name, url)
    counts = study.counts()
    assert counts["RUNNING"] == 0 and counts["COMPLETE"] >= 3
    interrupted = [t for t in study.trials(["FAIL"]) if t.reason == "interrupted"]
    assert interrupted, counts
    done_before = counts["COMPLETE"] + counts["PRUNED"]

    def resume() -> None:
        after = tuner.resume(name, storage=url, trials=done_before + 3).counts()
        assert after["COMPLETE"] + after["PRUNED"] == done_before + 3

    assert_stopped_trials_rerun_first(url, name, interrupted, resume, outcomes=3)


def test_coarse_to_fine_study_on_two_workers(sqlite_url: str) -> None:
    """Later-stage trials lie in their stage's box, and each box holds the top-k it came from."""
    spec = small_spec(trials=12, sampler={"kind": "coarse-to-fine", "stages": 3, "top_k": 3,
                                          "seed": 0})
    study = tuner.submit(spec, storage=sqlite_url)
    stages = study.stages()
    assert [s.stage for s in stages] == [0, 1, 2]
    assert sum(len(s.trials) for s in stages) == 12
    trials = {t.number: t for t in study.trials()}
    assert all(t.stage is not None for t in trials.values())
    for st in stages[1:]:
        for n in st.trials:
            for name, (lo, hi) in st.box.items():
                assert lo - 1e-9 <= trials[n].params[name] <= hi + 1e-9, (st.stage, name)
        assert 1 <= len(st.top_trials) <= 3
        first_start = min(trials[n].datetime_start for n in st.trials)
        for number in st.top_trials:  # finished earlier-stage trials the box was zoomed onto
            t = trials[number]
            assert t.stage < st.stage and t.state == "COMPLETE"
            assert t.datetime_complete <= first_start
            others = [o for o in trials.values() if o.stage < st.stage and o.state == "COMPLETE"
                      and o.datetime_complete <= first_start and o.number not in st.top_trials]
            assert all(o.value <= t.value for o in others) or len(st.top_trials) < 3
            for name, (lo, hi) in st.box.items():
                assert lo - 1e-9 <= t.params[name] <= hi + 1e-9, (st.stage, name, t.number)
    plain = optuna.load_study(study_name=spec["study"], storage=sqlite_url)
    assert "c2f_box_1" in plain.user_attrs and trial_stage(plain.trials[0]) == 0
    result = runner.invoke(app, ["best", spec["study"], "--format", "csv", "--storage", sqlite_url])
    assert result.stdout.splitlines()[0].startswith("number,value,state,duration_s,epochs,stage,")
