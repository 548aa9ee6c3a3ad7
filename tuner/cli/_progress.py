"""The submit progress bar: trials done / running / failed / pruned and best so far."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["StudyProgress"]


class StudyProgress:
    """Context manager whose ``update`` is the driver's ``on_progress`` callback."""

    def __init__(self, console: Console, study: str, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[study]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task("study", total=None, study=study, detail="starting Ray")

    def __enter__(self) -> StudyProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def update(self, p: dict[str, Any]) -> None:
        best = "-" if p["best_value"] is None else f"{p['best_value']:.4g} (#{p['best_number']})"
        detail = (f"running {p['running']}  failed {p['failed']}  pruned {p['pruned']}  "
                  f"best {best}")
        if p.get("foreign") or p.get("foreign_running"):  # another writer's trials, not counted
            detail += f"  other writers {p['foreign']} done, {p['foreign_running']} running"
        self._progress.update(self._task, total=p["target"], completed=p["used"], detail=detail)
