"""Packed training: a pack of trials trained as one fused model equals each trial trained alone.

Every equivalence test trains the same configs and seeds twice, alone with ``fit_mlp`` /
``fit_cnn`` and together with ``fit_pack``, and compares every reported metric of every epoch
(CPU fp32, 1 thread: 1e-4 relative is the promise; in practice they agree to ~1e-6).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import pytest
import torch

from tuner import SpecError
from tuner._errors import Diverged
from tuner.training import TrialContext, fit_cnn, fit_mlp
from tuner.training._packed import fit_pack, pack_key, pack_widths, probe_pack_size
from tuner.training._packed_optim import PackedOptimizer, optimizer_kind
from tuner.training._packed_params import FlatParams
from tuner.training._optim import build_optimizer

torch.set_num_threads(1)
DIGITS = {"name": "digits"}
DIABETES = {"name": "diabetes"}


def make_ctx(seed: int, *, epochs: int = 3, dataset: dict = DIGITS, metric: str = "val_accuracy",
             direction: str = "maximize", prune_hook: Callable[[int, float], bool] | None = None
             ) -> TrialContext:
    return TrialContext(trial_number=seed, epochs=epochs, objective_metric=metric,
                        direction=direction, dataset=dataset, seed=seed, prune_hook=prune_hook)


Outcome = tuple[Any, list[dict[str, float]]]


def solo(config: Mapping[str, Any], ctx: TrialContext, kind: str = "mlp") -> Outcome:
    """``fit_mlp`` / ``fit_cnn`` alone: its result or exception, and its curve."""
    fit = fit_cnn if kind == "cnn" else fit_mlp
    try:
        return fit(config, ctx), ctx.curve
    except Exception as e:  # noqa: BLE001 - the exception is the outcome under test
        return e, ctx.curve


def packed(configs: Sequence[Mapping[str, Any]], ctxs: Sequence[TrialContext], kind: str = "mlp"
           ) -> list[Outcome]:
    return list(zip(fit_pack(configs, ctxs, kind), [c.curve for c in ctxs], strict=True))


def assert_same(a: Outcome, b: Outcome) -> None:
    """Same outcome (result dict, or exception type), same curve to 1e-4 relative per epoch."""
    (ra, ca), (rb, cb) = a, b
    assert [p["epoch"] for p in ca] == [p["epoch"] for p in cb]
    for pa, pb in zip(ca, cb, strict=True):
        assert pa.keys() == pb.keys()
        for key in pa:
            x, y = pa[key], pb[key]
            assert (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-7), \
                f"epoch {pa['epoch']} {key}: solo {x!r} vs packed {y!r}"
    if isinstance(ra, BaseException):
        assert type(rb) is type(ra), f"solo raised {ra!r}, packed gave {rb!r}"
    else:
        assert isinstance(rb, dict), f"solo returned {ra}, packed gave {rb!r}"
        assert ra["best_epoch"] == rb["best_epoch"] and ra["epochs_run"] == rb["epochs_run"]
        assert ra.keys() == rb.keys()


def check_equivalent(configs: Sequence[Mapping[str, Any]], kind: str = "mlp", **ctx_kw: Any
                     ) -> list[Outcome]:
    """Train ``configs`` alone and as one pack (member i gets seed i); assert they agree."""
    alone = [solo(c, make_ctx(i, **ctx_kw), kind) for i, c in enumerate(configs)]
    together = packed(configs, [make_ctx(i, **ctx_kw) for i in range(len(configs))], kind)
    for a, b in zip(alone, together, strict=True):
        assert_same(a, b)
    return together


# -- equivalence ------------------------------------------------------------------------------

OPTIMIZER_PACKS = {
    "sgd": [{"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
            {"lr": 0.02, "momentum": 0.5}, {"lr": 0.1, "momentum": 0.0}],
    "rmsprop": [{"lr": 1e-3, "rho": 0.9, "momentum": 0.5, "weight_decay": 1e-4},
                {"lr": 3e-4}, {"lr": 2e-3, "rho": 0.95}],
    "adam": [{"lr": 3e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 1e-3},
             {"lr": 1e-3}, {"lr": 5e-3, "beta1": 0.95}],
    "adamw": [{"lr": 3e-3, "weight_decay": 0.05, "beta2": 0.98}, {"lr": 1e-3},
              {"lr": 2e-3, "weight_decay": 0.01, "eps": 1e-7}],
    "adagrad": [{"lr": 0.05, "weight_decay": 1e-3}, {"lr": 0.01}, {"lr": 0.1}],
    "adadelta": [{"lr": 1.0, "rho": 0.95, "weight_decay": 1e-3}, {"lr": 0.5}, {"lr": 2.0, "rho": 0.8}],
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_PACKS))
def test_every_optimizer_matches_its_solo_runs(optimizer: str) -> None:
    configs = [{"optimizer": optimizer, "hidden_units": 32, **c} for c in OPTIMIZER_PACKS[optimizer]]
    results = check_equivalent(configs)
    assert all(isinstance(r, dict) and r["val_accuracy"] > 0.5 for r, _ in results)  # it trained


def test_batch_norm_and_padded_widths_match() -> None:
    """16/32/64 units in one pack, with batch norm (per-member statistics) and SGD+nesterov."""
    check_equivalent([{"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": n,
                       "batch_norm": True, "hidden_units": h, "batch_size": 32}
                      for h, n in ((16, True), (64, False), (32, True))])


def test_padded_units_are_masked_for_sigmoid_and_prelu() -> None:
    """sigmoid(0) = 0.5 and PReLU's learnable slope: padding must still contribute nothing."""
    check_equivalent([{"activation": "sigmoid", "hidden_units": [16, 48], "lr": 3e-3},
                      {"activation": "sigmoid", "hidden_units": [48, 8], "lr": 1e-3}])
    check_equivalent([{"activation": "prelu", "hidden_units": h, "weight_decay": 1e-3, "lr": 2e-3}
                      for h in (8, 24, 40)])


