"""Train a pack of ``builtin:mlp`` / ``builtin:cnn`` trials as one fused model.

Why: the networks a study tunes are small, so one trial leaves a CPU core or a GPU mostly
waiting on per-op overhead (Python dispatch, kernel launches). Stacking P trials' weights and
running them as batched matmuls / grouped convolutions does P trials' arithmetic for about the
overhead of one.

What stays exact: member ``i`` trains as ``fit_mlp(configs[i], ctxs[i])`` (or ``fit_cnn``) would,
step by step. It runs the same checks in the same order, builds its initial weights with the
same code under its own seed, draws its mini-batch order and dropout masks from its own
generator in the state ``_fit`` would have, uses its own optimizer hyperparameters and schedule,
and makes the same ``ctx.report`` calls and early-stopping decisions. On CPU in fp32 its curve
matches the solo run to float rounding. With dropout the masks are the same draws on CPU.

Members are independent: nothing is reduced across members, so a NaN in one cannot reach
another; an exception from ``ctxs[i].report`` (``Diverged``, ``optuna.TrialPruned``, a stop or
timeout signal raised by the executor's prune hook) ends member ``i`` only. A finished member is
frozen (learning rate 0, output ignored), and the pack shrinks to its live members once at most
3/4 of them are live.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tuner.training import _params
from tuner.training._cnn import build_cnn
from tuner.training._context import TrialContext
from tuner.training._data import Dataset
from tuner.training._mlp import build_mlp
from tuner.training._optim import build_optimizer, build_scheduler
from tuner.training._pack_key import PACKABLE_KINDS, pack_key, pack_widths
from tuner.training._packed_cnn import PackedCNN
from tuner.training._packed_net import PackedMLP, PackedNet, same
from tuner.training._packed_optim import PackedOptimizer, optimizer_kind
from tuner.training._packed_params import backward
from tuner.training._trainer import (
    _EVAL_CHUNK,
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    _cuda_only,
    _settings,
)

__all__ = ["fit_pack", "pack_key", "pack_widths", "probe_pack_size"]

SHRINK_AT = 0.75
"""Drop stopped members from the stacked tensors once live members are at most this share.
Until then a stopped member costs its share of the arithmetic but no reallocation; on CUDA every
new pack shape also costs cuDNN a new algorithm search."""

PROBE_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class _Member:
    """One trial of the pack: what ``_fit`` holds in local variables, kept per member."""

    config: dict[str, Any]
    ctx: TrialContext
    data: Dataset
    batch_size: int
    patience: int | None
    autocast: Callable[[], Any]
    model: nn.Module | None  # the reference network; dropped once the pack holds its weights
    optimizer: torch.optim.Optimizer | None  # source of its hyperparameters; dropped likewise
    base_lr: float
    lr_factor: Callable[[int], float]
    gen: torch.Generator
    best: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    since_best: int = 0
    done: bool = False
    result: dict[str, float] | BaseException | None = None


def _setup(config: Mapping[str, Any], ctx: TrialContext, kind: str) -> _Member:
    """Everything ``_fit`` does before its first ``randperm``, in the same order (so the same
    ``SpecError`` comes first), leaving the global RNG as it was."""
    config, data, device, batch_size, patience, autocast = _settings(config, ctx, kind)
    # Without a seed a solo run continues the global stream; members must not share one, so
    # each draws its own seed from it.
    seed = ctx.seed if ctx.seed is not None else int(torch.randint(0, 2**62, ()).item())
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        if kind == "cnn" and data.image_shape is not None:  # _prepare refused other data
            model = build_cnn(config, data.image_shape, data.n_classes or 1)
        else:
            model = build_mlp(config, data.n_features, data.n_classes or 1)
        optimizer = build_optimizer(config, model.parameters())  # draws nothing from the RNG
        if _params.flag(config, "compile", False):  # the check _speed_up makes, same order
            if device.type == "cuda":
                warnings.warn("compile: true is not used inside a pack (every shrink would "
                              "recompile); the member trains uncompiled", UserWarning, stacklevel=3)
            else:
                _cuda_only("compile: true", device)
        scheduler = build_scheduler(config, optimizer, ctx.epochs)
        state = torch.get_rng_state()
    gen = torch.Generator(device=device)
    if device.type == "cpu":
        gen.set_state(state)  # where _fit's first randperm would find the global generator
    else:
        gen.manual_seed(seed)  # _fit's manual_seed seeds CUDA too, and building draws on CPU only
    return _Member(config, ctx, data, batch_size, patience, autocast, model, optimizer,
                   float(scheduler.base_lrs[0]), scheduler.lr_lambdas[0], gen)


def _build(members: Sequence[_Member], kind: str, device: torch.device
           ) -> tuple[PackedNet, PackedOptimizer]:
    refs = [m.model for m in members]
    net: PackedNet = PackedCNN(refs, device) if kind == "cnn" else PackedMLP(refs, device)
    opt_kind = same([optimizer_kind(m.optimizer) for m in members], "optimizer")
    opt = PackedOptimizer(opt_kind, net.params, [m.optimizer.param_groups[0] for m in members])
    return net, opt


def _check_pack(members: Sequence[_Member], kind: str) -> None:
    """Members the caller put together must be fusable: one dataset and device, one pack key."""
    same([(m.ctx.dataset, str(torch.device(m.ctx.device))) for m in members], "dataset/device")
    same([m.batch_size for m in members], "batch size")
    same([pack_key(m.config, kind) for m in members], "pack_key")


def _losses(out: torch.Tensor, target: torch.Tensor, classify: bool) -> torch.Tensor:
    """Each member's mean loss over its rows, ``[P]``: what ``_fit``'s loss is per member."""
    if classify:
        p = out.shape[0]
        return F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(p, -1).mean(1)
    return F.mse_loss(out.squeeze(-1).float(), target, reduction="none").mean(1)


def _rows(x: torch.Tensor, index: torch.Tensor, kind: str) -> torch.Tensor:
    """Each member's mini-batch: ``[P, B, F]`` for the MLP, ``[B, P, F]`` for the conv net
    (``index_select`` on the flat index: ~5x faster than advanced indexing, same rows)."""
    if kind == "cnn":
        index = index.t()
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def _shared(x: torch.Tensor, p: int, kind: str) -> torch.Tensor:
    """One set of rows for every member (validation), in the network's input layout."""
    return x.unsqueeze(1).expand(-1, p, -1) if kind == "cnn" else x.unsqueeze(0).expand(p, -1, -1)


