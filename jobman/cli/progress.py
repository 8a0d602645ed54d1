"""A rows-per-second progress task, shared by `run` (evaluation) and `invoke`."""

from __future__ import annotations

from collections.abc import Callable

from rich.progress import Progress


def rows_advancer(progress: Progress, total_rows: int | None) -> Callable[[int], None]:
    """A task on `progress` counting rows, and the callback that advances it and updates rows per second."""
    task = progress.add_task("rows", total=total_rows, rate="-")

    def advance(rows: int) -> None:
        progress.advance(task, rows)
        state = next(t for t in progress.tasks if t.id == task)
        if state.elapsed:
            progress.update(task, rate=f"{state.completed / state.elapsed:,.0f}")

    return advance
