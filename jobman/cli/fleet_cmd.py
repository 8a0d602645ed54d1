"""`jobman reconcile`, `gc` and `stop`: operations over everything the ledger tracks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from rich.table import Table

from jobman.backends.names import BackendName
from jobman.cli.ledger import open_ledger
from jobman.cli.output import console, domain_errors, err_console, note
from jobman.clock import SystemClock
from jobman.fleet import FleetReport


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
        async with open_ledger(readonly=False) as ledger:
            report = await reconcile_all(ledger, open_backend, SystemClock(), on_wait=note)
        _print_fleet(report)
        console.print(f"reconciled: {len(report.changes)} changed, {len(report.actions)} actions, "
                      f"{len(report.errors)} errors", highlight=False)

    _repeat(every, one_pass)


def gc_command(dry_run: bool, every: str | None, backend: BackendName | None, region: str) -> None:
    from jobman.backends.factory import aws_default_region, local_regions, open_backend, open_running_backend
    from jobman.gc import collect, collect_garbage, default_targets
    from jobman.ledger.db import ledger_exists

    # A dry run writes nothing: no new ledger file, and no local server started just to look.
    opener = open_running_backend if dry_run else open_backend

    async def one_pass() -> None:
        async with contextlib.AsyncExitStack() as stack:
            ledger = None if dry_run and not ledger_exists() else await stack.enter_async_context(
                open_ledger(readonly=dry_run))
            if backend is not None:
                targets, notes = {(backend.value, region)}, list[str]()
            else:
                targets, notes = await default_targets(ledger, local_regions(), aws_default_region)
            if dry_run:
                report = await collect(ledger, opener, SystemClock(), targets)
            else:
                assert ledger is not None
                report = await collect_garbage(ledger, opener, SystemClock(), targets, dry_run=False, on_wait=note)
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
        for text in [*notes, *report.notes]:
            note(text)
        console.print(f"gc: {len(report.candidates)} expired"
                      f"{' (dry run: nothing deleted)' if dry_run else ''}", highlight=False)

    _repeat(every, one_pass)


def stop_command(experiment: str) -> None:
    from jobman.backends.factory import open_backend
    from jobman.fleet import stop_experiment

    async def main() -> FleetReport:
        async with open_ledger(readonly=False) as ledger:
            return await stop_experiment(ledger, open_backend, SystemClock(), experiment)

    with domain_errors():
        report = asyncio.run(main())
    _print_fleet(report)
    console.print(f"stopped {experiment}", highlight=False)
