"""Coarse to fine: sample the whole box, zoom into where the best trials sit, sample densely there.

The trial budget is split into stages. Stage 0 draws from the whole declared range; the box of
every later stage is the bounding box of the ``top_k`` best finished trials of all earlier stages,
per parameter and in that parameter's own scale (``tuner.spec._scales``: log10 for ``log``,
log10(1-x) for ``one_minus_log``, the exponent for ``pow2``; categoricals keep the choices that the
top trials used), widened by ``margin`` and to at least ``min_width`` of the full range, and never
outside it. Within a stage, draws are uniform (or Sobol) inside the box.

Nothing lives in the sampler object: the stage of a trial follows from its position in the study,
and each stage's box is computed once, the first time it is needed, and stored as the study user
attribute ``c2f_box_<stage>``; afterwards every process reads the stored box. So any number of
workers, and a resumed study, agree on the stages and the boxes.
"""

from __future__ import annotations

import bisect
import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner._reasons import INFRA_REASONS
from tuner.samplers._base import ScaleAwareSampler
from tuner.spec import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    from_internal,
    internal_bounds,
    to_internal,
)

__all__ = [
    "BOX_ATTR", "REQUEUED_REASONS", "Box", "CoarseToFineSampler", "full_box", "place", "split_trials",
    "zoom",
]  # fmt: skip

Box = dict[str, tuple[float, float] | list[Any]]
"""Per parameter: ``(lo, hi)`` in its internal coordinate, or the list of kept categories."""

BOX_ATTR = "c2f_box_{stage}"
REQUEUED_REASONS = INFRA_REASONS
"""Failures that the coordinator re-queues (``tuner._reasons``): they use no stage budget."""
_EPS = 1e-9


def split_trials(n_trials: int, stages: int) -> list[int]:
    """Trials per stage, as equal as possible (earlier stages take the remainder), none empty."""
    stages = max(1, min(stages, n_trials))
    base, extra = divmod(n_trials, stages)
    return [base + (1 if s < extra else 0) for s in range(stages)]


def full_box(space: Mapping[str, ParamSpec]) -> Box:
    """Stage 0's box: every parameter's whole declared range."""
    return {
        name: list(p.choices) if isinstance(p, CategoricalParam) else internal_bounds(p)
        for name, p in space.items()
    }


def zoom(
    space: Mapping[str, ParamSpec],
    top: Sequence[Mapping[str, Any]],
    previous: Box,
    *,
    margin: float,
    min_width: float,
) -> Box:
    """The box around ``top`` (the params of the best trials), per parameter.

    Numeric: ``[min, max]`` of the top values in internal coordinates, widened on each side by
    ``margin`` x the width of ``previous`` (the box the last stage sampled, i.e. the resolution at
    which the top trials were found) and clipped to the full range; then, if narrower than
    ``min_width`` x the full range, widened to that around its centre (shifted back inside the
    range at a bound); on discrete scales, shrunk to the legal values inside. Categorical: the
    choices the top trials used, in declared order. A parameter no top trial has keeps ``previous``.
    """
    box: Box = {}
    for name, param in space.items():
        values = [t[name] for t in top if name in t]
        if isinstance(param, CategoricalParam):
            kept = [c for c in param.choices if any(_same(c, v) for v in values)]
            box[name] = kept or list(previous[name])
            continue
        if not values:
            box[name] = previous[name]
            continue
        full_lo, full_hi = internal_bounds(param)
        xs = [min(max(to_internal(param, v), full_lo), full_hi) for v in values]
        prev_lo, prev_hi = previous[name]
        pad = margin * (float(prev_hi) - float(prev_lo))
        lo, hi = max(min(xs) - pad, full_lo), min(max(xs) + pad, full_hi)
        short = min_width * (full_hi - full_lo) - (hi - lo)
        if short > 0:  # centred on the top values, shifted back inside the range if needed
            lo, hi = lo - short / 2, hi + short / 2
            shift = max(full_lo - lo, 0.0) - max(hi - full_hi, 0.0)
            lo, hi = max(lo + shift, full_lo), min(hi + shift, full_hi)
        box[name] = _snap(param, lo, hi)
    return box


def _same(a: Any, b: Any) -> bool:
    """Category equality that keeps ``True`` and ``1`` apart."""
    return type(a) is type(b) and a == b


def _snap(param: FloatParam | IntParam, lo: float, hi: float) -> tuple[float, float]:
    """On discrete scales, shrink a box to the legal values inside it; the top values are legal
    and inside, so they stay in, and every value drawn from the result lies inside it."""
    if isinstance(param, IntParam) and param.scale == "pow2":
        return float(math.ceil(lo - _EPS)), float(math.floor(hi + _EPS))
    if isinstance(param, IntParam) and param.scale == "log":
        low = max(math.ceil(10**lo * (1 - _EPS)), param.low)
        high = min(math.floor(10**hi * (1 + _EPS)), param.high)
        return math.log10(low), math.log10(high)
    step = param.step or (1 if isinstance(param, IntParam) else None)
    if step:
        lo = param.low + math.ceil((lo - param.low) / step - _EPS) * step
        hi = param.low + math.floor((hi - param.low) / step + _EPS) * step
        return float(lo), float(min(hi, param.high))
    return lo, hi


