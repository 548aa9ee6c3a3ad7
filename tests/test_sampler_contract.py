"""tuner's samplers against Optuna's own sampler contract (``optuna.testing.pytest_samplers``).

Every sampler that ``tuner.samplers.create_sampler`` builds from tuner's own classes runs the
basic contract (any distribution, asked directly or through ``study.optimize``), with and without
a spec: the spec'd fixtures name their parameters ``x`` and ``y`` with distributions that some of
the contract's suggestions match exactly (drawn on the spec's scale) and most do not (drawn from
what was asked). Not run, and why:

- ``RelativeSamplerTestCase``: tuner's samplers have no joint search space by design
  (``infer_relative_search_space`` is ``{}``, so Optuna never calls ``sample_relative`` with
  parameters); the contract's relative tests pass a search space in directly and expect draws.
- ``GridSampler`` and TPE: Optuna's classes (tuner's grid only turns off ``study.stop``); Optuna
  tests them, and a grid refuses any parameter outside it by design.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    SingleOnlySamplerTestCase,
)

from tuner.samplers import CoarseToFineSampler, ScaledRandomSampler, same_distribution
from tuner.spec import CategoricalParam, FloatParam, IntParam, ParamSpec, to_distribution

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOG_SPACE: dict[str, ParamSpec] = {  # x: suggest_float(x, 1e-7, 10, log=True); y: categorical
    "x": FloatParam(type="float", low=1e-7, high=10.0, scale="log"),
    "y": CategoricalParam(type="categorical", choices=[0, 1, 2]),
}
C2F_SPACE: dict[str, ParamSpec] = {  # x: suggest_float(x, 0, 10, step=0.5); y: suggest_int(y, 1, 10, log)
    "x": FloatParam(type="float", low=0.0, high=10.0, step=0.5),
    "y": IntParam(type="int", low=1, high=10, scale="log"),
}
LINEAR_SPACE: dict[str, ParamSpec] = {  # x: suggest_float(x, 0, 10); y: suggest_int(y, 0, 10)
    "x": FloatParam(type="float", low=0.0, high=10.0),
    "y": IntParam(type="int", low=0, high=10),
}
RANDOM: dict[str, Callable[[], BaseSampler]] = {
    "random": lambda: ScaledRandomSampler({}, seed=0),
    "random-log-spec": lambda: ScaledRandomSampler(LOG_SPACE, seed=0),
}
COARSE_TO_FINE: dict[str, Callable[[], BaseSampler]] = {
    # 9 trials in 3 stages: the contract's 10- and 20-trial studies zoom twice
    "c2f-qmc": lambda: CoarseToFineSampler(C2F_SPACE, n_trials=9, stages=3, top_k=2, seed=0),
    "c2f-uniform": lambda: CoarseToFineSampler(
        LINEAR_SPACE, n_trials=9, stages=3, top_k=2, seed=0, qmc=False
    ),
}


@pytest.fixture(autouse=True)
def _quiet_off_spec_warnings() -> Any:
    """Most contract draws are deliberately off the spec; the warning each first one gives is
    checked in its own test below."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="parameter '.*' was asked as", category=UserWarning)
        yield


class TestScaledRandomSampler(BasicSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture(params=sorted(RANDOM))
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], BaseSampler]:
        return RANDOM[request.param]


class TestCoarseToFineSampler(BasicSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture(params=sorted(COARSE_TO_FINE))
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], BaseSampler]:
        return COARSE_TO_FINE[request.param]


def test_the_spec_fixtures_match_some_contract_suggestions() -> None:
    """Else the spec'd fixtures above would only ever exercise the off-spec path."""
    assert same_distribution(to_distribution(LOG_SPACE["x"]), FloatDistribution(1e-7, 10, log=True))
    assert same_distribution(to_distribution(LOG_SPACE["y"]), CategoricalDistribution([0, 1, 2]))
    assert same_distribution(to_distribution(C2F_SPACE["x"]), FloatDistribution(0, 10, step=0.5))
    assert same_distribution(to_distribution(C2F_SPACE["y"]), IntDistribution(1, 10, log=True))
    assert same_distribution(to_distribution(LINEAR_SPACE["x"]), FloatDistribution(0, 10))
    assert same_distribution(to_distribution(LINEAR_SPACE["y"]), IntDistribution(0, 10))


