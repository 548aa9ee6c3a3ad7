"""The data layer of builtin:mlp: sources, split, train-only normalisation, cache, spec checks."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tuner._errors import SpecError
from tuner.training import check_dataset_spec, clear_dataset_cache, load_dataset

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture
def table(tmp_path):
    """A small csv with two numeric features, a bool feature and a string label."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "a": rng.normal(5.0, 2.0, n),
            "b": rng.integers(0, 10, n),
            "flag": rng.integers(0, 2, n).astype(bool),
            "label": rng.choice(["cat", "dog", "eel"], n),
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_digits_shapes_dtypes_and_split():
    data = load_dataset({"name": "digits"}, CPU)
    assert data.task == "classification" and data.n_classes == 10 and data.n_features == 64
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.y_train.shape == (data.x_train.shape[0],)
    assert data.x_val.shape[0] == int(np.ceil(0.2 * 1797))
    assert data.x_train.device == CPU
    # Stratified: every class keeps about its share in the validation split.
    counts = torch.bincount(data.y_val, minlength=10).float() / data.y_val.shape[0]
    assert torch.all((counts - 0.1).abs() < 0.02)


def test_normalisation_uses_train_statistics_only():
    data = load_dataset({"name": "wine"}, CPU)
    train_mean = data.x_train.mean(dim=0)
    assert torch.allclose(train_mean, torch.zeros_like(train_mean), atol=1e-5)
    assert torch.allclose(data.x_train.std(dim=0, unbiased=False), torch.ones(13), atol=1e-4)
    # Validation data is scaled with the train statistics, so its mean is not exactly 0.
    assert data.x_val.mean(dim=0).abs().max() > 1e-3


def test_minmax_and_none():
    scaled = load_dataset({"name": "iris", "normalize": "minmax"}, CPU)
    assert scaled.x_train.min() == 0.0 and scaled.x_train.max() == 1.0
    raw = load_dataset({"name": "iris", "normalize": "none"}, CPU)
    assert raw.x_train.min() > 0.0  # iris measurements are all positive


def test_regression_target_standardised_on_train():
    data = load_dataset({"name": "diabetes"}, CPU)
    assert data.task == "regression" and data.n_classes is None
    assert data.y_train.dtype == torch.float32 and data.y_train.ndim == 1
    assert abs(float(data.y_train.mean())) < 1e-5
    assert abs(float(data.y_train.std(unbiased=False)) - 1.0) < 1e-4


def test_cache_returns_same_object_per_spec_and_device():
    first = load_dataset({"name": "iris", "seed": 3}, CPU)
    assert load_dataset({"seed": 3, "name": "iris"}, CPU) is first
    assert load_dataset({"name": "iris", "seed": 3, "normalize": "zscore"}, CPU) is first
    assert load_dataset({"name": "iris", "seed": 4}, CPU) is not first
    clear_dataset_cache()
    assert load_dataset({"name": "iris", "seed": 3}, CPU) is not first


def test_seed_changes_the_split():
    a = load_dataset({"name": "iris", "seed": 1}, CPU)
    b = load_dataset({"name": "iris", "seed": 2}, CPU)
    assert not torch.equal(a.y_val, b.y_val) or not torch.equal(a.x_val, b.x_val)


def test_synthetic_sets():
    cls = load_dataset(
        {"name": "synthetic_classification", "n_samples": 200, "n_features": 7, "n_classes": 3},
        CPU,
    )
    assert cls.n_features == 7 and cls.n_classes == 3
    assert cls.x_train.shape[0] + cls.x_val.shape[0] == 200
    reg = load_dataset({"name": "synthetic_regression", "n_samples": 100, "n_features": 5}, CPU)
    assert reg.task == "regression" and reg.n_features == 5


def test_csv_with_string_labels(table):
    path, frame = table
    data = load_dataset({"name": f"csv:{path}", "target": "label"}, CPU)
    assert data.task == "classification" and data.n_classes == 3 and data.n_features == 3
    assert set(torch.unique(data.y_train).tolist()) == {0, 1, 2}


def test_csv_float_target_is_regression(tmp_path):
    frame = pd.DataFrame({"x": np.arange(60.0), "y": np.arange(60.0) * 0.5 + 0.1})
    frame.to_csv(tmp_path / "r.csv", index=False)
    data = load_dataset({"name": f"csv:{tmp_path / 'r.csv'}", "target": "y"}, CPU)
    assert data.task == "regression"


