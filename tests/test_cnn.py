"""builtin:cnn: the conv net, image-shaped data, real training, the CUDA-only switches, a study."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tuner
from tests.conftest import SPACES, small_spec
from tuner import SpecError
from tuner.spec import load_spec, parse_spec
from tuner.training import check_study
from tuner.training import TrialContext, build_cnn, fit_cnn, fit_mlp, load_dataset

torch.set_num_threads(1)
DIGITS = {"name": "digits"}


def context(dataset=DIGITS, epochs=1, metric="val_accuracy", direction="maximize"):
    return TrialContext(epochs=epochs, objective_metric=metric, direction=direction,
                        dataset=dataset, seed=0)


def test_digits_are_one_by_eight_by_eight_images() -> None:
    data = load_dataset(DIGITS, torch.device("cpu"))
    assert data.image_shape == (1, 8, 8) and data.x_train.shape[1] == 64
    assert load_dataset({"name": "iris"}, torch.device("cpu")).image_shape is None


def test_network_shape_batch_norm_and_pooling() -> None:
    net = build_cnn({"layers": 4, "channels": [4, 8, 8, 16], "dropout": 0.2}, (1, 8, 8), 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 8, 16]
    assert all(c.bias is None for c in convs)  # batch norm (default on) makes the bias redundant
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 3  # 8 -> 4 -> 2 -> 1, then none
    assert any(isinstance(m, nn.Dropout) for m in net.modules())
    assert net(torch.randn(5, 64)).shape == (5, 10)
    flat = build_cnn({"layers": 1, "pool": "none", "batch_norm": False, "kernel_size": 4},
                     (3, 6, 6), 2)
    assert flat[1].bias is not None and flat(torch.randn(2, 108)).shape == (2, 2)
    assert flat[-1].in_features == 32 * 6 * 6  # no pooling: the full 6x6 map reaches the head


@pytest.mark.parametrize("config,field", [
    ({"channels": [8, 16], "layers": 3}, "params.channels"),
    ({"pool": "sum"}, "params.pool"),
    ({"kernel_size": 0}, "params.kernel_size"),
    ({"hidden_units": 32}, "params.hidden_units"),
])
def test_bad_config_names_the_field(config, field) -> None:
    with pytest.raises(SpecError) as err:
        fit_cnn(config, context())
    assert err.value.field == field


def test_digits_cnn_learns() -> None:
    ctx = context(epochs=6)
    result = fit_cnn({"lr": 3e-3, "channels": 16, "batch_size": 64}, ctx)
    assert result["val_accuracy"] > 0.9
    assert [p["epoch"] for p in ctx.curve] == list(range(1, 7))
    assert result["epochs_run"] == 6


def test_same_optimizer_and_schedule_knobs_as_the_mlp() -> None:
    for config in ({"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr": 0.05},
                   {"optimizer": "adamw", "weight_decay": 1e-3, "lr_decay": "cosine"},
                   {"optimizer": "rmsprop", "lr_decay": "warmup", "activation": "leaky_relu"}):
        ctx = context(epochs=2)
        fit_cnn({"channels": 8, **config}, ctx)
        assert len(ctx.curve) == 2


def test_plain_features_are_refused_with_the_fix() -> None:
    with pytest.raises(SpecError, match="image_shape: \\[channels, height, width\\]") as err:
        fit_cnn({}, context({"name": "iris"}))
    assert err.value.field == "dataset.image_shape"
    spec = parse_spec(small_spec("c", trainable="builtin:cnn", dataset={"name": "wine"},
                                 fixed={"channels": 8}))
    with pytest.raises(SpecError) as err:
        check_study(spec)  # before any Ray or torch start
    assert err.value.field == "dataset.image_shape"


def test_image_shape_for_other_data(tmp_path: Path) -> None:
    data = {"name": "synthetic_classification", "n_samples": 200, "n_features": 16,
            "image_shape": [1, 4, 4]}
    fit_cnn({"channels": 4}, context(data))
    with pytest.raises(SpecError, match="holds 12 values but each row has 16 features"):
        fit_cnn({}, context({**data, "image_shape": [3, 2, 2]}))
    path = tmp_path / "img.npz"  # an npz whose x is [n, c, h, w] is image-shaped as it is
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(120, 2, 4, 4)), y=rng.integers(0, 3, 120))
    assert load_dataset({"name": f"npz:{path}"}, torch.device("cpu")).image_shape == (2, 4, 4)
    fit_cnn({"channels": 4}, context({"name": f"npz:{path}"}))


def test_cuda_switches_warn_and_stay_off_on_cpu() -> None:
    for fit in (fit_mlp, fit_cnn):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ctx = context(epochs=1)
            fit({"compile": True, "amp": "bf16"}, ctx)
        messages = sorted(str(w.message) for w in caught if w.category is UserWarning)
        assert messages == ["amp: bf16 is ignored on cpu: tuner only turns it on on CUDA",
                            "compile: true is ignored on cpu: tuner only turns it on on CUDA"]
    for key, value in (("compile", True), ("amp", "bf16")):
        spec = parse_spec(small_spec("g", fixed={key: value}))
        with pytest.raises(SpecError, match="only turned on on CUDA") as err:
            check_study(spec)
        assert err.value.field == f"fixed.{key}"
        check_study(parse_spec(small_spec("g", fixed={key: value},
                                            resources={"workers": 1, "gpus_per_trial": 0.5})))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compile_and_bf16_on_cuda() -> None:
    ctx = TrialContext(device=torch.device("cuda"), epochs=2, objective_metric="val_accuracy",
                       direction="maximize", dataset=DIGITS, seed=0)
    result = fit_cnn({"compile": True, "amp": "bf16", "channels": 16, "lr": 3e-3}, ctx)
    assert result["val_accuracy"] > 0.5 and torch.backends.cudnn.benchmark


def test_shipped_cnn_spec() -> None:
    spec = load_spec(SPACES / "digits_cnn.yaml")
    assert spec.trainable == "builtin:cnn" and spec.pruner.kind == "asha"
    check_study(spec)


@pytest.mark.usefixtures("ray_session")
def test_cnn_study(sqlite_url: str) -> None:
    spec = small_spec(trials=4, epochs=2, trainable="builtin:cnn", params={
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "scale": "log"},
        "channels": {"type": "int", "low": 8, "high": 16, "scale": "pow2"}},
        fixed={"optimizer": "adam", "batch_size": 128})
    study = tuner.submit(spec, storage=sqlite_url)
    assert study.counts()["COMPLETE"] == 4
    assert study.best_trial.value > 0.5
    assert list(study.curve(study.best_trial.number)["epoch"]) == [1, 2]