def _train_epoch(net: PackedNet, opt: PackedOptimizer, slots: Sequence[_Member], data: Dataset,
                 kind: str, batch_size: int, autocast: Callable[[], Any]) -> torch.Tensor:
    """One pass over each member's fresh permutation; each member's mean training loss, ``[P]``."""
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    end = n - 1 if net.batch_norm and n % batch_size == 1 and n > 1 else n
    gens = [None if m.done else m.gen for m in slots]
    orders = torch.stack([torch.arange(n, device=x.device) if g is None else
                          torch.randperm(n, generator=g, device=x.device) for g in gens])
    classify = data.task == "classification"
    loss_sum = torch.zeros(len(slots), device=x.device)
    for start in range(0, end, batch_size):
        index = orders[:, start : min(start + batch_size, end)]
        net.params.zero_grad()
        with autocast():
            target = y.index_select(0, index.reshape(-1)).view(index.shape)
            losses = _losses(net.forward(_rows(x, index, kind), True, gens), target, classify)
        backward(losses.sum())  # each member's gradient depends on its own loss only
        opt.step()
        loss_sum.add_(losses.detach(), alpha=index.shape[1])  # stays on the device: no sync
    return loss_sum / end


def _evaluate(net: PackedNet, data: Dataset, kind: str, autocast: Callable[[], Any]
              ) -> list[torch.Tensor]:
    """``_evaluate``'s metrics per member (``[P]`` each), in the order of ``*_METRICS[1:]``."""
    x, y = data.x_val, data.y_val
    p = net.p
    chunk = max(1, _EVAL_CHUNK // p)  # the same activation memory as one solo chunk
    with torch.inference_mode(), autocast():
        output = torch.cat([net.forward(_shared(x[i : i + chunk], p, kind), False)
                            for i in range(0, x.shape[0], chunk)], dim=1)
        loss = _losses(output, y.expand(p, -1), data.task == "classification")
        if data.task == "classification":
            return [loss, (output.argmax(dim=2) == y).float().mean(1)]
        total = torch.sum((y - y.mean()) ** 2).clamp_min(torch.finfo(torch.float32).tiny)
        r2 = 1.0 - loss * y.shape[0] / total
        return [loss, loss, loss.sqrt(), r2]


def _end_epoch(m: _Member, epoch: int, metrics: dict[str, float]) -> None:
    """``_fit``'s bookkeeping after an epoch: report, best so far, early stopping, last epoch."""
    ctx = m.ctx
    try:
        ctx.report(epoch, **metrics)
    except Exception as e:  # noqa: BLE001 - Diverged, TrialPruned, a stop signal: this member's end
        m.done, m.result = True, e
        return
    sign = 1.0 if ctx.direction == "minimize" else -1.0
    objective = metrics[ctx.objective_metric]
    if not m.best or sign * objective < sign * m.best[ctx.objective_metric]:
        m.best, m.best_epoch, m.since_best = metrics, epoch, 0
    else:
        m.since_best += 1
        if m.patience is not None and m.since_best >= m.patience:
            m.done = True
    if m.done or epoch >= ctx.epochs:
        m.done, m.result = True, {**m.best, "best_epoch": m.best_epoch, "epochs_run": epoch}


def fit_pack(configs: Sequence[Mapping[str, Any]], ctxs: Sequence[TrialContext],
             kind: str = "mlp") -> list[dict[str, float] | BaseException]:
    """Train ``configs[i]`` with ``ctxs[i]`` for every i, as one fused model.

    Member i trains exactly as ``fit_mlp(configs[i], ctxs[i])`` (``fit_cnn`` for ``kind="cnn"``)
    would: same checks, same ``ctx.report(epoch, **metrics)`` calls per epoch, and the same
    return value (``{**best_metrics, "best_epoch", "epochs_run"}``), or the exception that call
    would have raised (``Diverged``, ``optuna.TrialPruned``, ``SpecError``, any exception the
    report hook raises), returned in its place. Members must share a dataset and device and
    have one :func:`pack_key` (``ValueError`` otherwise: group trials first); their epochs,
    objectives and everything outside the key may differ. An error of the fused computation
    itself (e.g. out of memory) is returned for every member still training.
    """
    if kind not in PACKABLE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PACKABLE_KINDS)}, got {kind!r}")
    if len(configs) != len(ctxs):
        raise ValueError(f"{len(configs)} configs but {len(ctxs)} contexts; give one of each per trial")
    results: list[dict[str, float] | BaseException | None] = [None] * len(configs)
    members: list[tuple[int, _Member]] = []
    for i, (config, ctx) in enumerate(zip(configs, ctxs, strict=True)):
        try:
            members.append((i, _setup(config, ctx, kind)))
        except Exception as e:  # noqa: BLE001 - a bad config fails its own trial, as alone
            results[i] = e
    if members:
        slots = [m for _, m in members]
        _check_pack(slots, kind)
        _train(slots, kind)
        for i, m in members:
            results[i] = m.result
    return [r if r is not None else RuntimeError("member ended without a result") for r in results]


