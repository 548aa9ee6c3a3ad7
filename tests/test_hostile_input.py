"""Hostile input: every kind the fuzz of issue 11 found, as a named regression, plus a bounded
Hypothesis fuzz through the CLI's own loader.

The rule each case checks: bad input ends as exit 2 and one line (``error: field: problem; fix``)
of at most 200 characters that quotes the user's input only in a short excerpt and never a file's
contents; good input validates, and what validates is what ``submit`` accepts before Ray starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import SPACES, small_spec
from tuner._text import MAX_LINE
from tuner.cli import app

runner = CliRunner()


def _validate(path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(path), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test fails with it
    return result.exit_code, result.output


def _one_error_line(code: int, output: str) -> str:
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and len(lines[0]) <= MAX_LINE, lines[0]
    assert "Traceback" not in output
    return lines[0]


def _spec_file(tmp_path: Path, spec: dict[str, Any] | None = None, text: str | None = None,
               raw: bytes | None = None) -> Path:
    path = tmp_path / "spec.yaml"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text if text is not None else yaml.safe_dump(spec))
    return path


def _with(**over: Any) -> dict[str, Any]:
    return small_spec("hostile") | over


# ------------------------------------------------------------------------- the spec file itself
FILE_CASES = [
    ("binary file", dict(raw=b"\xff\xfe\x00\x01garbage"), "spec", "UTF-8"),
    ("int of 5000 digits", dict(text="study: a\ntrials: " + "9" * 5000), "spec", "64-bit"),
    ("deep nesting", dict(text="a: " + "[" * 5000 + "]" * 5000), "spec", "flatten"),
    ("alias", dict(text="a: &a [1, 2]\nb: [*a, *a]\n"), "spec", "aliases"),
    ("alias bomb", dict(text="a: &a [x, x, x, x, x, x, x, x, x]\n"
                        + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                  for p, c in zip("abcdefgh", "bcdefghi"))), "spec", "aliases"),
    ("over 1 MiB", dict(text="study: a\n#" + "x" * (1 << 20)), "spec", "larger than"),
    ("duplicate key", dict(text="study: a\nstudy: b\n"), "spec", "appears twice"),
    ("a date", dict(text="study: 2024-01-01\n"), "study", "quote it"),
]


@pytest.mark.parametrize("case,content,field,fix", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_a_bad_spec_file_is_one_line(tmp_path: Path, case: str, content: dict, field: str,
                                     fix: str) -> None:
    line = _one_error_line(*_validate(_spec_file(tmp_path, **content)))
    assert line.startswith(f"error: {field}") and fix in line, line


def test_a_spec_path_that_is_no_file(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing.yaml", tmp_path / ("a" * 5000 + ".yaml")):
        _one_error_line(*_validate(path))
    result = runner.invoke(app, ["validate", str(tmp_path / "a\x00b.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output


# --------------------------------------------------------------- values validate would let through
VALUE_CASES = [
    ("negative seed", {"seed": -1}, "seed"),
    ("seed beyond 2**32", {"sampler": {"kind": "random", "seed": 2**40}}, "sampler.seed"),
    ("int range beyond int64", {"params": {"n": {"type": "int", "low": 0, "high": 2**70}}},
     "params.n.high"),
    ("bounds of 1e308", {"params": {"x": {"type": "float", "low": -1e308, "high": 1e308}}},
     "params.x"),
    ("NaN grid value", {"sampler": {"kind": "grid"},
                        "params": {"x": {"type": "categorical", "choices": [float("nan"), 1.0]}}},
     "params.x.choices"),
    ("infinite epochs", {"epochs": float("inf")}, "epochs"),
    ("an unknown optimizer in fixed", {"fixed": {"optimizer": "sgdd"}}, "fixed.optimizer"),
    ("an unknown optimizer among choices",
     {"params": {"optimizer": {"type": "categorical", "choices": ["adam", "sgdd"]}}, "fixed": {}},
     "params.optimizer"),
    ("an unknown activation", {"fixed": {"activation": "relu6x"}}, "fixed.activation"),
    ("no params", {"params": {}}, "params"),
    ("a newline in a key", {"params": {"a\nb": {"type": "float", "low": 0, "high": 1}}}, "params"),
    ("a 1 MB study name", {"study": "x" * 1_000_000}, "study"),
    ("too many CPUs for this machine",
     {"resources": {"workers": 1, "cpus_per_trial": 4096}}, "resources.cpus_per_trial"),
    ("a GPU this machine lacks", {"resources": {"workers": 1, "gpus_per_trial": 64}},
     "resources.gpus_per_trial"),
]


@pytest.mark.parametrize("case,patch,field", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_validate_refuses_what_submit_cannot_run(tmp_path: Path, case: str, patch: dict,
                                                 field: str) -> None:
    line = _one_error_line(*_validate(_spec_file(tmp_path, _with(**patch))))
    assert line.startswith(f"error: {field}"), line


def test_an_oversized_grid_is_refused_with_the_fix(tmp_path: Path) -> None:
    names = ["dropout", "weight_decay", "lr", "momentum", "beta1", "beta2"]
    params = {n: {"type": "float", "low": 0.01, "high": 0.5, "grid_points": 40} for n in names}
    spec = _with(sampler={"kind": "grid"}, params=params)
    line = _one_error_line(*_validate(_spec_file(tmp_path, spec)))
    assert "grid of 4,096,000,000 points" in line and "use random/tpe" in line, line


def test_resources_are_the_clusters_business_with_an_address(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, _with(resources={"workers": 1, "cpus_per_trial": 4096}))
    code, output = _validate(path, "--address", "ray://head.example:10001")
    assert code == 0, output


# ---------------------------------------------------------------------------------- data files
def _data_case(tmp_path: Path, kind: str) -> tuple[str, dict[str, Any]]:
    """A broken dataset file of ``kind``: the dataset section that names it."""
    if kind == "empty csv":
        (tmp_path / "e.csv").write_text("")
        return "csv:e.csv", {}
    if kind == "header-only csv":
        (tmp_path / "h.csv").write_text("a,b,y\n")
        return "csv:h.csv", {"target": "y"}
    if kind == "non-numeric target":
        (tmp_path / "t.csv").write_text("a,b,y\n1,2,x\n3,4,z\n" * 20)
        return "csv:t.csv", {"target": "y", "task": "regression"}
    if kind == "pickled npz":
        np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=np.arange(20))
        return "npz:o.npz", {}
    if kind == "corrupt parquet":
        (tmp_path / "c.parquet").write_bytes(b"PAR1" + os.urandom(64) + b"PAR1")
        return "parquet:c.parquet", {}
    if kind == "a directory":
        return f"csv:{tmp_path}", {}
    if kind == "a missing file":
        return "csv:nope.csv", {}
    if kind == "a NUL byte":
        return "csv:a\x00b.csv", {}
    if kind == "an over-long name":
        return "csv:" + "a" * 5000 + ".csv", {}
    if kind == "the process environment":
        return "csv:/proc/self/environ", {}
    raise AssertionError(kind)


DATA_KINDS = ["empty csv", "header-only csv", "non-numeric target", "pickled npz",
              "corrupt parquet", "a directory", "a missing file", "a NUL byte",
              "an over-long name", "the process environment"]


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_a_bad_data_file_is_one_line(tmp_path: Path, kind: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "corrupt parquet":
        pytest.importorskip("pyarrow", reason="parquet needs pyarrow (pip install 'tuner[parquet]')")
    secret = "tuner-hostile-secret-7"
    monkeypatch.setenv("TUNER_TEST_SECRET", secret)  # what /proc/self/environ would leak
    name, extra = _data_case(tmp_path, kind)
    spec = _with(dataset={"name": name, **extra})
    line = _one_error_line(*_validate(_spec_file(tmp_path, spec)))
    assert line.startswith("error: dataset."), line
    assert secret not in line and "PATH=" not in line, line


# ------------------------------------------------------------------------------------ secrets
def test_a_query_string_password_never_shows(tmp_path: Path) -> None:
    from tuner.storage import redact

    secret = "q-secret-31"
    url = f"postgresql+psycopg://u@127.0.0.1:1/nodb?password={secret}&sslmode=disable"
    assert secret not in redact(url) and "sslmode=disable" in redact(url)
    result = runner.invoke(app, ["best", "some-study", "--storage", url])
    assert result.exit_code != 0 and secret not in result.output, result.output
    assert "Traceback" not in result.output


def test_an_error_echoes_no_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "env-secret-44"
    monkeypatch.setenv("TUNER_STORAGE", f"postgresql+psycopg://u:{secret}@127.0.0.1:1/nodb")
    result = runner.invoke(app, ["status"])
    assert result.exit_code != 0 and secret not in result.output, result.output


# ----------------------------------------------------------------------------------- the fuzz
def _valid_bases() -> list[dict[str, Any]]:
    bases = [yaml.safe_load(p.read_text()) for p in sorted(SPACES.glob("*.yaml"))]
    return [b for b in bases if "cnn" not in b.get("trainable", "")] + [small_spec("fuzz")]


BASES = _valid_bases()

ODD = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "a\nb", "\x1b[31mred", "x" * 3000, "csv:/proc/self/environ",
                     "builtin:nope", "sgdd", "grid", "tpe", "coarse_to_fine", "log", "pow2",
                     "one_minus_log", "npz:missing.npz", "categorical", "maximize", 1e308, -1,
                     2**63, 0, 0.5, [], {}]),
    st.lists(st.integers(min_value=-5, max_value=2**40), max_size=4),
    st.dictionaries(st.sampled_from(["type", "low", "high", "scale", "choices", "kind", "x"]),
                    st.integers(min_value=-3, max_value=300), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


def _mutate(data: st.DataObject, spec: dict[str, Any]) -> dict[str, Any]:
    """A few structured edits at random places: replace a value, drop a key, add a key."""
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = [p for p in _paths(spec) if p]
        path = data.draw(st.sampled_from(paths), label="path")
        parent: Any = spec
        for part in path[:-1]:
            parent = parent[part]
        op = data.draw(st.sampled_from(["replace", "drop", "add"]), label="op")
        if op == "replace" or not isinstance(parent, dict):
            parent[path[-1]] = data.draw(ODD, label="value")
        elif op == "drop":
            del parent[path[-1]]
        else:
            parent[data.draw(st.text(min_size=1, max_size=12), label="key")] = data.draw(ODD)
    return spec


def _fuzz_one(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(payload)
    code, output = _validate(path)
    if code == 0:
        assert output.startswith("ok: "), output
    else:
        _one_error_line(code, output)


FUZZ = settings(max_examples=int(os.environ.get("TUNER_FUZZ_EXAMPLES", "1000")), deadline=2000,
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Validate each base once (its first dataset load and imports are not the fuzz's to time),
    and build the click command of the CLI once: Typer's test runner rebuilds it on every call,
    which is half of an example's time and none of what is under test."""
    import typer.testing

    command = typer.testing._get_command(app)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", lambda given: command if given is app
                   else typer.main.get_command(given))
        for i, base in enumerate(BASES):
            code, output = _validate(_spec_file(tmp_path_factory.mktemp(f"warm{i}"), base))
            assert code == 0, output
        yield