def place(param: ParamSpec, entry: tuple[float, float] | list[Any], u: float) -> Any:
    """The value at ``u`` in [0, 1) of a box entry: uniform in the internal coordinate, and every
    legal value of a discrete scale equally likely."""
    if isinstance(param, CategoricalParam):
        kept = list(entry)
        return kept[min(int(u * len(kept)), len(kept) - 1)]
    lo, hi = entry
    if isinstance(param, IntParam) and param.scale in ("pow2", "linear"):
        step = 1 if param.scale == "pow2" else param.step or 1
        n = round((hi - lo) / step) + 1
        x = lo + step * min(int(u * n), n - 1)
        return int(2 ** round(x)) if param.scale == "pow2" else round(x)
    return from_internal(param, lo + u * (hi - lo))


def _encode(box: Box, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entry in box.items():
        if isinstance(space[name], CategoricalParam):
            out[name] = {"choices": list(entry)}
        else:
            out[name] = {"low": float(entry[0]), "high": float(entry[1])}
    return out


def _decode(stored: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> Box:
    box = full_box(space)  # a parameter added to the space since the box was stored: full range
    for name, entry in stored.items():
        if name in space:
            box[name] = (
                list(entry["choices"]) if "choices" in entry else (entry["low"], entry["high"])
            )
    return box


class CoarseToFineSampler(ScaleAwareSampler):
    """Coarse-to-fine random search over tuner's scales; see the module docstring.

    Args:
        space: parameter name -> tuner ``ParamSpec`` (a spec's ``params``).
        n_trials: the study's trial budget, split across the stages.
        stages: number of stages (default 3, or ``len(trials_per_stage)``).
        top_k: how many of the best finished trials of earlier stages define the next box.
        trials_per_stage: explicit split; must add up to ``n_trials``.
        margin: each side of the box is widened by this fraction of the previous stage's box.
        min_width: a box is at least this fraction of the parameter's full range.
        seed: the same seed gives the same configurations for the same trial numbers, whichever
            process samples them (without one, each process scrambles its own Sobol sequence).
        qmc: draw a scrambled Sobol sequence per stage (point ``trial.number - stage start``)
            instead of independent uniforms: a small stage 0 then covers every axis evenly.

    The defaults (3 stages, ``top_k=3``, ``margin=0.05``, ``min_width=0.05``, ``qmc=True``) are the
    best of the designs tried in ``benchmarks/search_quality.py``; results are in
    ``benchmarks/results/search_quality.md``.

    Trials beyond the budget stay in the last stage. The stage of a trial is its position in the
    study, not counting earlier trials that failed with a re-queued reason (``reason`` user
    attribute in ``REQUEUED_REASONS``). Record it with
    ``trial.set_user_attr("stage", sampler.stage_of(study, trial.number))``.
    """

    def __init__(
        self,
        space: Mapping[str, ParamSpec],
        *,
        n_trials: int,
        stages: int | None = None,
        top_k: int = 3,
        trials_per_stage: Sequence[int] | None = None,
        margin: float = 0.05,
        min_width: float = 0.05,
        seed: int | None = None,
        qmc: bool = True,
    ) -> None:
        if n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {n_trials}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if not (0 <= margin and 0 <= min_width <= 1):
            raise ValueError(
                f"margin >= 0 and 0 <= min_width <= 1 must hold, got margin={margin}, "
                f"min_width={min_width}"
            )
        if trials_per_stage is not None:
            split = [int(n) for n in trials_per_stage]
            if not split or min(split) < 1 or sum(split) != n_trials:
                raise ValueError(
                    f"trials_per_stage must be positive counts adding up to n_trials={n_trials}, "
                    f"got {list(trials_per_stage)}; fix the counts or drop trials_per_stage"
                )
            if stages is not None and stages != len(split):
                raise ValueError(
                    f"stages={stages} but trials_per_stage has {len(split)} entries; drop stages"
                )
        else:
            stages = 3 if stages is None else stages
            if stages < 1:
                raise ValueError(f"stages must be >= 1, got {stages}")
            split = split_trials(n_trials, stages)
        super().__init__(space, seed)
        self._split = split
        self._starts = [sum(split[:s]) for s in range(len(split))]
        self._top_k = top_k
        self._margin = float(margin)
        self._min_width = float(min_width)
        self._seed = int(np.random.default_rng().integers(2**32)) if seed is None else int(seed)
        self._qmc = qmc
        self._dims = {name: i for i, name in enumerate(sorted(self._space))}
        self._sobol: dict[int, np.ndarray] = {}
        self._pending: dict[tuple[str, int], tuple[int, Box]] = {}

    @property
    def trials_per_stage(self) -> list[int]:
        return list(self._split)

    @property
    def settings(self) -> dict[str, Any]:
        """The design knobs in effect (``stages`` resolved into ``trials_per_stage``)."""
        return {
            "trials_per_stage": list(self._split),
            "top_k": self._top_k,
            "margin": self._margin,
            "min_width": self._min_width,
            "qmc": self._qmc,
        }

    def reseed_rng(self) -> None:
        # Draws are derived from (seed, trial number), so parallel threads already differ.
        self._fallback.reseed_rng()

    # --- stages and boxes ---------------------------------------------------------------------
    def stage_of(self, study: Study, trial_number: int) -> int:
        """0-based stage of trial ``trial_number`` (see the class docstring)."""
        return self._stage_at(self._position(study.get_trials(deepcopy=False), trial_number))

    def box(self, study: Study, stage: int) -> Box:
        """The box of ``stage``: read from the study, or computed now and stored there."""
        return self._box(study, study.get_trials(deepcopy=False), stage)

    def _position(self, trials: Sequence[FrozenTrial], number: int) -> int:
        lost = sum(
            1
            for t in trials
            if t.number < number and t.user_attrs.get("reason") in REQUEUED_REASONS
        )
        return number - lost

    def _stage_at(self, position: int) -> int:
        return max(bisect.bisect_right(self._starts, position) - 1, 0)

    def _box(self, study: Study, trials: Sequence[FrozenTrial], stage: int) -> Box:
        stage = min(max(stage, 0), len(self._split) - 1)
        key = BOX_ATTR.format(stage=stage)
        stored = study.user_attrs.get(key)
        if stored is not None:
            return _decode(stored["params"], self._space)
        if stage == 0:
            box, top = full_box(self._space), []
        else:
            previous = self._box(study, trials, stage - 1)
            top = self._top(study, trials, stage)
            box = (
                previous
                if not top
                else zoom(
                    self._space,
                    [t.params for t in top],
                    previous,
                    margin=self._margin,
                    min_width=self._min_width,
                )
            )
        study.set_user_attr(
            key,
            {
                "stage": stage,
                "positions": [self._starts[stage], self._starts[stage] + self._split[stage]],
                "top_trials": [t.number for t in top],
                "params": _encode(box, self._space),
            },
        )
        # Another process may have stored its box at the same time: use whichever the study kept.
        kept = study.user_attrs.get(key)
        return box if kept is None else _decode(kept["params"], self._space)

    def _top(self, study: Study, trials: Sequence[FrozenTrial], stage: int) -> list[FrozenTrial]:
        """The ``top_k`` best COMPLETE trials of the stages before ``stage``."""
        lost = 0
        done = []
        for t in sorted(trials, key=lambda t: t.number):
            value = t.value if t.state == TrialState.COMPLETE else None
            if (
                value is not None
                and not math.isnan(value)
                and self._stage_at(t.number - lost) < stage
            ):
                done.append(t)
            if t.user_attrs.get("reason") in REQUEUED_REASONS:
                lost += 1
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        done.sort(key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]
        return done[: self._top_k]

    # --- sampling -----------------------------------------------------------------------------
    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._raise_error_if_multi_objective(study)
        trials = study.get_trials(deepcopy=False)
        stage = self._stage_at(self._position(trials, trial.number))
        self._pending[(study.study_name, trial.number)] = (stage, self._box(study, trials, stage))

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._pending.pop((study.study_name, trial.number), None)

    def _sample(self, study: Study, trial: FrozenTrial, param_name: str, param: ParamSpec) -> Any:
        pending = self._pending.get((study.study_name, trial.number))
        if pending is None:  # before_trial was not called (a sampler used on its own)
            self.before_trial(study, trial)
            pending = self._pending[(study.study_name, trial.number)]
        stage, box = pending
        return place(param, box[param_name], self._unit(stage, trial.number, param_name))

    def _unit(self, stage: int, number: int, name: str) -> float:
        """A number in [0, 1) for this trial and parameter, the same in every process."""
        if not self._qmc:
            rng = np.random.default_rng([self._seed, number, zlib.crc32(name.encode())])
            return float(rng.random())
        index = max(number - self._starts[stage], 0)  # unique per trial, gaps after re-queues
        points = self._sobol.get(stage)
        if points is None or index >= len(points):
            points = self._sobol[stage] = _sobol(len(self._dims), index + 1, [self._seed, stage])
        return float(points[index, self._dims[name]])


def _sobol(dims: int, n: int, seed: list[int]) -> np.ndarray:
    """The first ``2**ceil(log2(n))`` points of a scrambled Sobol sequence seeded by ``seed``."""
    from scipy.stats import qmc  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            engine = qmc.Sobol(dims, scramble=True, rng=rng)
        except TypeError:  # scipy < 1.15 calls it seed
            engine = qmc.Sobol(dims, scramble=True, seed=rng)
        return engine.random_base2(max(0, math.ceil(math.log2(max(n, 1)))))
