"""The typer app: the only place that prints or exits. Domain errors become one `Error: ...` line."""

from __future__ import annotations

import gc as collector  # `gc` is a command below
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from jobman.cli.options import DEFAULT_REGION, BackendOption, EveryOption, RegionOption
from jobman.cli.output import console, domain_errors, error_line

T = TypeVar("T")

app = typer.Typer(
    help="Run machine-learning experiments on Amazon SageMaker, or on its local twin, as a controller "
    "that records every resource in a ledger and never leaves an endpoint running unaccounted for.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich's help formatter costs a tenth of a second at every start
)
db_app = typer.Typer(help="The ledger's schema (alembic migrations).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")

# Commands that read the ledger, print and exit: the collector stays off for them (see jobman/__main__.py).
QUICK_COMMANDS = frozenset({"status"})


@app.callback()
def _before_each_command(ctx: typer.Context) -> None:
    # Any other command may run for hours: it collects cyclic garbage again, never walking what start-up loaded.
    if ctx.invoked_subcommand not in QUICK_COMMANDS and not collector.isenabled():
        collector.freeze()
        collector.enable()


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    import asyncio  # not at the top: `jobman --help` does without it

    with domain_errors():
        return asyncio.run(main())  # type: ignore[arg-type]


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The experiment file (TOML).", show_default=False)],
) -> None:
    """Run the experiment in FILE: train, deploy, evaluate, tear down. Resumes an unfinished run of the same file."""
    from jobman.cli.run_cmd import run_command

    run_command(file)


@app.command()
def status(
    experiment: Annotated[str | None, typer.Argument(help="Only this experiment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column and full names, however wide.")] = False,
    mine: Annotated[bool, typer.Option("--mine", help="Only experiments whose latest run you started.")] = False,
) -> None:
    """Show experiments and their resources: state, age, TTL left, time billed and cost, and who started them."""
    from jobman.cli.status_cmd import status_command

    status_command(experiment, as_json, wide, mine)


@app.command()
def reconcile(
    every: EveryOption = None,
) -> None:
    """Observe every resource in the ledger, record drift, act on deadlines and unfinished teardowns."""
    from jobman.cli.fleet_cmd import reconcile_command

    reconcile_command(every)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be deleted; change nothing.")] = False,
    every: EveryOption = None,
    backend: BackendOption = None,
    region: RegionOption = DEFAULT_REGION,
) -> None:
    """Delete endpoints past their TTL (with config and model), and expired orphans tagged by jobman.

    With no --backend it looks in every backend and region of the ledger, in local, and in AWS's default
    region when AWS credentials are configured."""
    from jobman.cli.fleet_cmd import gc_command

    gc_command(dry_run, every, backend, region)


@app.command()
def stop(
    experiment: Annotated[str, typer.Argument(help="The experiment's name.", show_default=False)],
) -> None:
    """Tear an experiment down: delete its endpoints, configs and models, stop a running training job."""
    from jobman.cli.fleet_cmd import stop_command

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
    backend: BackendOption = None,
    region: RegionOption = DEFAULT_REGION,
) -> None:
    """Send INPUT.csv to ENDPOINT in parallel chunks; write one prediction per input row, in input order.

    An endpoint the ledger does not know is looked up on --backend (default: local)."""
    from jobman.cli.invoke_cmd import invoke_command

    invoke_command(endpoint, input_csv, output, concurrency, max_payload_bytes, max_rows_per_chunk, header,
                   backend, region)


@app.command()
def transform(
    source: Annotated[str, typer.Argument(
        metavar="RUN_OR_MODEL", show_default=False,
        help="The model: a run ('experiment/r3'), an experiment (its latest trained run) or a model name.")],
    input_csv: Annotated[str, typer.Argument(metavar="INPUT.csv", help="Feature rows as CSV.", show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", help="Where predictions go, one per row; '-' is stdout.",
                                        show_default=False)],
    header: Annotated[bool, typer.Option("--header/--no-header", help="Whether INPUT's first line is a header.")]
    = False,
    instance_type: Annotated[str, typer.Option(help="The transform instances' type.")] = "ml.m4.xlarge",
    instance_count: Annotated[int, typer.Option(help="How many transform instances.")] = 1,
    timeout: Annotated[str, typer.Option(help="Stop the transform job if it runs longer.")] = "1h",
    keep_s3: Annotated[bool, typer.Option("--keep-s3", help="Keep the uploaded input and the job's output in S3.")]
    = False,
) -> None:
    """Predict INPUT.csv with a Batch Transform job (no endpoint); write one prediction per row, in order.

    RUN_OR_MODEL is a run ('experiment/r3'), an experiment (its latest trained run) or a model name. The job's
    model is made from that run's training job (a sweep's best trial), and deleted afterwards with the S3
    objects."""
    from jobman.cli.transform_cmd import transform_command

    transform_command(source, input_csv, output, header, instance_type, instance_count, timeout, keep_s3)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the ledger's schema (to the newest by default)."""
    from jobman.ledger.admin import upgrade_ledger

    console.print(f"ledger schema at {run_async(lambda: upgrade_ledger(revision))}")


@db_app.command("current")
def db_current() -> None:
    """Print the ledger's schema revision and the one this jobman needs (reads it only, never changes it)."""
    from jobman.ledger.admin import ledger_revision
    from jobman.ledger.db import head_revision

    console.print(f"ledger: {run_async(ledger_revision) or 'empty'}; needed: {head_revision()}")


def _mount_local() -> None:
    from jobman.cli.local import app as local_app

    app.add_typer(local_app, name="local", help="The local backend's server (a SageMaker on this machine).")


_mount_local()


# typer's usage errors (a bad choice, a missing argument) derive from click's UsageError, which newer typer
# releases vendor under another module: reach it through the class typer exports.
UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main() -> None:
    """Usage errors that typer finds are one `Error:` line too, exit 2."""
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `jobman` or `jobman db` alone: the help, not an error
            print(exc.format_message(), file=sys.stderr)  # type: ignore[attr-defined]
        else:
            error_line(exc.format_message())  # type: ignore[attr-defined]
        code = 2
    except typer.Abort:  # Ctrl-C outside a command's own handling
        code = 130
    finally:
        # The command is over. A Ctrl-C from here on could only interrupt the interpreter's own clean-up
        # (a weakref callback, say), which Python reports as "Exception ignored in …" with a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code if isinstance(code, int) else 0)
