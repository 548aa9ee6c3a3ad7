"""The study spec: the YAML a researcher writes, as pydantic models.

Unknown keys are rejected everywhere (``extra="forbid"``): a misspelt ``epocs:`` silently ignored
would cost someone a night of GPU time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from tuner._text import excerpt
from tuner.spec._limits import SEED_MAX
from tuner.spec._params import ParamSpec, StrictModel

__all__ = [
    "StudySpec",
    "DatasetSpec",
    "ObjectiveSpec",
    "SamplerSpec",
    "PrunerSpec",
    "ResourcesSpec",
    "SAMPLER_KINDS",
    "PRUNER_KINDS",
]

SAMPLER_KINDS = ("random", "grid", "tpe", "coarse-to-fine")
PRUNER_KINDS = ("none", "median", "percentile", "successive_halving", "asha", "hyperband")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_stage_split(split: Sequence[int], trials: int, stages: int | None, *,
                      budget: str) -> list[int]:
    """``split`` (coarse-to-fine trials per stage) as ints, or a ``ValueError`` saying what to fix.

    The one rule for both places that take a split: a spec's ``sampler.trials_per_stage``
    (against ``trials``) and ``CoarseToFineSampler(trials_per_stage=...)`` built in Python
    (against ``n_trials``); ``budget`` is the name the caller knows the trial count by.
    """
    counts = [int(n) for n in split]
    if not counts or min(counts) < 1 or sum(counts) != trials:
        raise ValueError(f"trials_per_stage {excerpt(list(split))} must be positive counts adding "
                         f"up to {budget}={trials}; fix the counts or drop trials_per_stage")
    if stages is not None and stages != len(counts):
        raise ValueError(f"stages={stages} but trials_per_stage has {len(counts)} entries; "
                         "drop stages")
    return counts


def _one_of(kind: str, kinds: tuple[str, ...], what: str) -> str:
    """``kind`` if it is one of ``kinds``; else a ``ValueError`` that lists them."""
    if kind not in kinds:
        raise ValueError(f"unknown {what} {excerpt(kind)}; use one of: {', '.join(kinds)}")
    return kind


def _seed(description: str) -> Any:
    """A seed field: NumPy's and Optuna's generators take 0 .. 2**32 - 1, nothing else."""
    return Field(default=None, ge=0, le=SEED_MAX, description=description)


_RAY_UNIT = 0.0001
"""Ray schedules resources in steps of 1/10,000; a smaller nonzero share cannot be granted."""


class DatasetSpec(StrictModel):
    """Which data the built-in trainables load; file paths are resolved against the spec's folder."""

    name: str
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    normalize: Literal["zscore", "minmax", "none"] = "zscore"
    target: str | None = None
    task: Literal["auto", "classification", "regression"] = "auto"
    seed: int = Field(default=0, ge=0, le=SEED_MAX, description="seed of the split and of synthetic data")
    n_samples: int = Field(default=1000, ge=10)
    n_features: int = Field(default=20, ge=1)
    n_classes: int = Field(default=2, ge=2)
    n_informative: int = Field(default=10, ge=1)
    noise: float = Field(default=0.1, ge=0)
    image_shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, min_length=3, max_length=3,
        description="[channels, height, width] of each row, for builtin:cnn (digits: [1, 8, 8])")


class ObjectiveSpec(StrictModel):
    metric: str = "val_loss"
    direction: Literal["minimize", "maximize"] = "minimize"


class SamplerSpec(StrictModel):
    kind: str = "random"
    seed: int | None = _seed("sampler seed (0 .. 2**32 - 1)")
    n_startup_trials: int = Field(default=10, ge=0, description="tpe: random trials before modelling")
    stages: int | None = Field(default=None, ge=1, description="coarse-to-fine: number of stages (3)")
    top_k: int = Field(default=3, ge=1, description="coarse-to-fine: best trials defining the next box")
    trials_per_stage: list[int] | None = Field(default=None, description="coarse-to-fine: explicit split")
    margin: float = Field(default=0.05, ge=0, description="coarse-to-fine: box widening, fraction of the previous box")
    min_width: float = Field(default=0.05, ge=0, le=1, description="coarse-to-fine: least box width, fraction of the range")
    qmc: bool = Field(default=True, description="coarse-to-fine: scrambled Sobol draws within a stage")

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        return _one_of(v, SAMPLER_KINDS, "sampler")


_PRUNER_FIELDS: dict[str, tuple[str, ...]] = {
    "percentile": ("percentile",),
    "interval_steps": ("median", "percentile"),
    "min_resource": ("successive_halving", "asha", "hyperband"),
    "reduction_factor": ("successive_halving", "asha", "hyperband"),
    "bootstrap_count": ("successive_halving", "asha", "hyperband"),
    "min_early_stopping_rate": ("successive_halving", "asha"),
    "max_resource": ("hyperband",),
}
"""Kind-specific pruner fields (None = the kind's default) and the kinds that read them."""


