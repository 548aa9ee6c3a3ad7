"""Rendering records as table, JSON or CSV for the CLI (one place, every command)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["render_trials", "render_rows", "FORMATS"]

FORMATS = ("table", "json", "csv")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_trials(console: Console, records: Sequence[Any], fmt: str, title: str) -> None:
    """Trials as a Rich table (params as columns), a JSON list, or CSV."""
    dicts = [r.to_dict() for r in records]
    if fmt == "json":
        print(json.dumps(dicts, default=str, indent=2))
        return
    names: list[str] = []
    for d in dicts:
        names += [n for n in d["params"] if n not in names]
    staged = any(d.get("stage") is not None for d in dicts)
    flat = [{"number": d["number"], "value": d["value"], "state": d["state"],
             "duration_s": d["duration_s"], "epochs": d.get("epochs_run"),
             **({"stage": d["stage"]} if staged else {}),
             **{n: d["params"].get(n) for n in names},
             "reason": d["reason"], "host": d["host"], "device": d["device"]} for d in dicts]
    render_rows(console, flat, fmt, title)


def render_rows(console: Console, rows: Sequence[dict[str, Any]], fmt: str, title: str) -> None:
    """Flat dicts as a table, JSON list or CSV (columns: every key, in first-seen order)."""
    if fmt == "json":
        print(json.dumps(list(rows), default=str, indent=2))
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        print(buf.getvalue(), end="")
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c in ("number", "value", "duration_s") else "left")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    console.print(table)
