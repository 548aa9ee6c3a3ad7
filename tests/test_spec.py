"""Bad specs: each gives exit code 2 and one line naming the field and the fix, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import SPACES, small_spec
from tuner import SpecError, load_spec
from tuner.cli import app
from tuner.spec import spec_json_schema

runner = CliRunner()

_P = {"lr": {"type": "float", "low": 1e-3, "high": 0.3, "scale": "log"}}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD = [
    ("unknown top-level key", {"epocs": 3}, "epocs", "valid keys here"),
    ("unknown param key", {"params": {"lr": {**_P["lr"], "sclae": "log"}}}, "params.lr.sclae", "valid keys here"),
    ("low >= high", {"params": {"lr": {"type": "float", "low": 0.5, "high": 0.1}}}, "params.lr", "swap them"),
    ("log with low <= 0", {"params": {"lr": {"type": "float", "low": 0.0, "high": 1.0, "scale": "log"}}},
     "params.lr", "positive low"),
    ("pow2 without a power of two", {"params": {"bs": {"type": "int", "low": 33, "high": 63, "scale": "pow2"}}},
     "params.bs", "widen the range"),
    ("unknown sampler", {"sampler": {"kind": "bayes"}}, "sampler.kind", "random, grid, tpe"),
    ("unknown scale", {"params": {"lr": {"type": "float", "low": 1e-3, "high": 1, "scale": "ln"}}},
     "params.lr.scale", "'log'"),
    ("unknown param type", {"params": {"lr": {"type": "double", "low": 0, "high": 1}}}, "params.lr.type",
     "float, int or categorical"),
    ("one_minus_log high >= 1", {"params": {"b": {"type": "float", "low": 0.9, "high": 1.0,
                                                  "scale": "one_minus_log"}}}, "params.b", "high must be < 1"),
    ("missing dataset file", {"dataset": {"name": "csv:nope.csv", "target": "y"}}, "dataset.name", "does not exist"),
    ("trainable does not import", {"trainable": "no_such_pkg.train:fit"}, "trainable", "no_such_pkg"),
    ("bad trainable format", {"trainable": "just_a_name"}, "trainable", "package.module:function"),
    ("unknown builtin:mlp parameter", {"fixed": {"learning_rate": 0.1}}, "fixed.learning_rate",
     "use one of"),
    ("empty params", {"params": {}}, "params", "at least one"),
    ("wrong type for trials", {"trials": "many"}, "trials", "integer"),
]


@pytest.mark.parametrize("case,patch,field,fix", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_one_line_exit_2(tmp_path: Path, case: str, patch: dict, field: str, fix: str) -> None:
    spec = small_spec("bad") | patch
    result = runner.invoke(app, ["validate", str(_write(tmp_path, spec))])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{field}:" in lines[0] and fix in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_validate_in_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, small_spec("bad") | {"epocs": 1})
    proc = subprocess.run([sys.executable, "-m", "tuner", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "epocs" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("study: x\nparams: {lr: [\n")
    with pytest.raises(SpecError, match="line"):
        load_spec(path)


def test_missing_spec_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_validate(path: Path) -> None:
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: study")


def test_shipped_specs_cover_the_foundation_examples() -> None:
    names = {p.name for p in SPACES.glob("*.yaml")}
    assert {"digits_mlp.yaml", "quickstart.yaml", "diabetes_regression.yaml"} <= names
    digits = load_spec(SPACES / "digits_mlp.yaml")
    assert {n: (p.scale) for n, p in digits.params.items() if hasattr(p, "scale")} == {
        "lr": "log", "momentum": "one_minus_log", "batch_size": "pow2", "layers": "linear",
        "dropout": "linear"}


def test_relative_dataset_file_resolves_against_the_spec_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    path = _write(tmp_path, small_spec("csv") | {"dataset": {"name": "csv:data/d.csv", "target": "y"}})
    monkeypatch.chdir("/")
    spec = load_spec(path)
    assert spec.dataset is not None and spec.dataset.name == f"csv:{tmp_path / 'data' / 'd.csv'}"


def test_overrides_apply_with_dotted_keys() -> None:
    spec = load_spec(small_spec("o"), **{"resources.workers": 3, "trials": 9, "sampler.kind": "tpe"})
    assert (spec.resources.workers, spec.trials, spec.sampler.kind) == (3, 9, "tpe")


def test_shipped_json_schema_is_current() -> None:
    shipped = json.loads((SPACES / "study.schema.json").read_text())
    assert shipped == json.loads(json.dumps(spec_json_schema()))
    assert "params" in shipped["properties"] and shipped["additionalProperties"] is False


def test_schema_command_prints_it() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "tuner study spec"
