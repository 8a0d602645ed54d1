"""The ledger as the commands open it: notes about it go to stderr."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from jobman.cli.output import note
from jobman.ledger.db import open_engine
from jobman.ledger.store import Ledger


@asynccontextmanager
async def open_ledger(readonly: bool | None = None) -> AsyncIterator[Ledger]:
    """readonly: None reads a ledger this user cannot write (writes then fail, saying why); True never writes;
    False refuses at once when the ledger cannot be written (see `open_engine`)."""
    async with open_engine(readonly=readonly, on_note=note) as engine:
        yield Ledger(engine)