# --- the asked distribution wins over the spec -----------------------------------------------------
SPEC: dict[str, ParamSpec] = {
    "lr": FloatParam(type="float", low=1e-4, high=1.0, scale="log"),
    "beta": FloatParam(type="float", low=0.9, high=0.999, scale="one_minus_log"),
    "batch_size": IntParam(type="int", low=32, high=512, scale="pow2"),
    "layers": IntParam(type="int", low=1, high=4),
    "act": CategoricalParam(type="categorical", choices=["relu", "tanh"]),
}
ALL: dict[str, Callable[[], BaseSampler]] = {
    "random": lambda: ScaledRandomSampler(SPEC, seed=1),
    "c2f": lambda: CoarseToFineSampler(SPEC, n_trials=6, stages=3, top_k=2, seed=1),
}


def _off_spec_objective(trial: optuna.Trial) -> float:
    """Every spec name asked with a distribution other than the spec's."""
    x = trial.suggest_float("lr", 5.0, 6.0)  # outside the spec's [1e-4, 1]
    b = trial.suggest_categorical("batch_size", [32, 64, 128])  # a pow2 int in the spec
    beta = trial.suggest_float("beta", 0.5, 0.6, log=True)
    layers = trial.suggest_int("layers", 10, 20, step=5)
    act = trial.suggest_categorical("act", ["tanh", "relu"])  # same choices, other order
    assert 5.0 <= x <= 6.0 and b in (32, 64, 128) and 0.5 <= beta <= 0.6
    assert layers in (10, 15, 20) and act in ("tanh", "relu")
    return x + b + beta + layers


@pytest.mark.parametrize("kind", sorted(ALL))
def test_a_distribution_other_than_the_spec_is_drawn_as_asked(kind: str) -> None:
    study = optuna.create_study(sampler=ALL[kind]())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(_off_spec_objective, n_trials=8)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    off = [str(w.message) for w in caught if "was asked as" in str(w.message)]
    assert sorted(m.split("'")[1] for m in off) == sorted(
        ["lr", "batch_size", "beta", "layers", "act"]
    ), "one warning per parameter, not per draw"
    assert "suggest exactly the spec's distribution" in off[0]


@pytest.mark.parametrize("kind", sorted(ALL))
def test_the_spec_distribution_is_drawn_on_the_spec_scale(kind: str) -> None:
    study = optuna.create_study(sampler=ALL[kind]())
    dists = {name: to_distribution(p) for name, p in SPEC.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no off-spec warning when the spec is asked for
        for _ in range(12):
            trial = study.ask(dists)
            study.tell(trial, math.log10(trial.params["lr"]))
    sizes = {t.params["batch_size"] for t in study.trials}
    assert sizes <= {32, 64, 128, 256, 512} and all(isinstance(s, int) for s in sizes)
    assert all(0.9 <= t.params["beta"] <= 0.999 for t in study.trials)


def test_same_distribution_compares_everything_that_changes_the_legal_values() -> None:
    f = FloatDistribution(0.0, 1.0)
    assert same_distribution(f, FloatDistribution(0, 1))
    assert not same_distribution(f, FloatDistribution(0.0, 2.0))
    assert not same_distribution(FloatDistribution(1e-3, 1.0), FloatDistribution(1e-3, 1.0, log=True))
    assert not same_distribution(f, FloatDistribution(0.0, 1.0, step=0.5))
    assert not same_distribution(IntDistribution(0, 10), IntDistribution(0, 10, step=2))
    assert not same_distribution(IntDistribution(0, 1), FloatDistribution(0.0, 1.0))
    c = CategoricalDistribution([1, "a"])
    assert same_distribution(c, CategoricalDistribution([1, "a"]))
    assert not same_distribution(c, CategoricalDistribution(["a", 1]))
    assert not same_distribution(CategoricalDistribution([True]), CategoricalDistribution([1]))
    assert not same_distribution(CategoricalDistribution([1]), CategoricalDistribution([1, 2]))


def test_coarse_to_fine_refuses_a_multi_objective_study_at_every_entry_point() -> None:
    sampler = CoarseToFineSampler(SPEC, n_trials=6, seed=0)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    with pytest.raises(ValueError, match="ranks trials by one objective.*ScaledRandomSampler"):
        study.ask()
    trial = study._storage.get_trial(study._storage.create_new_trial(study._study_id))
    for call in (
        lambda: sampler.sample_relative(study, trial, {}),
        lambda: sampler.sample_independent(study, trial, "lr", to_distribution(SPEC["lr"])),
        lambda: sampler.sample_independent(study, trial, "other", FloatDistribution(0.0, 1.0)),
    ):
        with pytest.raises(ValueError, match="ranks trials by one objective"):
            call()


def test_scaled_random_runs_a_multi_objective_study() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=ALL["random"]())
    dists = {name: to_distribution(p) for name, p in SPEC.items()}
    for _ in range(5):
        trial = study.ask(dists)
        study.tell(trial, [trial.params["lr"], trial.params["beta"]])
    assert len(study.best_trials) >= 1
