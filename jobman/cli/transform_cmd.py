"""`jobman transform`: a CSV through a Batch Transform job with a model the ledger knows."""

from __future__ import annotations

import asyncio
import signal

import typer

from jobman.cli.ledger import open_ledger
from jobman.cli.output import domain_errors, err_console
from jobman.cli.run_cmd import ConsoleReporter
from jobman.clock import SystemClock


def transform_command(
    source: str, input_csv: str, output: str, header: bool, instance_type: str, instance_count: int,
    timeout: str, keep_s3: bool,
) -> None:
    from jobman.backends.factory import open_backend
    from jobman.batch_flow import BatchOptions, BatchOutcome, BatchPrediction, resolve_source
    from jobman.chunking import check_csv_file
    from jobman.config import TRANSFORM_TIMEOUT_RANGE, AwsConfig, check_instance_type
    from jobman.durations import parse_duration_s
    from jobman.echo import echo
    from jobman.errors import ConfigError
    from jobman.outputs import check_output
    from jobman.timing import Timing

    with domain_errors():
        check_csv_file(input_csv)
        check_output(output)
        check_instance_type(instance_type, "--instance-type")
        if instance_count < 1:
            raise ConfigError(f"--instance-count: expected a positive integer, got {instance_count}")
        try:
            timeout_s = parse_duration_s(timeout)
        except ValueError:
            timeout_s = -1.0
        if not 0 < timeout_s <= TRANSFORM_TIMEOUT_RANGE.most_s:
            raise ConfigError(f"--timeout: expected a duration like '30m' or '2h' "
                              f"{TRANSFORM_TIMEOUT_RANGE.words}, got {echo(timeout)}")
        options = BatchOptions(header=header, instance_type=instance_type, instance_count=instance_count,
                               timeout_s=timeout_s, keep_s3=keep_s3)
    reporter = ConsoleReporter(err_console)

    async def main() -> BatchOutcome:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        async with open_ledger(readonly=False) as ledger:
            run, training = await resolve_source(ledger, source)
            async with await open_backend(run.backend, AwsConfig(region=run.region)) as backend:
                flow = BatchPrediction(ledger, backend, clock=SystemClock(), reporter=reporter,
                                       timing=Timing.for_backend(run.backend))
                try:
                    return await flow.execute((run, training), input_csv, output, options)
                finally:
                    reporter.close()

    try:
        with domain_errors():
            outcome = asyncio.run(main())
    except asyncio.CancelledError:  # only SIGTERM cancels main(); Ctrl-C arrives as KeyboardInterrupt (exit 130)
        raise typer.Exit(128 + signal.SIGTERM) from None
    where = "stdout" if output == "-" else output
    err_console.print(f"{outcome.rows:,} predictions from transform job {outcome.job.name} written to {where}",
                      highlight=False)
