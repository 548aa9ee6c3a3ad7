"""Each scale's distribution, measured on real draws from the sampler tuner uses."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from tuner.samplers import ScaledRandomSampler, create_sampler, grid_search_space
from tuner.spec import (
    FloatParam,
    IntParam,
    from_internal,
    grid_values,
    internal_bounds,
    load_spec,
    to_distribution,
    to_internal,
)
from tests.conftest import SPACES

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _draws(params: dict, n: int = 400, seed: int = 0) -> list[dict]:
    sampler = ScaledRandomSampler(params, seed=seed)
    study = optuna.create_study(sampler=sampler)
    dists = {k: to_distribution(p) for k, p in params.items()}
    return [study.ask(dists).params for _ in range(n)]


def test_one_minus_log_puts_half_the_draws_above_0_99() -> None:
    beta = FloatParam(type="float", low=0.9, high=0.999, scale="one_minus_log")
    values = np.array([d["beta"] for d in _draws({"beta": beta})])
    assert values.min() >= 0.9 and values.max() <= 0.999
    assert 0.42 <= (values > 0.99).mean() <= 0.58  # uniform in log10(1-beta) over [-3, -1]
    # a linear draw would put only ~9% there: the scale is what makes the difference
    assert (values > 0.99).mean() > 4 * (0.999 - 0.99) / (0.999 - 0.9)


def test_log_scale_spends_a_quarter_per_decade() -> None:
    lr = FloatParam(type="float", low=1e-4, high=1.0, scale="log")
    values = np.array([d["lr"] for d in _draws({"lr": lr})])
    counts, _ = np.histogram(np.log10(values), bins=[-4, -3, -2, -1, 0])
    assert all(70 <= c <= 130 for c in counts), counts  # 100 expected per decade


def test_pow2_draws_only_powers_of_two_evenly() -> None:
    bs = IntParam(type="int", low=32, high=512, scale="pow2")
    values = [d["bs"] for d in _draws({"bs": bs})]
    assert set(values) == {32, 64, 128, 256, 512}
    assert min(values.count(v) for v in set(values)) >= 50  # 80 expected each


def test_int_linear_covers_every_value() -> None:
    layers = IntParam(type="int", low=1, high=4)
    values = [d["layers"] for d in _draws({"layers": layers})]
    assert set(values) == {1, 2, 3, 4}


def test_stored_value_is_beta_itself_through_plain_optuna(tmp_path) -> None:
    spec = load_spec(SPACES / "digits_mlp.yaml")
    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=url, study_name="s", sampler=create_sampler(spec))
    dists = {k: to_distribution(p) for k, p in spec.params.items()}
    for _ in range(20):
        t = study.ask(dists)
        study.tell(t, 0.0)
    loaded = optuna.load_study(study_name="s", storage=url)
    momenta = [t.params["momentum"] for t in loaded.trials]
    assert all(0.9 <= m <= 0.999 for m in momenta)
    assert all(t.params["batch_size"] in (32, 64, 128, 256, 512) for t in loaded.trials)


@pytest.mark.parametrize("param,value", [
    (FloatParam(type="float", low=1e-4, high=1, scale="log"), 3e-3),
    (FloatParam(type="float", low=0.9, high=0.999, scale="one_minus_log"), 0.99),
    (IntParam(type="int", low=32, high=512, scale="pow2"), 128),
    (FloatParam(type="float", low=0, high=0.5), 0.25),
])
def test_internal_round_trip(param, value) -> None:
    assert from_internal(param, to_internal(param, value)) == pytest.approx(value)
    lo, hi = internal_bounds(param)
    assert lo <= to_internal(param, value) <= hi


def test_one_minus_log_bounds_are_in_log10_of_one_minus_beta() -> None:
    lo, hi = internal_bounds(FloatParam(type="float", low=0.9, high=0.999, scale="one_minus_log"))
    assert (lo, hi) == pytest.approx((-3.0, -1.0))


def test_grid_is_evenly_spaced_on_the_scale() -> None:
    lr = grid_values(FloatParam(type="float", low=1e-4, high=1, scale="log"), 5)
    assert lr == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    beta = grid_values(FloatParam(type="float", low=0.9, high=0.999, scale="one_minus_log"), 3)
    assert beta == pytest.approx([0.9, 0.99, 0.999])
    assert grid_values(IntParam(type="int", low=32, high=128, scale="pow2")) == [32, 64, 128]


def test_grid_sampler_visits_distinct_points() -> None:
    spec = load_spec(SPACES / "digits_mlp.yaml", **{"sampler.kind": "grid"})
    space = grid_search_space(spec)
    study = optuna.create_study(sampler=create_sampler(spec))
    dists = {k: to_distribution(p) for k, p in spec.params.items()}
    seen = set()
    for _ in range(30):
        t = study.ask(dists)
        for k, v in t.params.items():
            assert v in space[k]
        seen.add(tuple(sorted(t.params.items())))
        study.tell(t, 0.0)
    assert len(seen) == 30
    assert math.prod(len(v) for v in space.values()) >= 30


def test_same_seed_same_configurations() -> None:
    lr = {"lr": FloatParam(type="float", low=1e-4, high=1, scale="log")}
    assert _draws(lr, 10, seed=3) == _draws(lr, 10, seed=3)
    assert _draws(lr, 10, seed=3) != _draws(lr, 10, seed=4)
