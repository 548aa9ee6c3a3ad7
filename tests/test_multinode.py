"""A three-node Ray cluster on one machine (``ray.cluster_utils.Cluster``): a CPU-only head and
two nodes that declare one GPU each. Trials spread over the nodes; GPU trials land only on GPU
nodes; fractional GPUs (0.5) pack two trials per GPU and never more.

The cluster runs in a child process: it is a Ray instance of its own, and the test session's
shared local Ray must stay as it is for the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


_SLOW = """
import time
from tuner.training import resolve_trainable

_mlp = resolve_trainable("builtin:mlp")

def fit(config, ctx):
    out = _mlp(config, ctx)
    time.sleep(1.5)  # long enough that every worker is up before the trials run out
    return out
"""


def _spec(name: str, trials: int, resources: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from conftest import small_spec

    params = {"lr": {"type": "float", "low": 1e-3, "high": 2e-2, "scale": "log"}}
    return small_spec(name, trials=trials, epochs=3, params=params, resources=resources,
                      trainable="slow_mlp:fit")


def _child(out: str, db: str) -> None:
    """Build the cluster, run a CPU study and a GPU study on it, write what ran where."""
    import logging

    import ray
    from ray.cluster_utils import Cluster

    import tuner

    Path("slow_mlp.py").write_text(_SLOW)  # the workers import it from the driver's directory
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=2, num_gpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    result: dict[str, Any] = {"nodes": nodes}
    url = f"sqlite:///{db}"
    for kind, trials, resources in (
        ("cpu", 20, {"workers": 5, "cpus_per_trial": 1}),
        ("gpu", 12, {"workers": 4, "cpus_per_trial": 0.5, "gpus_per_trial": 0.5}),
    ):
        name = f"{kind}-{uuid.uuid4().hex[:6]}"
        tuner.submit(_spec(name, trials, resources), storage=url)
        frozen = tuner.load_study(name, url).to_optuna().trials
        result[kind] = [{
            "number": t.number, "state": t.state.name, "node": t.user_attrs.get("ray_node"),
            "gpu_ids": t.user_attrs.get("gpu_ids", []),
            "start": t.datetime_start.timestamp(), "end": t.datetime_complete.timestamp(),
        } for t in frozen]
        result[f"{kind}_records"] = [
            {"host": r.host, "device": r.device} for r in tuner.load_study(name, url).trials()]
    Path(out).write_text(json.dumps(result))
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("cluster")
    out = tmp / "result.json"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__)), str(out), str(tmp / "cluster.db")],
        capture_output=True, text=True, timeout=900, cwd=tmp,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    return dict(json.loads(out.read_text()))


def test_trials_spread_over_every_node(cluster_run: dict[str, Any]) -> None:
    trials = cluster_run["cpu"]
    assert len(trials) == 20 and all(t["state"] == "COMPLETE" for t in trials)
    used = {t["node"] for t in trials}
    # 5 one-CPU workers need all 5 CPUs of the cluster: 1 on the head, 2 on each GPU node.
    assert used == set(cluster_run["nodes"])
    assert all(r["host"] and r["device"] == "cpu" for r in cluster_run["cpu_records"])


def test_gpu_trials_only_on_gpu_nodes_and_packing_never_exceeds_the_gpus(
        cluster_run: dict[str, Any]) -> None:
    nodes = cluster_run["nodes"]
    trials = cluster_run["gpu"]
    assert len(trials) == 12 and all(t["state"] == "COMPLETE" for t in trials)
    gpu_nodes = {n for n, res in nodes.items() if res.get("GPU", 0) > 0}
    assert {t["node"] for t in trials} <= gpu_nodes
    assert all(t["gpu_ids"] == ["0"] for t in trials)  # Ray's assignment: each node's one GPU
    for node in gpu_nodes:
        mine = [t for t in trials if t["node"] == node]
        events = sorted([(t["start"], 1) for t in mine] + [(t["end"], -1) for t in mine],
                        key=lambda e: (e[0], e[1]))
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        assert peak * 0.5 <= nodes[node]["GPU"], (node, peak)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
