"""Reading a spec file into a :class:`StudySpec`, turning every failure into one ``SpecError``.

pydantic's multi-line reports are precise but not what a person at a terminal wants; the CLI shows
the first problem as ``path.to.field: what is wrong; what to do``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin

from pydantic import BaseModel, ValidationError

from tuner._errors import SpecError
from tuner._text import excerpt
from tuner.spec._limits import check_plain, field_path
from tuner.spec._model import DatasetSpec, StudySpec
from tuner.spec._yaml import read_spec_file

__all__ = ["load_spec", "parse_spec", "parse_dataset", "spec_json_schema"]

_FILE_PREFIXES = ("csv:", "npz:", "parquet:")


def load_spec(source: str | Path | Mapping[str, Any] | StudySpec, **overrides: Any) -> StudySpec:
    """Load a spec from a YAML path, a dict or a spec, apply ``overrides`` (dotted keys allowed).

    Relative dataset file paths are resolved against the spec file's folder, so a spec works from
    any working directory.
    """
    base = Path.cwd()
    if isinstance(source, StudySpec) and all(v is None for v in overrides.values()):
        return source  # validated already: parsed once
    if isinstance(source, StudySpec):
        data: dict[str, Any] = source.to_json_dict()
    elif isinstance(source, Mapping):
        check_plain(dict(source), strict_types=False)  # before json.dumps, which recurses
        data = json.loads(json.dumps(dict(source), default=str))
    else:
        path = Path(source)
        data = read_spec_file(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError("spec", "the file must hold a mapping (key: value lines) at top level")
        check_plain(data)
        base = path.resolve().parent
    for key, value in overrides.items():
        if value is not None:
            _set_dotted(data, key, value)
    spec = parse_spec(data)
    if spec.dataset is not None and spec.dataset.name.startswith(_FILE_PREFIXES):
        kind, _, file = spec.dataset.name.partition(":")
        resolved = Path(file) if Path(file).is_absolute() else base / file
        try:
            resolved = resolved.resolve()
        except (OSError, ValueError):  # a NUL byte, a name too long: check_study says which
            pass
        spec.dataset.name = f"{kind}:{resolved}"
    return spec


def parse_spec(data: Mapping[str, Any]) -> StudySpec:
    """Validate a plain mapping; raise ``SpecError`` naming the first bad field."""
    check_plain(dict(data), strict_types=False)
    try:
        return StudySpec.model_validate(dict(data))
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        more = f" (and {e.error_count() - 1} more problem(s))" if e.error_count() > 1 else ""
        field, message = _explain(err)
        raise SpecError(field, message + more) from None


def parse_dataset(data: DatasetSpec | Mapping[str, Any]) -> DatasetSpec:
    """A dataset section, validated by the one dataset schema; ``SpecError`` names the field."""
    if isinstance(data, DatasetSpec):
        return data
    if not isinstance(data, Mapping):
        raise SpecError("dataset", f"must be a mapping, e.g. {{name: digits}}, got {excerpt(data)}")
    try:
        return DatasetSpec.model_validate(dict(data))
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field, message = _explain({**err, "loc": ("dataset", *err["loc"])})
        raise SpecError(field, message) from None


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, for editors (``tuner schema > study.schema.json``)."""
    schema = StudySpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tuner study spec"
    return schema


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(field_path(parts), f"cannot override inside a non-mapping value at "
                            f"{excerpt(part)}")
    node[parts[-1]] = value


def _explain(err: Mapping[str, Any]) -> tuple[str, str]:
    """pydantic's error -> ``(field, "problem; fix")``; user input is only ever quoted short."""
    raw_loc = list(err["loc"])
    loc = [str(p) for p in raw_loc]
    kind = err["type"]
    msg = str(err["msg"])
    given = excerpt(err.get("input"))
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if not loc and sep and head.split(".")[0] in StudySpec.model_fields:
            return head, rest
    field = field_path(_strip_tags(raw_loc))
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = f"; valid keys here: {', '.join(valid)}" if valid else "; remove it"
        return field, f"unknown key {excerpt(raw_loc[-1])}{hint}"
    if kind == "missing":
        return field, "is required; add it"
    if kind == "union_tag_invalid":
        tag = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else None
        return field + ".type", f"unknown type {excerpt(tag)}; use float, int or categorical"
    if kind == "union_tag_not_found":
        return field, "missing 'type'; add type: float, int or categorical"
    if kind == "literal_error":
        return field, f"got {given}; {msg[0].lower()}{msg[1:]}"
    if kind == "value_error":
        return field, msg
    return field, f"{msg[0].lower()}{msg[1:]}, got {given}"


_TAGS = {"float", "int", "categorical"}


def _strip_tags(loc: list[Any]) -> list[Any]:
    """Drop pydantic's union-tag segment: ``params.lr.float.low`` -> ``params.lr.low``."""
    out = []
    for i, part in enumerate(loc):
        if part in _TAGS and i >= 2 and loc[0] == "params" and i == 2:
            continue
        out.append(part)
    return out


def _valid_keys(loc: list[str]) -> list[str]:
    from tuner.spec import _params

    model: Any = StudySpec
    i = 0
    while i < len(loc):
        part = loc[i]
        if model is StudySpec and part == "params":
            if len(loc) >= i + 3:
                model = {"float": _params.FloatParam, "int": _params.IntParam,
                         "categorical": _params.CategoricalParam}.get(loc[i + 2])
                i += 3
                continue
            return []
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        model = _model_in(fields[part].annotation)
        i += 1
    return sorted(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
