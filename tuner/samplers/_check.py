"""Building a study's search before Ray starts, so ``tuner validate`` catches what would fail.

A spec that validates must fail only for runtime reasons (divergence, memory, the cluster), so
the search is built here exactly as the coordinator builds it: the spec's JSON round trip, each
parameter's Optuna distribution, the sampler and pruner, and one trial asked of an in-memory
study. The grid is capped (Optuna's grid sampler materialises the whole product).
"""

from __future__ import annotations

import math
import warnings

import optuna

from tuner._errors import SpecError
from tuner._text import one_line
from tuner.pruners import create_pruner
from tuner.samplers._factory import create_sampler, grid_search_space
from tuner.spec import StudySpec, parse_spec, to_distribution

__all__ = ["MAX_GRID", "check_search"]

MAX_GRID = 100_000
"""Most grid points: Optuna's GridSampler holds every one in memory (10 million took 1 GB)."""


def check_search(spec: StudySpec) -> None:
    """Build the study's search the way the coordinator does; any failure is one ``SpecError``."""
    if parse_spec(spec.to_json_dict()).to_json_dict() != spec.to_json_dict():
        raise SpecError("spec", "changes when stored as JSON, so workers would see another "
                        "spec; use plain numbers and text")
    if spec.sampler.kind == "grid":
        sizes = {name: len(values) for name, values in grid_search_space(spec).items()}
        total = math.prod(sizes.values())
        if total > MAX_GRID:
            biggest = max(sizes, key=lambda n: sizes[n])
            raise SpecError("sampler.kind", f"grid of {total:,} points is over the {MAX_GRID:,} "
                            f"cap (Optuna holds every point in memory; {biggest} alone has "
                            f"{sizes[biggest]}); lower grid_points or use random/tpe")
    distributions = {}
    for name, param in spec.params.items():
        try:
            distributions[name] = to_distribution(param)
        except (ValueError, TypeError, OverflowError) as e:
            raise SpecError(f"params.{name}", f"Optuna refuses it: {_short(e)}; fix its "
                            "bounds or step") from None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature notes; the coordinator logs them
            study = optuna.create_study(
                storage=optuna.storages.InMemoryStorage(), sampler=create_sampler(spec),
                pruner=create_pruner(spec), direction=spec.objective.direction,
                study_name=spec.study)
            study.ask(distributions)
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001 - a probe: whatever fails here would fail the study
        raise SpecError("sampler", f"the {spec.sampler.kind} sampler cannot draw a trial from "
                        f"this spec: {_short(e)}; check params and sampler settings") from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def _short(e: BaseException) -> str:
    return one_line(f"{type(e).__name__}: {e}", 90)
