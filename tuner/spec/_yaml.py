"""Reading a spec file: bounded in size, UTF-8, plain YAML only, every failure one ``SpecError``.

PyYAML's ``safe_load`` is safe from code execution but not from resource abuse: an alias bomb
(``a: &a [*b, *b, ...]`` nested a few levels) expands to billions of nodes when the spec is later
serialised, a deeply nested document overflows the composer's recursion, and an integer of more
than 4,300 digits makes ``int()`` raise. This loader refuses each of those where it happens, with
the line and column, instead of letting them surface as tracebacks or hangs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from tuner._errors import SpecError
from tuner._text import excerpt, one_line
from tuner.spec._limits import MAX_BYTES, MAX_DEPTH

__all__ = ["read_spec_file", "parse_yaml"]

_MAX_INT_CHARS = 40
"""int64 needs 20 characters (with sign and underscores, a few more); longer is refused unread."""


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases, with a depth cap, bounded ints and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SpecError("spec", f"YAML aliases (*name){_at(mark)} are not allowed in a spec; "
                            "write the value out in full")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecError("spec", f"nesting deeper than {MAX_DEPTH} levels{_at(mark)}; a "
                                "spec needs 4, so flatten it")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Any) -> int:
        text = str(node.value)
        if len(text) > _MAX_INT_CHARS:
            raise SpecError("spec", f"an integer of {len(text):,} characters{_at(node.start_mark)}"
                            " is outside the 64-bit range; use a smaller number")
        return int(SafeConstructor.construct_yaml_int(self, node))

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise SpecError("spec", f"key {excerpt(key_node.value)} appears twice in one "
                                f"mapping{_at(key_node.start_mark)} (first{_at(seen[ident])}); "
                                "keep one")
            seen[ident] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


def parse_yaml(text: str) -> Any:
    """The YAML document in ``text`` as plain data; a syntax error names its line and column."""
    loader = None
    try:
        loader = _SpecLoader(text)  # the reader checks the characters here already
        return loader.get_single_data()
    except yaml.reader.ReaderError as e:
        raise SpecError("spec", f"character {e.character!r} at position {e.position} is not "
                        "allowed in YAML; remove it") from None
    except yaml.MarkedYAMLError as e:
        problem = one_line(str(e.problem or "not valid YAML"), 80)
        raise SpecError("spec", f"{problem}{_at(e.problem_mark)}; fix the YAML syntax") from None
    except yaml.YAMLError as e:
        raise SpecError("spec", f"not valid YAML ({type(e).__name__}); fix the YAML syntax") \
            from None
    finally:
        if loader is not None:
            loader.dispose()


def read_spec_file(path: Path) -> Any:
    """The parsed contents of the spec file at ``path``: at most ``MAX_BYTES``, UTF-8 text."""
    shown = excerpt(str(path), 60)
    try:
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise SpecError("spec", f"file {shown} {what}; check the path")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except SpecError:
        raise
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = getattr(e, "strerror", None) or "not a usable path"
        raise SpecError("spec", f"cannot read {shown}: {reason}; check the path") from None
    if len(raw) > MAX_BYTES:
        raise SpecError("spec", f"file {shown} is larger than {MAX_BYTES // 1024} KiB; a spec is a "
                        "few KiB of YAML, so this is not a spec file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError("spec", f"file {shown} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                        f"offset {e.start}); save it as UTF-8") from None
    return parse_yaml(text)
