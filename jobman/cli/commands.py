"""Command bodies: open the ledger and backend, call the controller, render with rich."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status
from rich.table import Table

from jobman.backends.base import Backend
from jobman.cli import console, domain_errors, err_console, print_json
from jobman.clock import SystemClock
from jobman.config import AwsConfig
from jobman.cost import FREE_BACKENDS
from jobman.durations import format_duration
from jobman.fleet import FleetReport
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


def rows_advancer(progress: Progress, total_rows: int | None) -> Callable[[int], None]:
    """A task on `progress` counting rows, and the callback that advances it and updates rows per second."""
    task = progress.add_task("rows", total=total_rows, rate="-")

    def advance(rows: int) -> None:
        progress.advance(task, rows)
        state = next(t for t in progress.tasks if t.id == task)
        if state.elapsed:
            progress.update(task, rate=f"{state.completed / state.elapsed:,.0f}")

    return advance


def check_backend(name: str | None) -> None:
    from jobman.config import BACKENDS
    from jobman.errors import ConfigError

    if name is not None and name not in BACKENDS:
        raise ConfigError(f"--backend: expected 'local' or 'sagemaker', got {name!r}")


class ConsoleReporter:
    """Steps, status changes and training log lines as they happen, under a spinner that says what the
    run is waiting for (on a terminal); a progress bar with rows per second while invoking."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._spinner: Status | None = None

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _waiting(self, what: str) -> None:
        """Show `what` beside the spinner; one live display at a time, so never while invoking."""
        self._end_progress()
        if not console.is_terminal:
            return
        if self._spinner is None:
            self._spinner = console.status(what, spinner="dots")
            self._spinner.start()
        else:
            self._spinner.update(what)

    def _end_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def step(self, message: str) -> None:
        self._waiting(escape(message))
        console.print(f"[bold]•[/bold] {message}", highlight=False)

    def log_line(self, line: str) -> None:
        console.print(f"  [dim]{escape(line.rstrip())}[/dim]", highlight=False)

    def status(self, resource: Resource) -> None:
        self._waiting(f"{resource.kind.value} {resource.name}: {resource.status}")
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
        self._end_spinner()
        progress = Progress(
            TextColumn("  invoking"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
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


def status_command(experiment: str | None, as_json: bool) -> None:
    from jobman.fleet import refresh_expired
    from jobman.status import status_view

    async def open_backend(name: str, aws: AwsConfig) -> Backend:  # imported only when something expired
        from jobman.backends.factory import open_backend as open_aws_backend

        return await open_aws_backend(name, aws)

    async def main() -> tuple[dict, list[str]]:  # type: ignore[type-arg]
        async with open_ledger() as ledger:
            notes = await refresh_expired(ledger, open_backend, SystemClock())
            return await status_view(ledger, SystemClock().now(), experiment=experiment), notes

    with domain_errors():
        view, notes = asyncio.run(main())
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
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
        for column in ("kind", "name", "desired", "status", "age", "TTL left", "billed", "cost"):
            table.add_column(column, no_wrap=column == "name", justify="right" if column == "cost" else "left")
        for r in exp["resources"]:
            style = STATUS_STYLE.get(r["meaning"], "")
            ttl = r["ttl_left_s"]
            table.add_row(
                r["kind"], r["name"], r["desired"], f"[{style}]{r['status']}[/{style}]",
                format_duration(r["age_s"]),
                "expired" if r["ttl_expired"] else ("-" if ttl is None else format_duration(ttl)),
                "-" if r["billed_s"] is None else format_duration(r["billed_s"]),
                "free" if exp["backend"] in FREE_BACKENDS and r["billed_s"] is not None
                else _usd(r["billed_s"], r["cost_usd"]),
            )
        if exp["backend"] not in FREE_BACKENDS:
            table.caption = f"estimated cost {_usd(0, exp['cost_usd'])}"
        console.print(table)
    console.print(f"total estimated cost {_usd(0, view['total_cost_usd'])} · prices: {view['prices']['source']} "
                  f"({view['prices']['as_of']})", highlight=False, style="dim")


def _usd(billed_s: float | None, usd: float | None) -> str:
    if billed_s is None:
        return "-"
    return "unknown" if usd is None else f"${usd:,.4f}"


def _every_s(every: str | None) -> float | None:
    from jobman.durations import parse_duration_s
    from jobman.errors import ConfigError

    if every is None:
        return None
    try:
        return parse_duration_s(every)
    except ValueError:
        raise ConfigError(f"--every: expected a duration like '30s', '5m' or '1h', got {every!r}") from None


def _repeat(every: str | None, one_pass: Callable[[], Awaitable[None]]) -> None:
    """One pass, or a pass every DURATION until Ctrl-C (which ends the loop cleanly, exit 0)."""
    with domain_errors():
        interval = _every_s(every)

        async def main() -> None:
            while True:
                await one_pass()
                if interval is None:
                    return
                await asyncio.sleep(interval)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            err_console.print("stopped")


def _print_fleet(report: FleetReport) -> None:
    for before, after in report.changes:
        console.print(f"  {after.kind.value} {after.name}: {before.status} → {after.status}", highlight=False)
    for action in report.actions:
        console.print(f"  {action}", highlight=False)
    for error in report.errors:
        err_console.print(f"  error: {error}", highlight=False, markup=False)


def reconcile_command(every: str | None) -> None:
    from jobman.backends.factory import open_backend
    from jobman.fleet import reconcile_all

    async def one_pass() -> None:
        async with open_ledger() as ledger:
            report = await reconcile_all(ledger, open_backend, SystemClock())
        _print_fleet(report)
        console.print(f"reconciled: {len(report.changes)} changed, {len(report.actions)} actions, "
                      f"{len(report.errors)} errors", highlight=False)

    _repeat(every, one_pass)


def gc_command(dry_run: bool, every: str | None, backend: str | None, region: str) -> None:
    from jobman.backends.factory import aws_default_region, local_regions, open_backend, open_running_backend
    from jobman.gc import collect, collect_garbage, default_targets
    from jobman.ledger.db import ledger_exists

    with domain_errors():
        check_backend(backend)
    # A dry run writes nothing: no new ledger file, and no local server started just to look.
    opener = open_running_backend if dry_run else open_backend

    async def one_pass() -> None:
        async with contextlib.AsyncExitStack() as stack:
            ledger = None if dry_run and not ledger_exists() else await stack.enter_async_context(open_ledger())
            if backend is not None:
                targets, notes = {(backend, region)}, list[str]()
            else:
                targets, notes = await default_targets(ledger, local_regions(), aws_default_region)
            if dry_run:
                report = await collect(ledger, opener, SystemClock(), targets)
            else:
                assert ledger is not None
                report = await collect_garbage(ledger, opener, SystemClock(), targets, dry_run=False)
        table = Table(title="would delete" if dry_run else "deleted", title_justify="left")
        for column in ("kind", "name", "backend", "expired at", "why"):
            table.add_column(column)
        for c in report.candidates:
            table.add_row(c.kind.value, c.name, f"{c.target[0]}/{c.target[1]}",
                          c.expires_at.isoformat() if c.expires_at else "-", "orphan" if c.orphan else "TTL")
        if report.candidates:
            console.print(table)
        if not dry_run:
            _print_fleet(report)
        for note in [*notes, *report.notes]:
            err_console.print(f"  note: {note}", highlight=False, markup=False, soft_wrap=True)
        console.print(f"gc: {len(report.candidates)} expired"
                      f"{' (dry run: nothing deleted)' if dry_run else ''}", highlight=False)

    _repeat(every, one_pass)


def stop_command(experiment: str) -> None:
    from jobman.backends.factory import open_backend
    from jobman.fleet import stop_experiment

    async def main() -> FleetReport:
        async with open_ledger() as ledger:
            return await stop_experiment(ledger, open_backend, SystemClock(), experiment)

    with domain_errors():
        report = asyncio.run(main())
    _print_fleet(report)
    console.print(f"stopped {experiment}", highlight=False)


def invoke_command(
    endpoint: str, input_csv: str, output: str, concurrency: int, max_payload_bytes: int,
    max_rows_per_chunk: int | None, header: bool, backend_name: str | None, region: str,
) -> None:
    import sys

    from jobman.backends.factory import open_backend
    from jobman.config import AwsConfig
    from jobman.errors import ConfigError
    from jobman.invoker import InvokeOptions, InvokeSummary, invoke_stream
    from jobman.kinds import Kind
    from jobman.outputs import atomic_output

    with domain_errors():
        options = InvokeOptions(max_payload_bytes=max_payload_bytes, max_rows_per_chunk=max_rows_per_chunk,
                                concurrency=concurrency, header=header)
        check_backend(backend_name)
        if input_csv != "-" and not Path(input_csv).is_file():
            raise ConfigError(f"{input_csv}: no such file")

    progress = Progress(
        TextColumn("invoking"), TextColumn("{task.completed:,.0f} rows"),
        TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )
    advance = rows_advancer(progress, None)

    async def main() -> InvokeSummary:
        async with open_ledger() as ledger:
            known = await ledger.resource_by_name(Kind.ENDPOINT, endpoint)
            run = await ledger.run(known.run_id) if known is not None else None
        name, region_name = (run.backend, run.region) if run is not None else (backend_name or "local", region)
        backend = await open_backend(name, AwsConfig(region=region_name))

        async def send(body: bytes) -> bytes:
            return await backend.invoke_endpoint(endpoint, body, "text/csv")

        try:
            # The invoker reads its input in large blocks between sends; opening it here is no stall.
            src = sys.stdin.buffer if input_csv == "-" else open(input_csv, "rb")  # noqa: SIM115, ASYNC230
            with src, atomic_output(output) as dst, progress:
                return await invoke_stream(send, src, dst, options, on_progress=advance)
        finally:
            await backend.aclose()

    with domain_errors():
        summary = asyncio.run(main())
    err_console.print(f"{summary.rows:,} predictions from {endpoint} in {summary.chunks} requests "
                      f"({summary.retries} retried), {summary.elapsed_s:.2f}s", highlight=False)
