"""Packed studies (``resources.pack``): the coordinator groups trials into packs, a worker trains
each pack as one fused model, and every member ends as its own ordinary trial.

The coordinator tests drive a real coordinator and a real worker in this process (no Ray), so a
pack's life is stepped through deterministically; the study tests run real studies on the
session's Ray over SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

import tuner
from tests.conftest import open_coordinator, small_spec
from tuner.execution._worker import TrialWorker
from tuner.samplers import trial_stage
from tuner.spec import parse_spec

WIDE_SPACE = {
    "lr": {"type": "float", "low": 1e-3, "high": 0.3, "scale": "log"},
    "batch_size": {"type": "int", "low": 64, "high": 128, "scale": "pow2"},
    "layers": {"type": "int", "low": 1, "high": 2},
    "hidden_units": {"type": "int", "low": 8, "high": 64, "scale": "log"},
}


def _packed_spec(**over: Any) -> dict:
    spec = small_spec(trials=12, params=WIDE_SPACE, fixed={"optimizer": "adam"})
    spec["resources"] = {"workers": 2, "cpus_per_trial": 1, "pack": 4}
    spec.update(over)
    return spec


def _worker(spec: dict) -> TrialWorker:
    worker = TrialWorker(1, False)
    worker.prepare(parse_spec(spec))
    return worker


def _attrs(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _key(params: dict[str, Any]) -> tuple[int, int]:
    return params["batch_size"], params["layers"]


# --- the coordinator, stepped in process --------------------------------------------------------
def test_packs_hold_one_key_and_the_study_ends_with_exactly_n(sqlite_url: str) -> None:
    spec = _packed_spec()
    coord = open_coordinator(spec, sqlite_url)
    worker = _worker(spec)
    packs = []
    results = None
    try:
        while True:
            batch = coord.next_pack("w0", results, 4)
            if not batch:
                break
            assert 1 <= len(batch) <= 4
            assert len({_key(a.params) for a in batch}) == 1, "one pack key per pack"
            packs.append(batch)
            results = worker.run_pack(batch, coord, "w0")
    finally:
        final = coord.close()
    assert final["used"] == 12 and final["running"] == 0
    assert sum(len(b) for b in packs) == 12 and max(len(b) for b in packs) > 1
    trials = _attrs(sqlite_url, spec["study"])
    assert len(trials) == 12 and all(t.state.is_finished() for t in trials)
    by_pack: dict[str, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for t in trials:
        assert isinstance(t.user_attrs["pack_size"], int)
        by_pack[t.user_attrs["pack_id"]].append(t)
    for members in by_pack.values():
        assert {m.user_attrs["pack_size"] for m in members} == {len(members)}
    assert sorted(len(m) for m in by_pack.values()) == sorted(len(b) for b in packs)


def test_a_lost_pack_worker_fails_every_member_and_they_run_again(sqlite_url: str) -> None:
    spec = _packed_spec(trials=8, params={**WIDE_SPACE, "batch_size": {"type": "categorical",
                                                                        "choices": [64]},
                                          "layers": {"type": "categorical", "choices": [2]}})
    coord = open_coordinator(spec, sqlite_url)
    worker = _worker(spec)
    try:
        lost = coord.next_pack("w0", None, 4)
        assert len(lost) == 4
        assert coord.worker_lost("w0") == lost[0].number
        progress = coord.progress()
        assert progress["requeued"] == 4 and progress["used"] == 0 and progress["running"] == 0
        rerun: list[dict[str, Any]] = []
        results = None
        while batch := coord.next_pack("w1", results, 4):
            rerun += [a.params for a in batch]
            results = worker.run_pack(batch, coord, "w1")
    finally:
        final = coord.close()
    assert final["used"] == 8 and final["requeued"] == 4
    assert all(a.params in rerun for a in lost), "the lost members' params ran again"
    trials = _attrs(sqlite_url, spec["study"])
    reasons = Counter(t.user_attrs.get("reason") for t in trials if t.state.name == "FAIL")
    assert reasons["worker_lost"] == 4
    assert sum(t.state.name in ("COMPLETE", "PRUNED") or (
        t.state.name == "FAIL" and t.user_attrs.get("reason") != "worker_lost") for t in trials) == 8


def test_coarse_to_fine_packs_never_span_a_stage(sqlite_url: str) -> None:
    spec = _packed_spec(trials=12, sampler={"kind": "coarse-to-fine", "stages": 3, "top_k": 2,
                                            "seed": 0})
    spec["params"] = {**WIDE_SPACE, "batch_size": {"type": "categorical", "choices": [64]}}
    coord = open_coordinator(spec, sqlite_url)
    worker = _worker(spec)
    stages = []
    results = None
    try:
        while batch := coord.next_pack("w0", results, 8):
            results = worker.run_pack(batch, coord, "w0")
            stages.append(batch)
    finally:
        coord.close()
    trials = {t.number: t for t in _attrs(sqlite_url, spec["study"])}
    assert len(trials) == 12
    for batch in stages:
        assert len({trial_stage(trials[a.number]) for a in batch}) == 1
    assert {trial_stage(t) for t in trials.values()} == {0, 1, 2}


def test_user_trainables_and_pack_1_take_the_single_trial_path(sqlite_url: str) -> None:
    spec = _packed_spec(trials=3)
    spec["resources"]["pack"] = 1
    assert _worker(spec)._pack == 1
    custom = {**spec, "trainable": "tests.test_pack_study:_constant", "dataset": None}
    custom["resources"] = {**spec["resources"], "pack": 8}
    assert _worker(custom)._pack == 1
    coord = open_coordinator(custom, sqlite_url)
    try:
        batch = coord.next_pack("w0", None, 8)
        assert len(batch) == 1, "a user trainable's trials are never packed"
    finally:
        coord.stop()
        coord.close()


def _constant(config: dict[str, Any], ctx: Any) -> float:
    return 0.5


def test_pack_auto_is_the_default_and_picks_a_size_on_this_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.execution import _worker as worker_module
    from tuner.training import _packed

    probes: list[dict[str, Any]] = []
    real = _packed.probe_pack_size

    def counted(config: Any, *args: Any, **kwargs: Any) -> int:
        probes.append(dict(config))
        return real(config, *args, **kwargs)

    monkeypatch.setattr(_packed, "probe_pack_size", counted)
    monkeypatch.setattr(worker_module, "_PROBED", {})
    spec = _packed_spec()
    del spec["resources"]["pack"]
    assert parse_spec(spec).resources.pack == "auto"
    worker = _worker(spec)
    assert 1 <= worker._pack <= 12 // (2 * 2) and len(probes) == 1  # capped: two packs per worker
    # a warm worker's next study of the same shape (another name, trial count) reuses the probe
    worker.prepare(parse_spec({**spec, "study": spec["study"] + "-2", "trials": 20}))
    assert len(probes) == 1
    # a study of another shape probes again, with its own typical member
    worker.prepare(parse_spec({**spec, "fixed": {"optimizer": "sgd"}}))
    assert len(probes) == 2 and probes[1]["optimizer"] == "sgd"
    # fewer than two trials per worker: nothing to pack, no probe
    assert _worker({**spec, "study": "small", "trials": 3})._pack == 1 and len(probes) == 2


def test_pack_auto_probes_speed_with_a_member_that_takes_time_and_memory_with_the_largest() -> None:
    """Speed: each searched number at the middle of its scale (widths at twice that: packs
    compute at their widest member), the first categorical choice, the fixed values as they are,
    and the smallest batch size (the trials that take the longest). Memory: every width, batch
    size and layer count at its largest. The size is capped so that each worker gets two packs
    (ten for TPE)."""
    from tuner.execution._worker import _pack_cap, _probe_configs

    spec = parse_spec(small_spec(params={
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
        "momentum": {"type": "float", "low": 0.9, "high": 0.999, "scale": "one_minus_log"},
        "batch_size": {"type": "int", "low": 32, "high": 512, "scale": "pow2"},
        "layers": {"type": "int", "low": 1, "high": 3},
        "hidden_units": {"type": "int", "low": 16, "high": 256, "scale": "log"},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "optimizer": {"type": "categorical", "choices": ["rmsprop", "adam"]},
    }, fixed={"activation": "tanh"}))
    speed, memory = _probe_configs(spec)
    common = {"lr": 1e-2, "momentum": 0.99, "dropout": 0.25, "optimizer": "rmsprop",
              "activation": "tanh"}
    assert speed == pytest.approx({**common, "batch_size": 32, "layers": 2, "hidden_units": 128})
    assert memory == pytest.approx({**common, "batch_size": 512, "layers": 3, "hidden_units": 256})
    listed = parse_spec(small_spec(params={
        "batch_size": {"type": "categorical", "choices": [128, 16, 64]},
        "hidden_units": {"type": "categorical", "choices": [32, 512]}}, fixed={"optimizer": "adam"}))
    speed, memory = _probe_configs(listed)
    assert (speed["batch_size"], speed["hidden_units"]) == (16, 32)
    assert (memory["batch_size"], memory["hidden_units"]) == (128, 512)
    assert _pack_cap(spec) == 6 // (2 * 2) == 1  # small_spec: 6 trials, 2 workers: no packs
    assert _pack_cap(parse_spec({**small_spec(), "trials": 200})) == 50
    assert _pack_cap(parse_spec({**small_spec(), "trials": 200,
                                 "sampler": {"kind": "tpe", "seed": 0}})) == 10


def test_under_auto_the_first_worker_decides_whether_the_study_packs(sqlite_url: str) -> None:
    """``pack: auto`` lets each worker's probe pick its size. The first worker to ask fixes the
    study's mode: one that asks for single trials starts the off-lock asker, and a worker asking
    for packs later gets single trials too (no pack attributes); one that asks for a pack makes
    the study pack."""
    spec = _packed_spec(trials=6)
    spec["resources"]["pack"] = "auto"
    single_first = open_coordinator(spec, sqlite_url)
    try:
        assert single_first._asker is None and single_first._packing is None
        first = single_first.next_trial("w0")
        assert first is not None and single_first._packing is False
        assert single_first._asker is not None and single_first._asker.is_alive()
        later = single_first.next_pack("w1", None, 4)
        assert len(later) == 1
    finally:
        single_first.stop()
        single_first.close()
    packed_first = open_coordinator({**spec, "study": spec["study"] + "-p"}, sqlite_url)
    try:
        pack = packed_first.next_pack("w0", None, 4)
        assert len(pack) > 1 and packed_first._packing is True and packed_first._asker is None
    finally:
        packed_first.stop()
        packed_first.close()
    trials = {t.number: t for t in _attrs(sqlite_url, spec["study"])}
    assert {first.number, later[0].number} <= set(trials)
    assert all("pack_size" not in t.user_attrs for t in trials.values())
    members = {a.number for a in pack}  # (the stop queued their params again, as WAITING trials)
    packed = [t for t in _attrs(sqlite_url, spec["study"] + "-p") if t.number in members]
    assert len(packed) == len(pack)
    assert {(t.user_attrs["pack_size"], t.user_attrs["pack_id"]) for t in packed} == \
        {(len(pack), packed[0].user_attrs["pack_id"])}


# --- real studies on Ray ------------------------------------------------------------------------
@pytest.mark.usefixtures("ray_session")
def test_packed_study_end_to_end(storage_url: str) -> None:
    # lr up to 0.02 and a seed per trial: Adam at lr 0.3 from a random init sometimes diverges,
    # and a diverged member rightly has no full curve; this test is about the packed path
    spec = _packed_spec(trials=12, epochs=3, seed=0,
                        params={**WIDE_SPACE, "lr": {**WIDE_SPACE["lr"], "high": 0.02}})
    study = tuner.submit(spec, storage=storage_url)
    counts = study.counts()
    assert counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"] == 12
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0
    trials = _attrs(storage_url, spec["study"])
    assert len(trials) == 12
    sizes = Counter(t.user_attrs["pack_id"] for t in trials)
    assert max(sizes.values()) > 1, "some trials trained packed"
    for t in trials:
        assert t.user_attrs["pack_size"] == sizes[t.user_attrs["pack_id"]]
        assert sorted(t.intermediate_values) == [1, 2, 3], (t.number, t.state, t.user_attrs)
    by_size = Counter(t.user_attrs["pack_size"] for t in trials if t.user_attrs["pack_size"] > 1)
    assert study.pack_sizes() == dict(sorted(by_size.items()))  # one query, on both databases
    for row in study.trials():
        curve = study.curve(row.number)
        assert list(curve["epoch"]) == [1, 2, 3]
        assert {"train_loss", "val_loss", "val_accuracy"} <= set(curve.columns)


@pytest.mark.usefixtures("ray_session")
def test_a_diverging_member_fails_only_itself(sqlite_url: str) -> None:
    spec = small_spec(
        trials=4, epochs=3, sampler={"kind": "grid", "seed": 0},
        params={"lr": {"type": "categorical", "choices": [1.0e6, 0.05]},
                "hidden_units": {"type": "categorical", "choices": [16, 32]}},
        fixed={"optimizer": "sgd", "momentum": 0.9})
    spec["resources"] = {"workers": 1, "cpus_per_trial": 1, "pack": 4}
    study = tuner.submit(spec, storage=sqlite_url)
    trials = _attrs(sqlite_url, spec["study"])
    assert len({t.user_attrs["pack_id"] for t in trials}) == 1, "all four trained as one pack"
    for t in trials:
        assert t.user_attrs["pack_size"] == 4
        if t.params["lr"] == 1.0e6:
            assert t.state.name == "FAIL" and t.user_attrs["reason"] == "diverged"
        else:
            assert t.state.name == "COMPLETE" and t.value > 0.5
            assert sorted(t.intermediate_values) == [1, 2, 3]
    assert study.counts()["FAIL"] == 2


@pytest.mark.usefixtures("ray_session")
def test_packed_curves_equal_pack_1_curves(sqlite_url: str) -> None:
    """Dropout 0, one seed per trial number: a member's curve is its solo run's curve."""
    def run(pack: int) -> dict[tuple[float, int], list[dict[str, float]]]:
        spec = small_spec(
            trials=4, epochs=3, seed=7, sampler={"kind": "grid", "seed": 0},
            params={"lr": {"type": "categorical", "choices": [0.003, 0.03]},
                    "hidden_units": {"type": "categorical", "choices": [16, 48]}},
            fixed={"optimizer": "adam", "dropout": 0.0, "batch_size": 64, "layers": 2})
        spec["resources"] = {"workers": 1, "cpus_per_trial": 1, "pack": pack}
        study = tuner.submit(spec, storage=sqlite_url)
        out = {}
        for row in study.trials():
            curve = study.curve(row.number)
            out[(row.params["lr"], row.params["hidden_units"])] = (
                row.number, curve[["train_loss", "val_loss", "val_accuracy"]].to_dict("records"))
        return out

    solo, packed = run(1), run(4)
    assert solo.keys() == packed.keys() and len(solo) == 4
    for key, (number, points) in solo.items():
        assert packed[key][0] == number, "same trial number, hence the same seed"
        for a, b in zip(points, packed[key][1], strict=True):
            for metric, value in a.items():
                assert math.isclose(value, b[metric], rel_tol=1e-4, abs_tol=1e-6), (key, metric)


def test_a_timed_out_member_fails_alone_and_its_worker_is_kept(sqlite_url: str) -> None:
    """One member runs past ``trial_timeout_s``: it alone fails ``timeout`` (its report() answers
    stop, so the fused model masks it out), and the worker is not killed while others train."""
    import time

    spec = _packed_spec(trials=4, epochs=3, trial_timeout_s=3600,
                        params={**WIDE_SPACE, "batch_size": {"type": "categorical", "choices": [64]},
                                "layers": {"type": "categorical", "choices": [2]}})
    coord = open_coordinator(spec, sqlite_url)
    worker = _worker(spec)
    try:
        batch = coord.next_pack("w0", None, 4)
        assert len(batch) == 4
        late = batch[1].trial_id
        coord._running[late].started -= 7200  # as if it had started two hours ago
        coord._expire(time.monotonic())
        assert coord.take_timed_out() == [], "the other members still run on w0"
        results = worker.run_pack(batch, coord, "w0")
        assert coord.next_pack("w0", results, 4) == []
    finally:
        final = coord.close()
    assert final["used"] == 4 and final["failed"] == 1 and final["requeued"] == 0
    by_id = {r.trial_id: r for r in results}
    assert by_id[late].state == "PRUNED" and len(by_id[late].curve) == 1, "stopped after epoch 1"
    assert all(r.state == "COMPLETE" and len(r.curve) == 3 for r in results if r.trial_id != late)
    trials = {t.number: t for t in _attrs(sqlite_url, spec["study"])}
    late_trial = trials[next(a.number for a in batch if a.trial_id == late)]
    assert late_trial.state.name == "FAIL" and late_trial.user_attrs["reason"] == "timeout"
    assert sum(t.state.name == "COMPLETE" for t in trials.values()) == 3


def test_workers_with_different_pack_sizes_share_one_budget(sqlite_url: str) -> None:
    """``pack: auto`` may give workers different sizes, down to 1 (the single-trial path): the
    trials one worker's packs asked ahead still count, and the study ends with exactly N."""
    spec = _packed_spec(trials=10)
    coord = open_coordinator(spec, sqlite_url)
    worker = _worker(spec)
    try:
        pack = coord.next_pack("w0", None, 4)  # asks the whole budget ahead, sends up to 4
        assert pack and coord._held
        single = coord.next_trial("w1")
        assert single is not None and single.trial_id not in {a.trial_id for a in pack}
        results = {"w0": worker.run_pack(pack, coord, "w0"),
                   "w1": [worker.run_one(single, coord, "w1")]}
        turn = 0
        while results:
            wid = sorted(results)[turn % len(results)]
            turn += 1
            if wid == "w0":
                batch = coord.next_pack("w0", results["w0"], 4)
                results["w0"] = worker.run_pack(batch, coord, "w0") if batch else None
            else:
                a = coord.next_trial("w1", results["w1"][0])
                results["w1"] = [worker.run_one(a, coord, "w1")] if a else None
            results = {k: v for k, v in results.items() if v is not None}
    finally:
        final = coord.close()
    assert final["used"] == 10 and final["running"] == 0
    assert len(_attrs(sqlite_url, spec["study"])) == 10


