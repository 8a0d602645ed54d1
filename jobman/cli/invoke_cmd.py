"""`jobman invoke`: a CSV through an endpoint, in parallel chunks, one prediction per row."""

from __future__ import annotations

import asyncio
import signal
import sys

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from jobman.backends.names import BackendName
from jobman.cli.ledger import open_ledger
from jobman.cli.output import domain_errors, err_console
from jobman.cli.progress import rows_advancer


def invoke_command(
    endpoint: str, input_csv: str, output: str, concurrency: int, max_payload_bytes: int,
    max_rows_per_chunk: int | None, header: bool, backend_name: BackendName | None, region: str,
) -> None:
    from jobman.backends.factory import open_backend
    from jobman.chunking import check_csv_file
    from jobman.config import AwsConfig
    from jobman.fleet import endpoint_target
    from jobman.invoker import InvokeOptions, InvokeSummary, invoke_stream
    from jobman.outputs import atomic_output, check_output

    with domain_errors():
        options = InvokeOptions(max_payload_bytes=max_payload_bytes, max_rows_per_chunk=max_rows_per_chunk,
                                concurrency=concurrency, header=header)
        if input_csv != "-":
            check_csv_file(input_csv)
        check_output(output)

    progress = Progress(
        TextColumn("invoking"), TextColumn("{task.completed:,.0f} rows"),
        TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )
    advance = rows_advancer(progress, None)

    async def main() -> InvokeSummary:
        # SIGTERM cancels the command as Ctrl-C does, so the temporary output is removed on the way out.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        async with open_ledger() as ledger:
            name, region_name = await endpoint_target(ledger, endpoint, (backend_name or BackendName.LOCAL, region))
        async with await open_backend(name, AwsConfig(region=region_name)) as backend:

            async def send(body: bytes) -> bytes:
                return await backend.invoke_endpoint(endpoint, body, "text/csv")

            # The invoker reads its input in large blocks between sends; opening it here is no stall.
            src = sys.stdin.buffer if input_csv == "-" else open(input_csv, "rb")  # noqa: SIM115, ASYNC230
            with src, atomic_output(output) as dst, progress:
                return await invoke_stream(send, src, dst, options, on_progress=advance,
                                           source="stdin" if input_csv == "-" else input_csv)

    try:
        with domain_errors():
            summary = asyncio.run(main())
    except asyncio.CancelledError:  # only SIGTERM cancels main(); Ctrl-C arrives as KeyboardInterrupt (exit 130)
        raise typer.Exit(128 + signal.SIGTERM) from None
    err_console.print(f"{summary.rows:,} predictions from {endpoint} in {summary.chunks} requests "
                      f"({summary.retries} retried), {summary.elapsed_s:.2f}s", highlight=False)
