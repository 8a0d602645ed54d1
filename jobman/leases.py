"""Holding something longer than one transaction, on every machine that shares the ledger: a gc or reconcile
pass (a lease row), or a run that `jobman run` works on (the run's own holder columns).

A holder renews its hold every third of the lease; one that dies (kill -9, a lost network, a laptop closed)
stops renewing, and others take over once the lease has run out: nobody waits longer than LEASE_S for a dead
holder. Leases are timed by the clocks of the machines (kept in step by NTP, as AWS's are), never a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

from jobman.errors import LedgerError
from jobman.identity import holder_name, stopped_here
from jobman.ledger.store import Ledger

LEASE_S = 60.0
log = logging.getLogger(__name__)
Note = Callable[[str], None]


def lease_s() -> float:
    """LEASE_S, or `JOBMAN_LEASE_S` (at least 1 second; tests shorten it)."""
    try:
        return max(1.0, float(os.environ.get("JOBMAN_LEASE_S", LEASE_S)))
    except ValueError:
        return LEASE_S


def wall_now() -> datetime:
    return datetime.now(UTC)


def poll_s(length_s: float) -> float:
    """How often a waiter looks again: often enough to follow a holder that finishes, rarely enough to cost nothing."""
    return min(1.0, length_s / 4)


@asynccontextmanager
async def held(ledger: Ledger, name: str, *, on_wait: Note | None = None) -> AsyncIterator[None]:
    """The lease `name`, waited for while another live process holds it, renewed while held, released after.
    The holder is this process: a process that holds the lease may take it again (one pass at a time is
    the caller's own order within a process)."""
    holder, length = holder_name(), lease_s()
    told = False
    replacing = None
    while True:
        lease = await ledger.acquire_lease(name, holder=holder, at=wall_now(), lease_s=length, replacing=replacing)
        if lease.holder == holder:
            break
        if stopped_here(lease.holder):  # a dead process on this machine: no need to wait for its lease
            if on_wait is not None:
                on_wait(f"{lease.holder}, which held the {name} lease, has stopped: taking it over")
            replacing = lease.holder
            continue
        if on_wait is not None and not told:
            left = max(0, round((lease.expires_at - wall_now()).total_seconds()))
            on_wait(f"waiting for {lease.holder}, which holds the {name} lease (renewed while it works; "
                    f"{left} s left if it has stopped)")
            told = True
        await asyncio.sleep(poll_s(length))
    try:
        async with renewing(lambda until: ledger.renew_lease(name, holder=holder, until=until), length,
                            f"the {name} lease"):
            yield
    finally:
        await ledger.release_lease(name, holder=holder)


@asynccontextmanager
async def renewing(
    renew: Callable[[datetime], Awaitable[bool]], length_s: float, what: str
) -> AsyncIterator[None]:
    """Renew a hold every third of its length while the body runs. A hold found lost (it ran out, say while the
    machine slept, and another process took over) cancels the body with a LedgerError rather than let two
    processes work on one thing."""
    owner = asyncio.current_task()
    assert owner is not None
    lost = False

    async def keep() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(length_s / 3)
            try:
                still = await renew(wall_now() + timedelta(seconds=length_s))
            except LedgerError as exc:  # the database is away for a moment: two thirds of the lease are left
                log.warning("could not renew %s: %s", what, exc)
                continue
            if not still:
                lost = True
                owner.cancel()
                return

    keeper = asyncio.create_task(keep(), name=f"jobman-renew {what}")
    try:
        yield
    except asyncio.CancelledError:
        if lost and owner.uncancel() == 0:
            raise LedgerError(f"this process lost {what}: it was not renewed in time and another process took it "
                              "over") from None
        raise
    finally:
        keeper.cancel()
        with suppress(asyncio.CancelledError):
            await keeper