def test_integer_target_with_many_values_is_regression(tmp_path):
    frame = pd.DataFrame({"x": np.arange(200.0), "y": np.arange(200)})
    frame.to_csv(tmp_path / "many.csv", index=False)
    spec = {"name": f"csv:{tmp_path / 'many.csv'}", "target": "y"}
    assert load_dataset(spec, CPU).task == "regression"
    with pytest.warns(UserWarning, match="without stratification"):
        forced = load_dataset({**spec, "task": "classification"}, CPU)
    assert forced.n_classes == 200


def test_csv_errors(table, tmp_path):
    path, frame = table
    with pytest.raises(SpecError) as err:
        load_dataset({"name": f"csv:{path}", "target": "nope"}, CPU)
    # the file's columns are counted, not quoted: a header can be anybody's data
    assert err.value.field == "dataset.target" and "4 column(s)" in err.value.message
    assert "label" not in err.value.message
    frame.assign(word="x").to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(SpecError, match="feature column 4 of 4 .* is not numeric"):
        load_dataset({"name": f"csv:{tmp_path / 'text.csv'}", "target": "label"}, CPU)
    with pytest.raises(SpecError, match="does not exist") as err:
        load_dataset({"name": f"csv:{tmp_path / 'missing.csv'}", "target": "label"}, CPU)
    assert err.value.field == "dataset.name"


@pytest.mark.parametrize("x_key", ["x", "X"])
def test_npz(tmp_path, x_key):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, **{x_key: rng.normal(size=(80, 2, 3)), "y": rng.integers(0, 4, 80)})
    data = load_dataset({"name": f"npz:{path}"}, CPU)
    assert data.n_features == 6 and data.n_classes == 4  # [n, 2, 3] is flattened


def test_npz_without_arrays(tmp_path):
    np.savez(tmp_path / "bad.npz", features=np.zeros((4, 2)))
    with pytest.raises(SpecError, match="'x' \\(or 'X'\\)"):
        check_dataset_spec({"name": f"npz:{tmp_path / 'bad.npz'}"})


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")
def test_parquet(table, tmp_path):
    _, frame = table
    frame.to_parquet(tmp_path / "t.parquet")
    data = load_dataset({"name": f"parquet:{tmp_path / 't.parquet'}", "target": "label"}, CPU)
    assert data.n_classes == 3


def test_parquet_without_pyarrow(table, tmp_path, monkeypatch):
    path, _ = table
    target = tmp_path / "t.parquet"
    target.write_bytes(b"not really parquet")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    with pytest.raises(SpecError, match=r"pip install 'tuner\[parquet\]'"):
        check_dataset_spec({"name": f"parquet:{target}", "target": "label"})


def test_check_dataset_spec(table):
    path, _ = table
    check_dataset_spec({"name": "digits"})
    check_dataset_spec({"name": f"csv:{path}", "target": "label"})
    with pytest.raises(SpecError) as err:
        check_dataset_spec({"name": f"csv:{path}"})
    assert err.value.field == "dataset.target"
    with pytest.raises(SpecError, match="choose one of: digits") as err:
        check_dataset_spec({"name": "mnist"})
    assert err.value.field == "dataset.name"
    with pytest.raises(SpecError) as err:
        check_dataset_spec({"name": "digits", "normalize": "l2"})
    assert err.value.field == "dataset.normalize"
    with pytest.raises(SpecError) as err:
        check_dataset_spec({"name": "digits", "validation_fraction": 1.0})
    assert err.value.field == "dataset.validation_fraction"


_LOAD = """
import json, sys
import torch
from tuner.training import load_dataset
d = load_dataset({"name": sys.argv[1], "seed": 3}, torch.device("cpu"))
print(json.dumps({"sklearn": "sklearn" in sys.modules, "x": d.x_train.sum().item(),
                  "y": d.y_val.sum().item(), "n": d.x_train.shape[0], "classes": d.n_classes,
                  "shape": d.image_shape, "task": d.task}))
"""


def _load_in_fresh_process(name: str, cache: Path) -> dict:
    env = {**os.environ, "TUNER_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", _LOAD, name], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_bundled_sets_are_prepared_once_per_machine(name, tmp_path):
    """The first worker builds the set with scikit-learn and keeps it; the next reads it without
    importing sklearn (seconds of a worker's start-up) and gets exactly the same tensors."""
    cache = tmp_path / "cache"
    first = _load_in_fresh_process(name, cache)
    assert first["sklearn"] is True
    assert len(list((cache / "datasets").glob("*.npz"))) == 1
    second = _load_in_fresh_process(name, cache)
    assert second.pop("sklearn") is False
    first.pop("sklearn")
    assert second == first


