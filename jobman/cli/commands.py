"""Command bodies: open the ledger and backend, call the controller, render with rich."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobman.cli import console, domain_errors, err_console, fail, print_json
from jobman.clock import SystemClock
from jobman.durations import format_duration
from jobman.ledger.db import open_engine
from jobman.ledger.store import Ledger, Resource

STATUS_STYLE = {
    "terminal-ok": "green", "terminal-failed": "red", "pending": "yellow", "transient": "yellow",
    "gone": "dim", "unknown": "magenta",
}


@asynccontextmanager
async def open_ledger() -> AsyncIterator[Ledger]:
    async with open_engine() as engine:
        yield Ledger(engine)


class ConsoleReporter:
    """Steps, status changes and training log lines as they happen; a progress bar while invoking."""

    def __init__(self) -> None:
        self._progress: Progress | None = None

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def step(self, message: str) -> None:
        self._end_progress()
        console.print(f"[bold]•[/bold] {message}", highlight=False)

    def log_line(self, line: str) -> None:
        console.print(f"  [dim]{line.rstrip()}[/dim]", highlight=False, markup=True)

    def status(self, resource: Resource) -> None:
        self._end_progress()
        from jobman.states import meaning

        style = STATUS_STYLE.get(meaning(resource.kind, resource.status).value, "")
        extra = f" ({resource.failure_reason})" if resource.failure_reason else ""
        wanted = "" if resource.desired.value == "present" else " [dim](tearing down)[/dim]"
        console.print(
            f"  {resource.kind.value} {resource.name}: [{style}]{resource.status}[/{style}]{extra}{wanted}",
            highlight=False,
        )

    def invoke_progress(self, total_rows: int) -> Callable[[int], None]:
        self._end_progress()
        progress = Progress(
            TextColumn("  invoking"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        )
        task = progress.add_task("rows", total=total_rows, rate="-")
        progress.start()
        self._progress = progress

        def advance(rows: int) -> None:
            progress.advance(task, rows)
            elapsed = progress.tasks[0].elapsed or 0
            if elapsed > 0:
                progress.update(task, rate=f"{progress.tasks[0].completed / elapsed:,.0f}")

        return advance

    def close(self) -> None:
        self._end_progress()


def run_command(file: Path) -> None:
    from jobman.backends.factory import open_backend
    from jobman.config import load_experiment
    from jobman.run import ExperimentRun, check_inputs

    with domain_errors():
        experiment = load_experiment(file)
        check_inputs(experiment)  # all input errors before the ledger or a backend is touched
    reporter = ConsoleReporter()

    async def main() -> None:
        async with open_ledger() as ledger:
            backend = await open_backend(experiment.backend, experiment.aws)
            try:
                outcome = await ExperimentRun(
                    experiment, ledger, backend, clock=SystemClock(), reporter=reporter
                ).execute()
            finally:
                reporter.close()
                await backend.aclose()
        m = outcome.metrics
        console.print(
            f"[bold green]done[/bold green] {experiment.name} run {outcome.run.number}: "
            f"RMSE {m['rmse']:.3f}  MAE {m['mae']:.3f}  R² {m['r2']:.3f}  ({m['rows']} test rows)",
            highlight=False,
        )
        console.print(f"  predictions and plot in {outcome.output_dir}/", highlight=False)
        if outcome.kept_endpoint is not None:
            console.print(
                f"  endpoint {outcome.kept_endpoint.name} kept; `jobman gc` deletes it after its TTL, "
                f"`jobman stop {experiment.name}` now",
                highlight=False,
            )

    try:
        with domain_errors():
            asyncio.run(main())
    except KeyboardInterrupt:
        reporter.close()
        err_console.print(
            f"Interrupted. The ledger holds the run's state; every endpoint has a TTL.\n"
            f"  resume:    jobman run {file}\n"
            f"  tear down: jobman stop {experiment.name}",
            highlight=False,
        )
        raise fail("interrupted", 130) from None


def status_command(experiment: str | None, as_json: bool) -> None:
    from jobman.status import status_view

    async def main() -> dict:  # type: ignore[type-arg]
        async with open_ledger() as ledger:
            return await status_view(ledger, SystemClock().now(), experiment=experiment)

    with domain_errors():
        view = asyncio.run(main())
    if as_json:
        print_json(view)
        return
    if not view["experiments"]:
        console.print("no experiments in the ledger")
        return
    for exp in view["experiments"]:
        metrics = exp.get("metrics") or {}
        score = f"  RMSE {metrics['rmse']:.3f}" if "rmse" in metrics else ""
        table = Table(
            title=f"{exp['name']} · run {exp['run']} · {exp['status']} · {exp['backend']}{score}",
            title_justify="left",
        )
        for column in ("kind", "name", "desired", "status", "age", "TTL left"):
            table.add_column(column, no_wrap=column == "name")
        for r in exp["resources"]:
            style = STATUS_STYLE.get(r["meaning"], "")
            ttl = r["ttl_left_s"]
            table.add_row(
                r["kind"], r["name"], r["desired"], f"[{style}]{r['status']}[/{style}]",
                format_duration(r["age_s"]),
                "-" if ttl is None else ("expired" if ttl <= 0 else format_duration(ttl)),
            )
        console.print(table)
