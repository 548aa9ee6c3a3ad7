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

The sampler keeps its own books: ``before_trial`` records each trial's stage as the trial system
attribute ``c2f:stage`` (namespaced, as Optuna's GA samplers keep ``nsga2:generation``), so
whoever runs the study (the coordinator, plain ``study.optimize``) needs no code for it. Read it
with :func:`trial_stage`, which also reads the user attribute ``stage`` that studies stored
before this key was introduced carry; read stored boxes with :func:`stored_boxes` and
:func:`decode_box`.
"""

from __future__ import annotations

import bisect
import math
import threading
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.samplers import BaseSampler
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
from tuner.spec._model import check_stage_split

__all__ = [
    "LEGACY_STAGE_ATTR", "STAGE_ATTR", "Box", "CoarseToFineSampler", "box_values", "decode_box",
    "full_box", "next_stage", "place", "split_trials", "stored_boxes", "trial_stage", "zoom",
]  # fmt: skip

Box = dict[str, tuple[float, float] | list[Any]]
"""Per parameter: ``(lo, hi)`` in its internal coordinate, or the list of kept categories."""

STAGE_ATTR = "c2f:stage"
"""Trial system attribute: the 0-based stage the trial was drawn in (set by ``before_trial``)."""
LEGACY_STAGE_ATTR = "stage"
"""Trial user attribute that held the stage in studies stored before ``STAGE_ATTR``: still read."""
_BOX_PREFIX = "c2f_box_"
_BOX_ATTR = _BOX_PREFIX + "{stage}"
"""Study user attribute of each stage's box: ``{"stage", "positions", "top_trials", "params"}``."""
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


def trial_stage(trial: FrozenTrial) -> int | None:
    """The coarse-to-fine stage ``trial`` was drawn in, or None (another sampler, not asked yet).

    ``STAGE_ATTR`` first; studies stored before it recorded the stage as the user attribute
    ``LEGACY_STAGE_ATTR``, which is read so that their trials keep their stages.
    """
    value = trial.system_attrs.get(STAGE_ATTR, trial.user_attrs.get(LEGACY_STAGE_ATTR))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def next_stage(sampler: BaseSampler, study: Study) -> int | None:
    """The stage a trial asked now (not a queued one) would be drawn in; None when ``sampler``
    has no stages. Lets a scheduler keep batches inside one stage without knowing the class."""
    if not isinstance(sampler, CoarseToFineSampler):
        return None
    return sampler.stage_of_next(study)


def stored_boxes(study_user_attrs: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Stage -> the record stored for its box (``stage``, ``positions``, ``top_trials`` and the
    encoded ``params``, see :func:`decode_box`), from a study's user attributes. Keys that only
    look like a box (``c2f_box_x``) are skipped."""
    out: dict[int, dict[str, Any]] = {}
    for key, record in study_user_attrs.items():
        suffix = key[len(_BOX_PREFIX):] if key.startswith(_BOX_PREFIX) else ""
        if suffix.isascii() and suffix.isdigit() and isinstance(record, Mapping):
            out[int(suffix)] = dict(record)
    return out


def decode_box(stored: Mapping[str, Any]) -> Box:
    """A stored record's ``params`` as a :data:`Box`: ``(lo, hi)`` in each parameter's internal
    coordinate, or the kept choices. Only the parameters stored (no defaults for the others)."""
    return {
        name: list(entry["choices"]) if "choices" in entry else (entry["low"], entry["high"])
        for name, entry in stored.items()
    }


def box_values(box: Box, space: Mapping[str, ParamSpec]) -> Box:
    """``box`` in values rather than internal coordinates (lr 1e-3..1e-2, not -3..-2), each
    ``(lo, hi)`` ascending (``one_minus_log`` reverses the order); categoricals, and parameters
    that ``space`` does not know, are returned as they are."""
    out: Box = {}
    for name, entry in box.items():
        param = space.get(name)
        if param is None or isinstance(param, CategoricalParam) or isinstance(entry, list):
            out[name] = entry
            continue
        a, b = from_internal(param, entry[0]), from_internal(param, entry[1])
        out[name] = (min(a, b), max(a, b))
    return out


def _encode(box: Box, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entry in box.items():
        if isinstance(space[name], CategoricalParam):
            out[name] = {"choices": list(entry)}
        else:
            out[name] = {"low": float(entry[0]), "high": float(entry[1])}
    return out


def _decode(stored: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> Box:
    """The sampler's view of a stored box: a parameter added to the space since it was stored
    gets its full range, one removed since is dropped."""
    box = full_box(space)
    box.update({k: v for k, v in decode_box(stored).items() if k in space})
    return box


def _infra_lost(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("reason") in INFRA_REASONS


class _LostTrials:
    """How many trials before a number infrastructure lost, kept up to date as the study grows.

    A finished trial never changes (Optuna refuses to edit one), so each is classified once;
    only the trials still running or waiting are looked at again on the next call. An ask then
    costs O(new trials + open trials), not a scan of the whole study (at 100,000 trials the scan
    was about 50 ms per ask, under the coordinator's lock). Trials are indexed by number; a list
    where that does not hold (another storage's order) is counted by a full scan.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()  # Optuna may ask from several threads (n_jobs)
        self._reset()

    def _reset(self) -> None:
        self._seen = 0  # trials[:_seen] have been classified or are open
        self._open: set[int] = set()  # numbers not finished when last looked at
        self._lost: list[int] = []  # sorted numbers of finished trials lost to infrastructure

    def before(self, trials: Sequence[FrozenTrial], number: int) -> int:
        with self._guard:
            if len(trials) < self._seen or not self._update(trials):
                self._reset()  # not indexed by number, or another study under the same name
                return sum(1 for t in trials if t.number < number and _infra_lost(t))
            open_lost = sum(1 for n in self._open if n < number and _infra_lost(trials[n]))
            return bisect.bisect_left(self._lost, number) + open_lost

    def _update(self, trials: Sequence[FrozenTrial]) -> bool:
        for n in list(self._open):
            t = trials[n]
            if t.number != n:
                return False
            if t.state.is_finished():
                self._open.discard(n)
                if _infra_lost(t):
                    bisect.insort(self._lost, n)
        for n in range(self._seen, len(trials)):
            t = trials[n]
            if t.number != n:
                return False
            if not t.state.is_finished():
                self._open.add(n)
            elif _infra_lost(t):
                bisect.insort(self._lost, n)
        self._seen = len(trials)
        return True


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
    study, not counting earlier trials that failed for an infrastructure reason (``reason`` user
    attribute in ``tuner._reasons.INFRA_REASONS``: the coordinator re-queues those, so they use
    no budget). ``before_trial`` records it on the trial (:data:`STAGE_ATTR`, read with
    :func:`trial_stage`).

    Parameters are drawn in the box only when asked with the distribution the spec implies; any
    other distribution is drawn from as asked (see ``ScaleAwareSampler``). A single-objective
    sampler: a multi-objective study is refused with a ``ValueError``.
    """

    _single_objective = True

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
            split = check_stage_split(trials_per_stage, n_trials, stages, budget="n_trials")
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
        self._lost: dict[str, _LostTrials] = {}  # per study name

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
        return self._stage_at(self._position(study, study.get_trials(deepcopy=False), trial_number))

    def stage_of_next(self, study: Study) -> int:
        """The stage of the trial asked next: :meth:`stage_of` the study's trial count, with one
        copy of the trial list instead of two (O(N) each at 100k trials, before every ask of a
        packing study)."""
        trials = study.get_trials(deepcopy=False)
        return self._stage_at(self._position(study, trials, len(trials)))

    def box(self, study: Study, stage: int) -> Box:
        """The box of ``stage``: read from the study, or computed now and stored there."""
        return self._box(study, study.get_trials(deepcopy=False), stage)

    def _position(self, study: Study, trials: Sequence[FrozenTrial], number: int) -> int:
        """Trial ``number``'s place in the budget: its number less the trials before it that
        infrastructure lost (those are re-run and use no budget)."""
        lost = self._lost.setdefault(study.study_name, _LostTrials())
        return number - lost.before(trials, number)

    def _stage_at(self, position: int) -> int:
        return max(bisect.bisect_right(self._starts, position) - 1, 0)

    def _box(self, study: Study, trials: Sequence[FrozenTrial], stage: int) -> Box:
        stage = min(max(stage, 0), len(self._split) - 1)
        key = _BOX_ATTR.format(stage=stage)
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
            if _infra_lost(t):
                lost += 1
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        done.sort(key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]
        return done[: self._top_k]

    # --- sampling -----------------------------------------------------------------------------
    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Fix the trial's stage and box before anything is drawn, and record the stage on the
        trial (``STAGE_ATTR``) so every reader sees the stage the sampler used."""
        self._check_objectives(study)
        trials = study.get_trials(deepcopy=False)
        stage = self._stage_at(self._position(study, trials, trial.number))
        self._pending[(study.study_name, trial.number)] = (stage, self._box(study, trials, stage))
        if trial.system_attrs.get(STAGE_ATTR) != stage:
            study._storage.set_trial_system_attr(trial._trial_id, STAGE_ATTR, stage)

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