def test_every_schedule_in_one_pack() -> None:
    """Each member keeps its own schedule (and warm-up): they are per-member lr tensors."""
    schedules = [{"lr_decay": "none"}, {"lr_decay": "inverse", "decay_rate": 0.5},
                 {"lr_decay": "exponential", "decay_rate": 0.7}, {"lr_decay": "step", "step_size": 1},
                 {"lr_decay": "cosine"}, {"lr_decay": "warmup", "warmup_epochs": 1},
                 {"lr_decay": "cosine", "warmup_epochs": 2}]
    configs = [{"optimizer": "sgd", "lr": 0.1, "hidden_units": 32, **s} for s in schedules]
    check_equivalent(configs, epochs=4)


def test_cnn_with_padded_channels_and_a_diverging_member() -> None:
    check_equivalent([{"channels": [4, 8], "lr": 3e-3}, {"channels": [8, 4], "dropout": 0.3}],
                     kind="cnn", epochs=2)
    results = check_equivalent(
        [{"channels": c, "lr": lr, "optimizer": "sgd", "batch_norm": False, "pool": "avg",
          "activation": "prelu"} for c, lr in ((3, 0.05), (6, 1e4), (5, 0.02))],
        kind="cnn", epochs=2)
    assert isinstance(results[1][0], Diverged)
    assert [type(r) for r, _ in results[::2]] == [dict, dict]


def test_regression_matches() -> None:
    check_equivalent([{"hidden_units": h, "lr": lr, "batch_norm": True, "batch_size": 32}
                      for h, lr in ((16, 1e-3), (32, 3e-3))],
                     dataset=DIABETES, metric="val_rmse", direction="minimize")


# -- members are independent ------------------------------------------------------------------


def test_divergence_fails_only_that_member() -> None:
    configs = [{"optimizer": "sgd", "lr": 1e4, "hidden_units": 32},
               {"optimizer": "sgd", "lr": 0.05, "hidden_units": 32},
               {"optimizer": "sgd", "lr": 0.02, "hidden_units": 64}]
    results = check_equivalent(configs)
    assert isinstance(results[0][0], Diverged)
    assert [type(r) for r, _ in results[1:]] == [dict, dict]
    assert all(math.isfinite(p["train_loss"]) for _, curve in results[1:] for p in curve)


class StopTrial(Exception):
    """What an executor might raise from the prune hook to stop one trial (e.g. a timeout)."""


def test_pruning_and_a_stop_signal_end_only_their_member() -> None:
    def prune_at_2(epoch: int, value: float) -> bool:
        return epoch == 2

    def stop_at_1(epoch: int, value: float) -> bool:
        raise StopTrial("time is up")

    configs = [{"hidden_units": 32, "lr": lr} for lr in (1e-3, 3e-3, 2e-3, 5e-3)]
    hooks = [prune_at_2, None, stop_at_1, None]
    ctxs = [make_ctx(i, epochs=4, prune_hook=h) for i, h in enumerate(hooks)]
    out = packed(configs, ctxs)
    assert isinstance(out[0][0], optuna.TrialPruned) and len(out[0][1]) == 2
    assert isinstance(out[2][0], StopTrial) and len(out[2][1]) == 1
    for i in (0, 1, 2, 3):  # the others train on as if alone; the stopped ones match up to their end
        assert_same(solo(configs[i], make_ctx(i, epochs=4, prune_hook=hooks[i])), out[i])
    assert out[1][0]["epochs_run"] == 4 and out[3][0]["epochs_run"] == 4