def _train(slots: list[_Member], kind: str) -> None:
    """The epoch loop over the pack: ``_fit``'s loop, once for all members."""
    first = slots[0]
    device = torch.device(first.ctx.device)
    data, batch_size, autocast = first.data, first.batch_size, first.autocast
    names = CLASSIFICATION_METRICS if data.task == "classification" else REGRESSION_METRICS
    if kind == "cnn" and device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as _speed_up does for conv nets
    net, opt = _build(slots, kind, device)
    for m in slots:
        m.model = m.optimizer = None
    epoch = 0
    try:
        while True:
            epoch += 1
            opt.set_lr([0.0 if m.done else m.base_lr * m.lr_factor(epoch - 1) for m in slots])
            train_loss = _train_epoch(net, opt, slots, data, kind, batch_size, autocast)
            tensors = [train_loss, *_evaluate(net, data, kind, autocast)]
            values = torch.stack([t.float() for t in tensors], dim=1).tolist()  # one host sync
            for m, row in zip(slots, values, strict=True):
                if not m.done:
                    _end_epoch(m, epoch, dict(zip(names, row, strict=True)))
            live = [i for i, m in enumerate(slots) if not m.done]
            if not live:
                return
            if len(live) <= SHRINK_AT * len(slots):
                keep = torch.tensor(live, device=device)
                net.select(keep)
                opt.select(keep)
                slots = [slots[i] for i in live]
    except Exception as e:  # noqa: BLE001 - e.g. out of memory: every member still training fails
        for m in slots:
            if not m.done:
                m.done, m.result = True, e


# -- resources.pack: auto ---------------------------------------------------------------------


def _memory_limit(device: torch.device, share: float = 1.0) -> int:
    """Bytes a pack may use: 80% of this worker's share of the GPU (``share`` of its total
    memory, at most what is free), or ``share`` of half the host's available memory. Workers
    that split a device (``gpus_per_trial: 0.25``, several CPU workers on a host) probe at the
    same time, and each must leave the others their part."""
    share = min(1.0, max(share, 0.0))
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(0.8 * min(free, total * share))
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return int(available / 2 * share)