def test_a_broken_or_unwritable_cache_is_only_slower(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    clear_dataset_cache()
    want = load_dataset({"name": "digits"}, "cpu")
    (path,) = (tmp_path / "cache" / "datasets").glob("*.npz")
    path.write_bytes(path.read_bytes()[:1000])  # a half-written file from a killed process
    clear_dataset_cache()
    again = load_dataset({"name": "digits"}, "cpu")
    assert torch.equal(again.x_train, want.x_train) and torch.equal(again.y_val, want.y_val)
    assert np.load(path)["x_train"].shape == tuple(want.x_train.shape)  # rewritten whole

    monkeypatch.setenv("TUNER_CACHE_DIR", str(path))  # a file where a directory should be
    clear_dataset_cache()
    assert torch.equal(load_dataset({"name": "digits"}, "cpu").x_train, want.x_train)
    clear_dataset_cache()


def test_user_files_are_never_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    csv = tmp_path / "d.csv"
    pd.DataFrame({"a": [0.0, 1, 2, 3, 4, 5, 6, 7], "target": [0, 1] * 4}).to_csv(csv, index=False)
    clear_dataset_cache()
    first = load_dataset({"name": f"csv:{csv}", "target": "target", "validation_fraction": 0.25}, "cpu")
    pd.DataFrame({"a": [9.0, 1, 2, 3, 4, 5, 6, 7], "target": [0, 1] * 4}).to_csv(csv, index=False)
    clear_dataset_cache()
    second = load_dataset({"name": f"csv:{csv}", "target": "target", "validation_fraction": 0.25}, "cpu")
    assert not (tmp_path / "cache").exists()
    assert not torch.equal(first.x_train, second.x_train) or not torch.equal(first.x_val, second.x_val)
    clear_dataset_cache()


def test_a_changed_user_file_is_loaded_again_only_when_asked(tmp_path: Path) -> None:
    """Within a study a worker keeps the set it loaded; when the next study starts,
    ``drop_changed_datasets`` forgets sets whose file changed, and only those."""
    from tuner.training import drop_changed_datasets

    clear_dataset_cache()
    csv = tmp_path / "d.csv"
    csv.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    spec = {"name": f"csv:{csv}", "target": "y"}
    first = load_dataset(spec, "cpu")
    digits = load_dataset({"name": "digits"}, "cpu")
    assert drop_changed_datasets() == [] and load_dataset(spec, "cpu") is first
    csv.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(30)))
    assert load_dataset(spec, "cpu") is first  # not reloaded behind a running study's back
    assert drop_changed_datasets() == [f"csv:{csv}"]
    again = load_dataset(spec, "cpu")
    assert again.x_train.shape[0] + again.x_val.shape[0] == 30
    assert load_dataset({"name": "digits"}, "cpu") is digits  # bundled sets never change


def test_a_changed_trainable_module_is_imported_again(tmp_path: Path, monkeypatch) -> None:
    from tuner.training import forget_changed_modules, resolve_trainable

    pkg = tmp_path / "edited_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "consts.py").write_text("VALUE = 1\n")
    (pkg / "train.py").write_text("from edited_pkg.consts import VALUE\n\ndef fit(config, ctx):\n"
                                  "    return float(VALUE)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_changed_modules()  # what earlier tests in this process imported from their (gone) folders
    try:
        assert resolve_trainable("edited_pkg.train:fit")({}, None) == 1.0
        assert forget_changed_modules() == []  # nothing changed: nothing is imported again
        (pkg / "consts.py").write_text("VALUE = 2  # edited\n")
        dropped = forget_changed_modules()  # with the rest of the user's modules, if any
        assert {"edited_pkg", "edited_pkg.consts", "edited_pkg.train"} <= set(dropped)
        assert "edited_pkg" not in sys.modules
        assert resolve_trainable("edited_pkg.train:fit")({}, None) == 2.0
    finally:
        from tuner.training import _resolve

        for name in [n for n in sys.modules if n.startswith("edited_pkg")]:
            del sys.modules[name]
            _resolve._user_modules.pop(name, None)