def test_early_stopping_stops_one_member_and_the_pack_shrinks() -> None:
    """lr 1e-9 learns nothing: with patience 1 that member stops after epoch 2; a member with
    fewer epochs ends early too, so the pack shrinks (3 of 4 live) and the rest must not move."""
    configs = [{"lr": 1e-9, "early_stopping_patience": 1, "hidden_units": 16},
               {"lr": 3e-3, "hidden_units": 32}, {"lr": 1e-3, "hidden_units": 16},
               {"lr": 2e-3, "hidden_units": 32}]
    epochs = [5, 5, 2, 5]
    alone = [solo(c, make_ctx(i, epochs=e)) for i, (c, e) in enumerate(zip(configs, epochs))]
    together = packed(configs, [make_ctx(i, epochs=e) for i, e in enumerate(epochs)])
    for a, b in zip(alone, together, strict=True):
        assert_same(a, b)
    assert together[0][0]["epochs_run"] == 2 and together[2][0]["epochs_run"] == 2
    assert together[1][0]["epochs_run"] == 5


def test_dropout_members_draw_independently() -> None:
    """Changing one member's dropout changes its curve and nobody else's; on CPU each member
    even draws the very masks its solo run draws."""
    base = [{"hidden_units": 32, "dropout": d, "lr": 3e-3} for d in (0.2, 0.3, 0.0)]
    other = [dict(c) for c in base]
    other[1]["dropout"] = 0.6
    first = check_equivalent(base)
    second = packed(other, [make_ctx(i) for i in range(3)])
    assert first[0][1] == second[0][1] and first[2][1] == second[2][1]
    assert first[1][1] != second[1][1]


def test_a_bad_config_fails_its_member_only() -> None:
    configs = [{"hidden_units": 32}, {"hidden_unit": 32}, {"hidden_units": 16, "lr": -1.0}]
    out = packed(configs, [make_ctx(i) for i in range(3)])
    assert isinstance(out[1][0], SpecError) and out[1][0].field == "params.hidden_unit"
    assert isinstance(out[2][0], SpecError) and out[2][0].field == "params.lr"
    assert_same(solo(configs[0], make_ctx(0)), out[0])


def test_members_that_cannot_be_fused_are_refused() -> None:
    with pytest.raises(ValueError, match="pack_key"):
        fit_pack([{"layers": 1}, {"layers": 2}], [make_ctx(0), make_ctx(1)])
    with pytest.raises(ValueError, match="dataset"):
        fit_pack([{}, {}], [make_ctx(0), make_ctx(1, dataset={"name": "iris"})])
    with pytest.raises(ValueError, match="contexts"):
        fit_pack([{}], [])


# -- the optimizer alone ----------------------------------------------------------------------

