"""Warm start: another study's best configurations run first, fitted to the new space."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

import tuner
from tests.conftest import small_spec
from tuner import SpecError, StudyNotFoundError
from tuner._warm_start import fit_params, plan_warm_start
from tuner.cli import app
from tuner.spec import parse_spec

runner = CliRunner()

NEW_PARAMS = {  # narrower lr, no layers, a new dropout; batch_size unchanged
    "lr": {"type": "float", "low": 1e-2, "high": 0.1, "scale": "log"},
    "batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


def test_fit_params_clips_rounds_drops_and_leaves_new_ones_to_the_sampler() -> None:
    space = parse_spec(small_spec("n", params={
        **NEW_PARAMS, "units": {"type": "int", "low": 10, "high": 50, "step": 10},
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]}})).params
    params, notes = fit_params(space, {"lr": 0.5, "batch_size": 100, "layers": 3, "units": 34,
                                       "opt": "rmsprop"})
    assert params == {"lr": 0.1, "batch_size": 128, "units": 30}
    assert sorted(notes) == sorted([
        ("clipped or rounded to this range", "lr"), ("clipped or rounded to this range", "batch_size"),
        ("clipped or rounded to this range", "units"), ("dropped (not in this space)", "layers"),
        ("left to the sampler (value not allowed here)", "opt"),
        ("left to the sampler (new here)", "dropout")])
    exact, notes = fit_params(space, {"lr": 0.0314, "batch_size": 64, "units": 40, "opt": "adam"})
    assert exact == {"lr": 0.0314, "batch_size": 64, "units": 40, "opt": "adam"}
    assert notes == [("left to the sampler (new here)", "dropout")]
    below, _ = fit_params(space, {"lr": 1e-9, "batch_size": 1})  # below low: the bottom of the range
    assert below == {"lr": 0.01, "batch_size": 64}


def test_unknown_donor_and_bad_k_are_one_line_errors(sqlite_url: str, tmp_path: Path) -> None:
    spec = parse_spec(small_spec("new"))
    with pytest.raises(StudyNotFoundError, match="study 'nope' not found"):
        plan_warm_start(spec, "nope", sqlite_url, 3)
    with pytest.raises(SpecError, match="cannot warm-start from itself"):
        plan_warm_start(spec, "new", sqlite_url, 3)
    with pytest.raises(SpecError) as err:
        plan_warm_start(spec, "other", sqlite_url, 0)
    assert err.value.field == "--warm-start-k"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(small_spec("new")))
    result = runner.invoke(app, ["submit", str(path), "--storage", sqlite_url, "--warm-start", "nope"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if "study 'nope' not found" in line]


@pytest.mark.usefixtures("ray_session")
def test_first_trials_are_the_donors_best(sqlite_url: str, tmp_path: Path) -> None:
    donor = small_spec("donor", trials=6, params={
        "lr": {"type": "float", "low": 1e-3, "high": 0.3, "scale": "log"},
        "batch_size": {"type": "int", "low": 64, "high": 256, "scale": "pow2"},
        "layers": {"type": "int", "low": 1, "high": 2}})
    best = tuner.submit(donor, storage=sqlite_url).best_trials(3)
    assert len(best) == 3
    new = small_spec("again", trials=5, params=NEW_PARAMS, sampler={"kind": "tpe", "seed": 1})
    with pytest.warns(UserWarning, match="dropped \\(not in this space\\): layers") as caught:
        study = tuner.submit(new, storage=sqlite_url, warm_start="donor", warm_start_k=3)
    assert "left to the sampler (new here): dropout" in str(caught[0].message)
    space = parse_spec(new).params
    plain = {t.number: t for t in optuna.load_study(study_name="again", storage=sqlite_url).trials}
    for number, donor_trial in enumerate(best):
        want, _ = fit_params(space, donor_trial.params)
        got = plain[number].params
        assert {k: got[k] for k in want} == want and "dropout" in got
        assert plain[number].user_attrs["warm_start_from"] == f"donor#{donor_trial.number}"
    assert all("warm_start_from" not in t.user_attrs for n, t in plain.items() if n >= 3)
    assert study.counts()["COMPLETE"] + study.counts()["FAIL"] + study.counts()["PRUNED"] == 5

    # the CLI does the same, and says what it changed
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(small_spec("cli", trials=2, params=NEW_PARAMS)))
    result = runner.invoke(app, ["submit", str(path), "--storage", sqlite_url, "--quiet",
                                 "--warm-start", "donor", "--warm-start-k", "2"])
    assert result.exit_code == 0, result.output
    assert "warning: warm start from 'donor'" in result.stderr
    cli = optuna.load_study(study_name="cli", storage=sqlite_url).trials
    assert [t.user_attrs.get("warm_start_from") for t in cli] == [
        f"donor#{t.number}" for t in best[:2]]