class PrunerSpec(StrictModel):
    """When to stop a trial early, from its per-epoch objective values (steps are epochs, from 1).

    ``successive_halving`` and ``asha`` are the same pruner: Optuna's successive halving is the
    asynchronous variant (a trial is judged when it reaches a rung, without waiting for others).
    """

    kind: str = "none"
    n_startup_trials: int = Field(default=5, ge=0, description="median/percentile: complete trials before any pruning")
    n_warmup_steps: int = Field(default=2, ge=0, description="median/percentile: epochs before a trial can be pruned")
    interval_steps: int | None = Field(default=None, ge=1, description="median/percentile: epochs between checks (1)")
    percentile: float | None = Field(default=None, ge=0, le=100, description="percentile: keep trials in the best percentile (25)")
    min_resource: int | None = Field(default=None, ge=1, description="successive_halving/asha/hyperband: epochs before the first rung (1)")
    reduction_factor: int | None = Field(default=None, ge=2, description="successive_halving/asha/hyperband: 1 in reduction_factor goes on at each rung (3)")
    min_early_stopping_rate: int | None = Field(default=None, ge=0, description="successive_halving/asha: first rung at min_resource * reduction_factor**rate (0)")
    bootstrap_count: int | None = Field(default=None, ge=0, description="successive_halving/asha/hyperband: trials a rung needs before promoting (0)")
    max_resource: int | None = Field(default=None, ge=1, description="hyperband: most epochs a trial gets (default: epochs)")

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        return _one_of(v, PRUNER_KINDS, "pruner")

    def check(self, epochs: int) -> None:
        """Raise ``ValueError("pruner.<field>: ...")`` for settings that cannot work with ``epochs``.

        A pruner that could only act at the last epoch saves nothing (and tuner never prunes at
        the last epoch: that trial's work is done), so such settings are errors, not no-ops.
        """
        for name, kinds in _PRUNER_FIELDS.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                raise ValueError(f"pruner.{name}: is not used by kind {self.kind}; remove it or use "
                                 f"kind: {' / '.join(kinds)}")
        if self.kind in ("median", "percentile") and self.n_warmup_steps >= epochs:
            raise ValueError(
                f"pruner.n_warmup_steps: {self.n_warmup_steps} >= epochs={epochs}, so no trial could "
                f"be pruned before its last epoch; use n_warmup_steps < {epochs}")
        rate = self.min_early_stopping_rate or 0
        r, eta = self.min_resource or 1, self.reduction_factor or 3
        if self.kind in ("successive_halving", "asha") and r * eta**rate >= epochs:
            raise ValueError(
                f"pruner.min_resource: the first rung is at epoch min_resource x reduction_factor"
                f"^min_early_stopping_rate = {r * eta**rate} >= epochs={epochs}, so no trial could "
                "be pruned before its last epoch; lower min_resource or min_early_stopping_rate")
        if self.kind == "hyperband":
            big_r = self.max_resource if self.max_resource is not None else epochs
            if big_r > epochs:
                raise ValueError(
                    f"pruner.max_resource: {big_r} > epochs={epochs}, but no trial trains past "
                    f"epochs; use max_resource <= {epochs} or leave it out (it defaults to epochs)")
            if r >= big_r:
                raise ValueError(
                    f"pruner.min_resource: {r} >= max_resource={big_r}, so hyperband has nothing to "
                    f"halve; use min_resource < {big_r}")


class ResourcesSpec(StrictModel):
    workers: int = Field(default=1, ge=1, le=4096)
    cpus_per_trial: float = Field(default=1, ge=_RAY_UNIT, le=1_000_000)
    gpus_per_trial: float = Field(default=0, ge=0, le=1_000_000)
    pack: Literal["auto"] | Annotated[int, Field(ge=1, le=1024)] = Field(
        default="auto",
        description="builtin:mlp/cnn: trials a worker trains at once as one fused model (auto, "
                    "the default: the size that trains fastest on the worker's device, within "
                    "its memory, 1 where packing does not pay; N: packs of up to N; 1: one at a "
                    "time); user trainables always run one at a time")

    @field_validator("pack", mode="before")
    @classmethod
    def _pack(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
            return v
        raise ValueError(f"must be 'auto' or a whole number from 1 to 1024, got {v!r:.60}")

    @field_validator("gpus_per_trial")
    @classmethod
    def _schedulable(cls, v: float) -> float:
        if 0 < v < _RAY_UNIT:
            raise ValueError(f"{v:g} GPUs per trial is below Ray's smallest share ({_RAY_UNIT}); "
                             f"use 0 or at least {_RAY_UNIT}")
        return v


class StudySpec(StrictModel):
    """A whole study. ``params`` are searched; ``fixed`` are passed to every trial unchanged."""

    study: str
    trainable: str = "builtin:mlp"
    dataset: DatasetSpec | None = None
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    trials: int = Field(default=20, ge=1, le=1_000_000)
    epochs: int = Field(default=10, ge=1, le=100_000)
    seed: int | None = _seed("base seed for weight init and shuffling (0 .. 2**32 - 1)")
    trial_timeout_s: float | None = Field(
        default=None, gt=0, le=30 * 24 * 3600,
        description="a trial running longer fails with reason 'timeout' (uses budget); its worker "
                    "process is killed and replaced")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    params: dict[str, ParamSpec] = Field(default_factory=dict, validate_default=True)
    fixed: dict[str, Any] = Field(default_factory=dict)

    @field_validator("study")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):  # match() would let a trailing newline through
            raise ValueError(
                f"{excerpt(v)} is not a usable study name; use letters, digits, '-', '_' or '.'"
                " (at most 128, starting with a letter or digit)"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if self.sampler.trials_per_stage is not None:
            try:
                check_stage_split(self.sampler.trials_per_stage, self.trials, self.sampler.stages,
                                  budget="trials")
            except ValueError as e:
                raise ValueError(f"sampler: {e}") from None
        self.pruner.check(self.epochs)
        overlap = sorted(set(self.params) & set(self.fixed))
        if overlap:
            raise ValueError(
                f"fixed: {excerpt(overlap[0])} is both searched (params) and fixed; keep it in one of them"
            )
        if self.trainable.startswith("builtin:") and self.dataset is None:
            raise ValueError(
                "dataset: built-in trainables need a dataset; add e.g. dataset: {name: digits}"
            )
        return self

    @field_validator("params")
    @classmethod
    def _nonempty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("params is empty; declare at least one hyperparameter to search")
        return v

    def to_json_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types, for storage and for shipping to workers."""
        return self.model_dump(mode="json")
