"""The study spec: models, loading, scales and the JSON Schema."""

from tuner.spec._load import load_spec, parse_dataset, parse_spec, spec_json_schema
from tuner.spec._model import (
    PRUNER_KINDS,
    SAMPLER_KINDS,
    DatasetSpec,
    ObjectiveSpec,
    PrunerSpec,
    ResourcesSpec,
    SamplerSpec,
    StudySpec,
)
from tuner.spec._preflight import check_resources
from tuner.spec._params import CategoricalParam, FloatParam, IntParam, ParamSpec, powers_of_two
from tuner.spec._scales import (
    from_internal,
    grid_values,
    internal_bounds,
    to_distribution,
    to_internal,
)

__all__ = [
    "StudySpec", "DatasetSpec", "ObjectiveSpec", "SamplerSpec", "PrunerSpec", "ResourcesSpec",
    "FloatParam", "IntParam", "CategoricalParam", "ParamSpec", "SAMPLER_KINDS", "PRUNER_KINDS",
    "load_spec", "parse_spec", "parse_dataset", "check_resources", "spec_json_schema", "powers_of_two",
    "to_distribution", "internal_bounds", "to_internal", "from_internal", "grid_values",
]
