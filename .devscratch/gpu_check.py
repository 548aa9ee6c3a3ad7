"""Throwaway device check for tuner.training on CUDA (deleted after use)."""
import statistics, sys, time, types
tuner = types.ModuleType("tuner"); tuner.__path__ = ["tuner"]; sys.modules["tuner"] = tuner  # skip tuner/__init__ deps
try:
    import optuna  # noqa
except ImportError:
    m = types.ModuleType("optuna")
    class TrialPruned(Exception): pass
    m.TrialPruned = TrialPruned; sys.modules["optuna"] = m
import torch, torch.nn.functional as F
from torch import nn
from tuner._errors import Diverged
from tuner.training import TrialContext, fit_mlp, load_dataset, OPTIMIZERS, LR_DECAYS, build_optimizer, build_mlp
dev = torch.device("cuda")
print(torch.__version__, torch.cuda.get_device_name(0))
d = load_dataset({"name": "digits"}, dev)
assert load_dataset({"name": "digits"}, torch.device("cuda:0")) is d and d.x_train.is_cuda
E = 20
def ctx(ds={"name": "digits"}, metric="val_accuracy", direction="maximize", epochs=E, **kw):
    return TrialContext(device=dev, epochs=epochs, objective_metric=metric, direction=direction, dataset=ds, seed=0, **kw)
def hand(fused):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).to(dev)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=fused or None)
    x, y, n = d.x_train, d.y_train, d.x_train.shape[0]
    for _ in range(E):
        m.train(); p = torch.randperm(n, device=dev); tot = torch.zeros((), device=dev)
        for i in range(0, n, 64):
            idx = p[i:i + 64]; opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x[idx]), y[idx]); loss.backward(); opt.step(); tot += loss.detach() * idx.shape[0]
        m.eval()
        with torch.inference_mode():
            acc = (m(d.x_val).argmax(1) == d.y_val).float().mean().item()
        _ = (tot / n).item()
    return acc
runs = {"hand adam": lambda: hand(False), "hand adam fused": lambda: hand(True),
        "fit_mlp": lambda: fit_mlp({"lr": 1e-3}, ctx())["val_accuracy"],
        "fit_mlp bf16": lambda: fit_mlp({"lr": 1e-3, "amp": "bf16"}, ctx())["val_accuracy"]}
for f in runs.values(): f()
res = {k: [] for k in runs}; acc = {}
for _ in range(5):
    for k, f in runs.items():
        torch.cuda.synchronize(); t = time.perf_counter(); acc[k] = f(); torch.cuda.synchronize()
        res[k].append(d.x_train.shape[0] * E / (time.perf_counter() - t))
for k, v in res.items():
    print(f"{k:16s} median {statistics.median(v):8.0f} samples/s (min {min(v):.0f} max {max(v):.0f}) acc {acc[k]:.3f}")
r = fit_mlp({"lr": 3e-3, "amp": "bf16", "batch_norm": True, "dropout": 0.1}, ctx({"name": "diabetes"}, "val_r2", epochs=10))
print("diabetes bf16 bn", {k: round(v, 3) for k, v in r.items()})
for o in OPTIMIZERS:
    opt = build_optimizer({"optimizer": o}, build_mlp({}, 4, 2).to(dev).parameters())
    c = ctx(epochs=1); fit_mlp({"optimizer": o}, c)
    print(o, "fused" if opt.defaults.get("fused") else "foreach" if opt.defaults.get("foreach") else "loop", round(c.curve[0]["val_accuracy"], 3))
for dcy in LR_DECAYS:
    fit_mlp({"lr_decay": dcy}, ctx(epochs=2))
try:
    fit_mlp({"optimizer": "sgd", "lr": 1e3}, ctx(epochs=5)); print("NO DIVERGENCE?!")
except Diverged as e:
    print("diverged ok:", e)
print("GPU CHECK OK")
