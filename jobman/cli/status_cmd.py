"""`jobman status`: what the ledger knows, after a look at whatever is past its expiry."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from jobman.cli.ledger import open_ledger
from jobman.cli.output import console, domain_errors, note, print_json
from jobman.cli.screens import status_screen
from jobman.clock import SystemClock
from jobman.errors import LedgerReadOnly

if TYPE_CHECKING:  # the status path never loads the experiment-file reader
    from jobman.backends.base import Backend
    from jobman.config import AwsConfig
    from jobman.ledger.store import Ledger


async def _open_backend(name: str, aws: AwsConfig) -> Backend:
    """Imported only when something has expired: aioboto3 stays off the common path."""
    from jobman.backends.factory import open_backend

    return await open_backend(name, aws)


async def _look_again_at_expired(ledger: Ledger) -> list[str]:
    """Resources past their expiry are looked at on their backend first, so that status shows what is true now;
    the notes say what was done, or why it could not be."""
    if ledger.readonly:
        return ["the ledger is read-only here: expired resources were not looked at again"]
    from jobman.fleet import refresh_expired

    try:
        return await refresh_expired(ledger, _open_backend, SystemClock())
    except LedgerReadOnly:  # a database role that may only read (a shared ledger's dashboard)
        return ["the ledger is read-only for this user: expired resources were not looked at again"]


def status_command(experiment: str | None, as_json: bool, wide: bool, mine: bool = False) -> None:
    from jobman.identity import current_user
    from jobman.status import has_expired, status_view

    async def main() -> tuple[dict[str, Any], list[str]]:
        async with open_ledger() as ledger:
            notes = await _look_again_at_expired(ledger) if await has_expired(ledger, SystemClock().now()) else []
            user = current_user() if mine else None
            return await status_view(ledger, SystemClock().now(), experiment=experiment, mine=user), notes

    with domain_errors():
        view, notes = asyncio.run(main())
    for text in notes:
        note(text)
    if as_json:
        print_json(view)
        return
    if not view["experiments"]:
        console.print("no experiments of yours in the ledger" if mine else "no experiments in the ledger")
        return
    for part in status_screen(view, console.width, wide=wide):
        console.print(part, highlight=False, soft_wrap=isinstance(part, str))
