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

_NUMERIC = ("rank", "number", "value", "duration_s")
"""Columns aligned right in a table, so their digits line up."""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_trials(console: Console, records: Sequence[Any], fmt: str, title: str, *,
                  wide: bool = True, ranked: bool = False) -> None:
    """Trials as a Rich table (params as columns), a JSON list, or CSV.

    ``wide=False`` keeps a table to what fits a terminal beside the params (number, value, state,
    stage): duration, epochs, reason, host and device would push it past 80 columns. ``ranked``
    adds a leading ``rank`` column (1 = best) to a table. Both shape the table only: JSON and CSV
    are read by programs, which need the same columns whatever the terminal.
    """
    dicts = [r.to_dict() for r in records]
    if fmt == "json":
        print(json.dumps(dicts, default=str, indent=2))
        return
    table = fmt == "table"
    names: list[str] = []
    for d in dicts:
        names += [n for n in d["params"] if n not in names]
    staged = any(d.get("stage") is not None for d in dicts)
    flat = []
    for rank, d in enumerate(dicts, start=1):
        row: dict[str, Any] = {"rank": rank} if ranked and table else {}
        row |= {"number": d["number"], "value": d["value"], "state": d["state"]}
        if wide or not table:
            row |= {"duration_s": d["duration_s"], "epochs": d.get("epochs_run")}
        if staged:
            row["stage"] = d["stage"]
        row |= {n: d["params"].get(n) for n in names}
        if wide or not table:
            row |= {"reason": d["reason"], "host": d["host"], "device": d["device"]}
        flat.append(row)
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
        table.add_column(c, justify="right" if c in _NUMERIC else "left")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    console.print(table)