@FUZZ
@given(data=st.data())
def test_fuzz_structured_mutations(warm: None, tmp_path: Path, data: st.DataObject) -> None:
    """Valid specs with a few random edits: each validates or is one short error line."""
    base = yaml.safe_load(yaml.safe_dump(data.draw(st.sampled_from(BASES), label="base")))
    spec = _mutate(data, base)
    try:
        text = yaml.safe_dump(spec, allow_unicode=data.draw(st.booleans(), label="unicode"))
    except yaml.YAMLError:
        return
    _fuzz_one(tmp_path, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(data=st.data())
def test_fuzz_raw_text_and_bytes(warm: None, tmp_path: Path, data: st.DataObject) -> None:
    """A valid spec's text with a slice replaced by random text or bytes (aliases, tabs, binary,
    deep brackets included): each validates or is one short error line."""
    text = yaml.safe_dump(data.draw(st.sampled_from(BASES), label="base")).encode()
    start = data.draw(st.integers(0, len(text)), label="start")
    end = data.draw(st.integers(start, min(len(text), start + 40)), label="end")
    insert = data.draw(st.one_of(
        st.binary(max_size=40),
        st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"&a [1]", b"*a", b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", b"\t",
                         b": :", b"!!python/object:os.system", b"9" * 5000, b"!!binary AAAA",
                         b"<<: {x: 1}", b"---\n", b"? [a]\n: b"])), label="insert")
    _fuzz_one(tmp_path, text[:start] + insert + text[end:])


def test_validate_runs_in_a_real_process_without_a_traceback(tmp_path: Path) -> None:
    """The CLI as a user runs it, on the worst of the kinds above."""
    import subprocess

    path = _spec_file(tmp_path, raw=b"a: " + b"[" * 100_000)
    proc = subprocess.run([sys.executable, "-m", "tuner", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
