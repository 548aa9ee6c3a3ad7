"""builtin:mlp end to end on small real data: network, optimizers, loop, reporting, resolving."""

from __future__ import annotations

import sys

import optuna
import pytest
import torch
from torch import nn

from tuner._errors import Diverged, SpecError, TrainableError
from tuner.training import (
    LR_DECAYS,
    OPTIMIZERS,
    TrialContext,
    build_mlp,
    build_optimizer,
    build_scheduler,
    fit_cnn,
    fit_mlp,
    resolve_trainable,
)

torch.set_num_threads(1)
DIGITS = {"name": "digits"}
IRIS = {"name": "iris"}


def context(dataset=IRIS, epochs=1, metric="val_loss", direction="minimize", **kw):
    return TrialContext(
        epochs=epochs,
        objective_metric=metric,
        direction=direction,
        dataset=dataset,
        seed=0,
        **kw,
    )


# --- training ---------------------------------------------------------------------------------


def test_digits_learns():
    ctx = context(DIGITS, epochs=10, metric="val_accuracy", direction="maximize")
    result = fit_mlp({"optimizer": "adam", "lr": 1e-2}, ctx)
    assert result["val_accuracy"] > 0.9
    assert [p["epoch"] for p in ctx.curve] == list(range(1, 11))
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(ctx.curve[0])
    assert result["epochs_run"] == 10
    best = ctx.curve[result["best_epoch"] - 1]
    assert (
        result["val_accuracy"] == best["val_accuracy"] == max(p["val_accuracy"] for p in ctx.curve)
    )


def test_diabetes_regression_improves():
    ctx = context({"name": "diabetes"}, epochs=8, metric="val_r2", direction="maximize")
    result = fit_mlp({"lr": 3e-3, "batch_size": 32}, ctx)
    r2 = [p["val_r2"] for p in ctx.curve]
    assert r2[-1] > r2[0] and result["val_r2"] > 0.2
    assert {"val_mse", "val_rmse", "val_r2", "best_epoch", "epochs_run"} <= set(result)
    point = ctx.curve[-1]
    assert point["val_rmse"] == pytest.approx(point["val_mse"] ** 0.5, rel=1e-5)


def test_same_seed_same_curve():
    first, second = context(epochs=2), context(epochs=2)
    fit_mlp({"dropout": 0.2}, first)
    fit_mlp({"dropout": 0.2}, second)
    assert first.curve == second.curve


def test_large_sgd_lr_diverges():
    ctx = context(DIGITS, epochs=5)
    with pytest.raises(Diverged):
        fit_mlp({"optimizer": "sgd", "lr": 1e3}, ctx)
    assert ctx.curve  # the diverged point is recorded before the raise


def test_prune_hook_raises_and_keeps_curve():
    calls = []

    def hook(epoch, value):
        calls.append((epoch, value))
        return epoch == 2

    ctx = context(epochs=5, prune_hook=hook)
    with pytest.raises(optuna.TrialPruned):
        fit_mlp({}, ctx)
    assert [p["epoch"] for p in ctx.curve] == [1, 2]
    assert [c[1] for c in calls] == [p["val_loss"] for p in ctx.curve]


def test_early_stopping_returns_best_epoch():
    ctx = context(DIGITS, epochs=40)
    result = fit_mlp({"lr": 1e-2, "early_stopping_patience": 2}, ctx)
    assert result["epochs_run"] < 40
    assert result["epochs_run"] - result["best_epoch"] == 2
    assert result["val_loss"] == min(p["val_loss"] for p in ctx.curve)


def test_objective_metric_must_be_reported():
    with pytest.raises(SpecError, match="'val_accuracy'.*val_mse, val_rmse, val_r2") as err:
        fit_mlp({}, context({"name": "diabetes"}, metric="val_accuracy"))
    assert err.value.field == "objective.metric"


def test_batch_norm_survives_a_leftover_batch_of_one():
    # 106 rows -> 84 train rows; 84 % 83 == 1 would crash BatchNorm if not skipped.
    data = {"name": "synthetic_classification", "n_samples": 106, "n_features": 5}
    fit_mlp({"batch_norm": True, "batch_size": 83}, context(data, epochs=2))


def test_linear_model_list_units_and_bf16_on_cpu():
    fit_mlp({"layers": 0}, context())
    fit_mlp({"hidden_units": [16, 8, 4], "activation": "prelu"}, context())
    with pytest.warns(UserWarning, match="amp: bf16 is ignored on cpu"):
        fit_mlp({"amp": "bf16", "activation": "tanh"}, context())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_trains_one_epoch(optimizer):
    ctx = context()
    fit_mlp({"optimizer": optimizer, "weight_decay": 1e-4}, ctx)
    assert len(ctx.curve) == 1


@pytest.mark.parametrize("decay", LR_DECAYS)
def test_each_lr_decay_trains(decay):
    ctx = context(epochs=2)
    fit_mlp({"lr_decay": decay}, ctx)
    assert len(ctx.curve) == 2


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"activation": "swish"}, "params.activation"),
        ({"optimizer": "lion"}, "params.optimizer"),
        ({"lr": -1.0}, "params.lr"),
        ({"lr_decay": "linear"}, "params.lr_decay"),
        ({"layers": 2, "hidden_units": [8]}, "params.hidden_units"),
        ({"dropout": 1.0}, "params.dropout"),
        ({"batch_size": 0}, "params.batch_size"),
        ({"init": "zeros"}, "params.init"),
        ({"learning_rate": 0.1}, "params.learning_rate"),
        ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, "params.nesterov"),
        ({"early_stopping_patience": 0}, "params.early_stopping_patience"),
    ],
)
def test_bad_config_names_the_field(config, field):
    with pytest.raises(SpecError) as err:
        fit_mlp(config, context())
    assert err.value.field == field