STEP_CASES = {
    "sgd": [{"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
            {"lr": 0.05, "momentum": 0.0}],
    "rmsprop": [{"lr": 0.01, "momentum": 0.9, "rho": 0.9, "weight_decay": 0.01}, {"lr": 0.02}],
    "adam": [{"lr": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-3, "weight_decay": 0.1}, {"lr": 0.02}],
    "adamw": [{"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.03, "beta1": 0.7}],
    "adagrad": [{"lr": 0.1, "weight_decay": 0.01}, {"lr": 0.3}],
    "adadelta": [{"lr": 1.0, "rho": 0.5, "weight_decay": 0.01}, {"lr": 0.5}],
}


@pytest.mark.parametrize("name", sorted(STEP_CASES))
def test_packed_update_is_torch_optims_update(name: str) -> None:
    """Four steps from the same weights and gradients: each member's weights follow torch.optim
    (as ``build_optimizer`` configures it) to float rounding."""
    gen = torch.Generator().manual_seed(0)
    shapes = {"w": (3, 5), "b": (5,)}
    members = STEP_CASES[name]
    flat = FlatParams(shapes, len(members), torch.device("cpu"))
    with torch.no_grad():
        flat.data.copy_(torch.randn(flat.data.shape, generator=gen))
    refs, groups = [], []
    for i, config in enumerate(members):
        params = [torch.nn.Parameter(flat.member(k, i).clone()) for k in shapes]
        opt = build_optimizer({"optimizer": name, **config}, params)
        refs.append((params, opt))
        groups.append(opt.param_groups[0])
    packed_opt = PackedOptimizer(optimizer_kind(refs[0][1]), flat, groups)
    packed_opt.set_lr([c["lr"] for c in members])
    for _ in range(4):
        grads = torch.randn(flat.grad.shape, generator=gen)
        flat.grad.copy_(grads)
        packed_opt.step()
        for i, (params, opt) in enumerate(refs):
            for param, key in zip(params, shapes):
                a, b = flat.offsets[key]
                param.grad = grads[i, a:b].view(shapes[key]).clone()
            opt.step()
    for i, (params, _) in enumerate(refs):
        for param, key in zip(params, shapes):
            torch.testing.assert_close(flat.member(key, i), param.detach(), rtol=1e-6, atol=1e-7)


# -- pack key and probe -----------------------------------------------------------------------


def test_pack_key_groups_what_a_pack_can_hold() -> None:
    base = {"layers": 2, "hidden_units": 64, "optimizer": "sgd", "batch_size": 64}
    same_pack = [dict(base, hidden_units=16), dict(base, lr=0.3, momentum=0.5, nesterov=True),
                 dict(base, lr_decay="cosine", warmup_epochs=1), dict(base, dropout=0.4),
                 dict(base, weight_decay=1e-3, init="xavier", early_stopping_patience=2),
                 dict(base, optimizer="SGD", hidden_units=[32, 8])]
    assert {pack_key(c) for c in same_pack} == {pack_key(base)}
    different = [dict(base, layers=3), dict(base, optimizer="adam"), dict(base, batch_size=32),
                 dict(base, activation="tanh"), dict(base, batch_norm=True), dict(base, amp="bf16")]
    assert len({pack_key(c) for c in [base, *different]}) == 1 + len(different)
    assert pack_key(dict(base, compile=True)) is None
    assert pack_key(dict(base, layers="two")) is None
    assert pack_key({"channels": [8, 16]}, "cnn") != pack_key({"channels": 8, "kernel_size": 5}, "cnn")
    assert pack_key({}, "my_module:fit") is None
    assert pack_widths({"hidden_units": [32, 8]}) == (32, 8)
    assert pack_widths({"channels": 16, "layers": 3}, "cnn") == (16, 16, 16)


def test_pack_key_needs_no_torch() -> None:
    """The coordinator groups trials in the driver, which never imports torch."""
    code = ("import sys; from tuner.training._pack_key import pack_key; pack_key({}); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_probe_pack_size_is_a_candidate_within_the_memory_cap() -> None:
    config = {"hidden_units": 32, "batch_size": 32}
    ctx = make_ctx(0)
    size = probe_pack_size(config, ctx, candidates=(1, 2, 4, 8, 16))
    assert size in (1, 2, 4, 8, 16)
    assert probe_pack_size(config, ctx, candidates=(4,)) == 4
    # one member's estimated bytes fit, two members' do not: the probe never tries 2
    from tuner.training._packed import _build, _pack_bytes, _setup

    member = _setup(config, ctx, "mlp")
    net, opt = _build([member], "mlp", torch.device("cpu"))
    one = _pack_bytes(net, 1, member.batch_size, member.data, len(opt.state))
    assert probe_pack_size(config, ctx, candidates=(1, 2, 4), max_bytes=one + 1) == 1
    # a worker's share of the device bounds it too: next to many others, it packs nothing
    assert probe_pack_size(config, ctx, candidates=(1, 2, 4), share=1e-12) == 1
    with pytest.raises(SpecError):
        probe_pack_size({"optimizer": "lbfgs"}, ctx)


def test_a_worker_packs_within_its_share_of_the_device() -> None:
    """Workers that split a device probe at once; each may fill only its share of it."""
    from tuner.execution._worker import _device_share
    from tuner.spec import parse_spec

    def share(device: str, **resources: float) -> float:
        spec = parse_spec({"study": "s", "dataset": {"name": "digits"}, "resources": resources,
                           "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}})
        return _device_share(spec, device)

    assert share("cuda:0", gpus_per_trial=0.25) == 0.25
    assert share("cuda:0", gpus_per_trial=2) == 1.0
    assert share("cpu", cpus_per_trial=1) == pytest.approx(1 / (os.cpu_count() or 1))
    assert share("cpu", cpus_per_trial=10_000) == 1.0


def test_packs_print_no_gradient_layout_hint_even_after_a_pack_of_one() -> None:
    """The probe trains a pack of one first (dense views: autograd has no hint then), then larger
    packs: the hint that the strided views "may impair performance" reaches no terminal, while
    the process's other warnings still do."""
    code = (
        "import warnings, torch; torch.set_num_threads(1)\n"
        "from tuner.training import TrialContext\n"
        "from tuner.training._packed import fit_pack, probe_pack_size\n"
        "ctx = TrialContext(device='cpu', epochs=1, objective_metric='val_accuracy',"
        " direction='maximize', dataset={'name': 'digits'}, seed=0)\n"
        "config = {'hidden_units': 16, 'batch_size': 64, 'optimizer': 'sgd'}\n"
        "probe_pack_size(config, ctx, candidates=(1, 2), min_gain=-1.0)\n"
        "fit_pack([config, config], [ctx, ctx])\n"
        "warnings.warn('the user code still warns', UserWarning)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gradient layout contract" not in done.stderr
    assert "the user code still warns" in done.stderr
