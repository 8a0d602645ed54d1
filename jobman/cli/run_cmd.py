"""`jobman run`: the console a run reports to, and the command itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status

from jobman.cli.ledger import open_ledger
from jobman.cli.output import console, domain_errors, err_console
from jobman.cli.progress import rows_advancer
from jobman.cli.screens import STATUS_STYLE
from jobman.clock import SystemClock
from jobman.ledger.store import Resource
from jobman.states import Desired, meaning

CLOUDWATCH_TAB = "#011"  # CloudWatch stores a tab the algorithm printed as #011


class ConsoleReporter:
    """Steps, status changes and training log lines as they happen, under a spinner that says what the
    run is waiting for (on a terminal); a progress bar with rows per second while invoking."""

    def __init__(self, out: Console | None = None) -> None:
        self.out = out or console  # `jobman transform` reports to stderr: its predictions may go to stdout
        self._progress: Progress | None = None
        self._spinner: Status | None = None

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _waiting(self, what: str) -> None:
        """Show `what` beside the spinner; one live display at a time, so never while invoking."""
        self._end_progress()
        if not self.out.is_terminal:
            return
        if self._spinner is None:
            self._spinner = self.out.status(what, spinner="dots")
            self._spinner.start()
        else:
            self._spinner.update(what)

    def _end_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def step(self, message: str) -> None:
        self._waiting(escape(message))
        self.out.print(f"[bold]•[/bold] {message}", highlight=False)

    def log_line(self, line: str) -> None:
        shown = line.rstrip().replace(CLOUDWATCH_TAB, "\t")
        self.out.print(f"  [dim]{escape(shown)}[/dim]", highlight=False)

    def status(self, resource: Resource) -> None:
        self._waiting(f"{resource.kind.value} {resource.name}: {resource.status}")
        style = STATUS_STYLE.get(meaning(resource.kind, resource.status).value, "")
        extra = f" ({resource.failure_reason})" if resource.failure_reason else ""
        wanted = "" if resource.desired is Desired.PRESENT else " [dim](tearing down)[/dim]"
        self.out.print(
            f"  {resource.kind.value} {resource.name}: [{style}]{resource.status}[/{style}]{extra}{wanted}",
            highlight=False,
        )

    def invoke_progress(self, total_rows: int) -> Callable[[int], None]:
        self._end_progress()
        self._end_spinner()
        progress = Progress(
            TextColumn("  invoking"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
            console=self.out, transient=True, disable=not self.out.is_terminal,
        )
        progress.start()
        self._progress = progress
        return rows_advancer(progress, total_rows)

    def close(self) -> None:
        self._end_progress()
        self._end_spinner()


def run_command(file: Path) -> None:
    from jobman.backends.factory import open_backend
    from jobman.config import load_experiment
    from jobman.run import ExperimentRun, check_inputs

    with domain_errors():
        experiment = load_experiment(file)
        check_inputs(experiment)  # all input errors before the ledger or a backend is touched
    reporter = ConsoleReporter()

    async def main() -> None:
        async with (
            open_ledger(readonly=False) as ledger,
            await open_backend(experiment.backend, experiment.aws) as backend,
        ):
            try:
                outcome = await ExperimentRun(
                    experiment, ledger, backend, clock=SystemClock(), reporter=reporter
                ).execute()
            finally:
                reporter.close()
        m = outcome.metrics
        console.print(
            f"[bold green]done[/bold green] {experiment.name} run {outcome.run.number}: "
            f"RMSE {m['rmse']:.3f}  MAE {m['mae']:.3f}  R² {m['r2']:.3f}  ({m['rows']} test rows)",
            highlight=False,
        )
        console.print(f"  predictions and plot in {outcome.output_dir}/", highlight=False)
        if outcome.kept_endpoint is not None:
            by = "its schedules delete" if experiment.endpoint.ttl_enforcement == "schedule" else "`jobman gc` deletes"
            console.print(
                f"  endpoint {outcome.kept_endpoint.name} kept; {by} it after its TTL, "
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
            highlight=False, soft_wrap=True, markup=False,
        )
        raise typer.Exit(130) from None
