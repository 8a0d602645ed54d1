"""The typer app: the only place that prints or exits. Domain errors become one `Error: ...` line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from jobman.errors import JobmanError

T = TypeVar("T")

app = typer.Typer(
    help="Run machine-learning experiments on Amazon SageMaker, or on its local twin, as a controller "
    "that records every resource in a ledger and never leaves an endpoint running unaccounted for.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The ledger's schema (alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"Error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def domain_errors() -> Iterator[None]:
    """A domain error is the user's to fix: one line, its exit code. Anything else is a bug: traceback."""
    try:
        yield
    except JobmanError as exc:
        raise fail(str(exc), exc.exit_code) from None


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    with domain_errors():
        return asyncio.run(main())  # type: ignore[arg-type]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The experiment file (TOML).", show_default=False)],
) -> None:
    """Run the experiment in FILE: train, deploy, evaluate, tear down. Resumes an unfinished run of the same file."""
    from jobman.cli.commands import run_command

    run_command(file)


@app.command()
def status(
    experiment: Annotated[str | None, typer.Argument(help="Only this experiment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show experiments and their resources: state, age, TTL left."""
    from jobman.cli.commands import status_command

    status_command(experiment, as_json)


EVERY_HELP = "Repeat every DURATION (e.g. '5m') until interrupted."


@app.command()
def reconcile(
    every: Annotated[str | None, typer.Option("--every", help=EVERY_HELP, show_default=False)] = None,
) -> None:
    """Observe every resource in the ledger, record drift, act on deadlines and unfinished teardowns."""
    from jobman.cli.commands import reconcile_command

    reconcile_command(every)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be deleted; change nothing.")] = False,
    every: Annotated[str | None, typer.Option("--every", help=EVERY_HELP, show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="Scan this backend for orphans (default: every backend in the ledger, and local).",
        show_default=False)] = None,
    region: Annotated[str, typer.Option("--region", help="Region to scan with --backend.")] = "us-east-1",
) -> None:
    """Delete endpoints past their TTL (with config and model), and expired orphans tagged by jobman."""
    from jobman.cli.commands import gc_command

    gc_command(dry_run, every, backend, region)


@app.command()
def stop(
    experiment: Annotated[str, typer.Argument(help="The experiment's name.", show_default=False)],
) -> None:
    """Tear an experiment down: delete its endpoints, configs and models, stop a running training job."""
    from jobman.cli.commands import stop_command

    stop_command(experiment)


@app.command()
def invoke(
    endpoint: Annotated[str, typer.Argument(help="An endpoint in the ledger, or any endpoint name on the backend.",
                                            show_default=False)],
    input_csv: Annotated[str, typer.Argument(metavar="INPUT.csv", help="Feature rows as CSV; '-' reads stdin.",
                                             show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", help="Where predictions go, one per row; '-' is stdout.")]
    = "-",
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 8,
    max_payload_bytes: Annotated[int, typer.Option(help="Largest request body (SageMaker's cap is 6291456).")]
    = 5_000_000,
    max_rows_per_chunk: Annotated[int | None, typer.Option(help="Most rows in one request.", show_default=False)]
    = None,
    header: Annotated[bool, typer.Option("--header/--no-header", help="Whether INPUT's first line is a header.")]
    = False,
    backend: Annotated[str | None, typer.Option(
        help="For an endpoint the ledger does not know: 'local' (default) or 'sagemaker'.", show_default=False)]
    = None,
    region: Annotated[str, typer.Option(help="Region, with --backend.")] = "us-east-1",
) -> None:
    """Send INPUT.csv to ENDPOINT in parallel chunks; write one prediction per input row, in input order."""
    from jobman.cli.commands import invoke_command

    invoke_command(endpoint, input_csv, output, concurrency, max_payload_bytes, max_rows_per_chunk, header,
                   backend, region)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the ledger's schema (to the newest by default)."""
    from jobman.ledger.db import current_revision, make_engine, upgrade

    async def main() -> str | None:
        engine = make_engine()
        try:
            await upgrade(engine, revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    console.print(f"ledger schema at {run_async(main)}")


@db_app.command("current")
def db_current() -> None:
    """Print the ledger's schema revision and the one this jobman needs."""
    from jobman.ledger.db import current_revision, head_revision, make_engine

    async def main() -> str | None:
        engine = make_engine()
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    console.print(f"ledger: {run_async(main) or 'empty'}; needed: {head_revision()}")


def _mount_local() -> None:
    from jobman.cli.local import app as local_app

    app.add_typer(local_app, name="local", help="The local backend's server (a SageMaker on this machine).")


_mount_local()


def main() -> None:
    app()