def _pack_bytes(net: PackedNet, p: int, batch_size: int, data: Dataset, n_state: int) -> int:
    """A generous estimate of what a pack of ``p`` such members allocates while training."""
    per_member = net.params.data.shape[1]
    units = net.units_per_sample()
    eval_rows = min(data.x_val.shape[0], max(1, _EVAL_CHUNK // p))
    floats = p * (per_member * (3 + n_state) + 4 * batch_size * units + eval_rows * units)
    return 4 * floats + 8 * p * data.x_train.shape[0]


def _steps_per_s(member: _Member, p: int, kind: str, seconds: float) -> tuple[float, int]:
    """Training steps per second of a pack of ``p`` copies of ``member``, and the peak bytes."""
    device = torch.device(member.ctx.device)
    net, opt = _build([member] * p, kind, device)
    opt.set_lr([member.base_lr] * p)
    x, y = member.data.x_train, member.data.y_train
    gen = torch.Generator(device=device).manual_seed(0)
    classify = member.data.task == "classification"
    b = member.batch_size
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else 0

    def step() -> None:
        index = torch.randint(0, x.shape[0], (p, b), device=device, generator=gen)
        net.params.zero_grad()
        with member.autocast():
            target = y.index_select(0, index.reshape(-1)).view(index.shape)
            backward(_losses(net.forward(_rows(x, index, kind), True, [gen] * p), target,
                             classify).sum())
        opt.step()

    step()  # warm-up: allocator, kernels, cuDNN's algorithm choice
    if cuda:
        torch.cuda.synchronize(device)
    steps, t0 = 0, time.perf_counter()
    while steps < 3 or (time.perf_counter() - t0 < seconds and steps < 200):
        step()
        steps += 1
        if cuda and steps % 8 == 0:
            torch.cuda.synchronize(device)
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) - base if cuda else 0
    return steps / elapsed, peak


def probe_pack_size(config: Mapping[str, Any], ctx: TrialContext, kind: str = "mlp",
                    candidates: Sequence[int] = PROBE_SIZES, budget_s: float | None = None,
                    max_bytes: int | None = None, min_gain: float = 0.1,
                    share: float = 1.0, memory_config: Mapping[str, Any] | None = None) -> int:
    """``resources.pack: auto``: the pack size to use for trials shaped like ``config``.

    Measures training steps/s of packs of each size in ``candidates`` (ascending) on
    ``ctx.device`` with ``config`` (pass the widest member: a pack computes at its width) and
    returns the size with the best member-steps per second, stopping as soon as the next size
    gains less than ``min_gain`` over the best so far: past that point a bigger pack buys little
    speed and costs the sampler feedback (a pack's results arrive together). Sizes whose
    estimated (on CUDA also measured) memory exceeds ``max_bytes`` (default: this worker's
    ``share`` of the device, see ``_memory_limit``) are not tried; ``memory_config``, when
    given, is the largest member a pack may hold (its estimate counts, not ``config``'s). ``budget_s`` (default 0.5 s
    on CPU, 3 s on CUDA) bounds the whole probe. A bad ``config`` raises its ``SpecError``.
    """
    sizes = sorted({int(c) for c in candidates if int(c) >= 1})
    if not sizes:
        raise ValueError(f"candidates must hold at least one size >= 1, got {list(candidates)!r}")
    if kind not in PACKABLE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PACKABLE_KINDS)}, got {kind!r}")
    probe_ctx = TrialContext(device=ctx.device, epochs=ctx.epochs, objective_metric=ctx.objective_metric,
                             direction=ctx.direction, dataset=ctx.dataset, seed=0)
    member = _setup(config, probe_ctx, kind)
    device = torch.device(ctx.device)
    budget = budget_s if budget_s is not None else (3.0 if device.type == "cuda" else 0.5)
    limit = max_bytes if max_bytes is not None else _memory_limit(device, share)
    one, opt = _build([member], kind, device)
    n_state = len(opt.state)
    big, big_one = member, one
    if memory_config is not None:
        big = _setup(memory_config, probe_ctx, kind)
        big_one, _ = _build([big], kind, device)
    measured_per_member = 0.0
    best_p, best_rate = sizes[0], 0.0
    t_start = time.perf_counter()
    for p in sizes:
        need = max(_pack_bytes(big_one, p, big.batch_size, big.data, n_state),
                   int(measured_per_member * p))
        if p > sizes[0] and (need > limit or time.perf_counter() - t_start > budget):
            break
        try:
            rate, peak = _steps_per_s(member, p, kind, budget / (2 * len(sizes)))
        except torch.OutOfMemoryError:
            break
        measured_per_member = max(measured_per_member, peak / p)
        rate *= p  # member-steps per second
        if p > sizes[0] and rate < best_rate * (1 + min_gain):
            break
        best_p, best_rate = p, rate
    return best_p