def test_unknown_value_lists_the_valid_ones():
    with pytest.raises(SpecError, match="adam, adamw, adadelta|adadelta, adagrad, adam"):
        fit_mlp({"optimizer": "lion"}, context())


# --- network ------------------------------------------------------------------------------------


def test_batch_norm_layers_have_no_bias():
    model = build_mlp({"layers": 2, "hidden_units": 32, "batch_norm": True}, 10, 3)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [m.bias is None for m in linears] == [True, True, False]  # the head keeps its bias
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model) == 2


def test_init_zero_bias_nonzero_weights():
    for activation in ("relu", "tanh", "leaky_relu", "sigmoid"):
        model = build_mlp({"activation": activation, "hidden_units": 50}, 30, 2)
        for layer in (m for m in model if isinstance(m, nn.Linear)):
            assert torch.count_nonzero(layer.bias) == 0
            assert torch.count_nonzero(layer.weight) == layer.weight.numel()
    he = build_mlp({"hidden_units": 400}, 400, 2)[2].weight  # second hidden layer
    assert float(he.detach().var()) == pytest.approx(2 / 400, rel=0.1)


def test_dropout_only_in_train_mode():
    model = build_mlp({"dropout": 0.5, "hidden_units": 64}, 8, 2)
    x = torch.randn(16, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_schedules_follow_their_formulas():
    def lrs(config, epochs=6):
        layer = nn.Linear(2, 1)
        optimizer = build_optimizer({"lr": 1.0, **config}, layer.parameters())
        scheduler = build_scheduler(config, optimizer, epochs)
        seen = []
        for _ in range(epochs):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    assert lrs({"lr_decay": "inverse", "decay_rate": 1.0})[:3] == pytest.approx([1, 1 / 2, 1 / 3])
    assert lrs({"lr_decay": "exponential"})[:3] == pytest.approx([1, 0.95, 0.95**2])
    assert lrs({"lr_decay": "step", "step_size": 2}) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert lrs({"lr_decay": "warmup"})[:4] == pytest.approx([1 / 3, 2 / 3, 1, 1])
    cosine = lrs({"lr_decay": "cosine", "warmup_epochs": 2})
    assert cosine[:3] == pytest.approx([1 / 3, 2 / 3, 1]) and cosine[-1] < 0.2
    assert lrs({"lr_decay": "none"}) == [1.0] * 6


def test_textbook_names_map_to_torch_arguments():
    params = list(nn.Linear(2, 1).parameters())
    rms = build_optimizer({"optimizer": "rmsprop", "rho": 0.9}, params)
    assert rms.defaults["alpha"] == 0.9 and rms.defaults["lr"] == 1e-3
    adam = build_optimizer({"beta1": 0.8, "beta2": 0.99, "eps": 1e-7}, params)
    assert adam.defaults["betas"] == (0.8, 0.99) and adam.defaults["eps"] == 1e-7
    sgd = build_optimizer({"optimizer": "sgd"}, params)
    assert sgd.defaults["lr"] == 0.01 and sgd.defaults["momentum"] == 0.9


# --- resolving trainables -----------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A throwaway package in a temporary working directory; sys.path and modules restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "tuner_test_userpkg").mkdir()
    (tmp_path / "tuner_test_userpkg" / "__init__.py").write_text("")
    (tmp_path / "tuner_test_userpkg" / "train.py").write_text(
        "def fit(config, ctx):\n    return 1.0\n\nNOT_CALLABLE = 3\n"
    )
    (tmp_path / "tuner_test_userpkg" / "broken.py").write_text(
        "raise RuntimeError('boom\\nline')\n"
    )
    (tmp_path / "tuner_test_userpkg" / "needs.py").write_text("import tuner_test_absent_dep\n")
    yield
    for name in [m for m in sys.modules if m.startswith("tuner_test_userpkg")]:
        del sys.modules[name]


def test_resolve_builtin():
    assert resolve_trainable("builtin:mlp") is fit_mlp
    assert resolve_trainable("builtin:cnn") is fit_cnn
    with pytest.raises(TrainableError, match="builtin:cnn, builtin:mlp"):
        resolve_trainable("builtin:rnn")


def test_resolve_user_function_from_working_directory(user_module):
    fn = resolve_trainable("tuner_test_userpkg.train:fit")
    assert fn({}, TrialContext()) == 1.0


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_colon_here", "expected 'package.module:function' or 'builtin:mlp'"),
        ("a:b:c", "expected 'package.module:function'"),
        ("bad-name:fit", "expected 'package.module:function'"),
        ("tuner_test_nowhere.mod:fit", "not found.*PYTHONPATH"),
        ("tuner_test_userpkg.train:missing", "has no attribute 'missing'"),
        ("tuner_test_userpkg.train:NOT_CALLABLE", "not a function"),
        ("tuner_test_userpkg.broken:fit", "RuntimeError: boom line"),
        ("tuner_test_userpkg.needs:fit", "needs 'tuner_test_absent_dep'"),
    ],
)
def test_resolve_errors_are_one_line(user_module, ref, message):
    with pytest.raises(TrainableError, match=message) as err:
        resolve_trainable(ref)
    assert "\n" not in str(err.value)