@pytest.mark.usefixtures("ray_session")
def test_the_cli_says_how_trials_were_packed(tmp_path: Any, sqlite_url: str) -> None:
    """With packing on by default, the closing line says how many trials trained in packs and
    the largest pack; a study whose trials all ran alone says nothing about packs."""
    import yaml
    from typer.testing import CliRunner

    from tuner.cli import app

    runner = CliRunner()
    packed, alone = _packed_spec(), _packed_spec(study="alone")
    alone["resources"] = {**alone["resources"], "pack": 1}
    lines = {}
    for spec in (packed, alone):
        path = tmp_path / f"{spec['study']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        result = runner.invoke(app, ["submit", str(path), "--storage", sqlite_url, "--quiet"])
        assert result.exit_code == 0, result.output
        lines[spec["study"]] = next(line for line in result.stderr.splitlines()
                                    if line.startswith(f"study '{spec['study']}'"))
    sizes = tuner.load_study(packed["study"], sqlite_url).pack_sizes()
    assert sizes and max(sizes) <= 4 and sum(sizes.values()) <= 12
    assert lines[packed["study"]].endswith(
        f"; {sum(sizes.values())} trained in packs of up to {max(sizes)} trials (resources.pack)")
    assert tuner.load_study("alone", sqlite_url).pack_sizes() == {}
    assert "pack" not in lines["alone"]
