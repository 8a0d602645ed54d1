"""The schema check on every open: one plain SELECT when the ledger is current; alembic only when it is not.

`jobman status` starts fast because alembic (and its script directory) is imported only to set up a new
ledger or to explain one that is not at HEAD_REVISION.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobman.errors import LedgerError, LedgerReadOnly
from jobman.filelock import file_lock
from jobman.ledger.location import Place

# The newest migration in migrations/versions; tests/migrations checks that it is alembic's head.
HEAD_REVISION = "0002"
VERSION_TABLE = "alembic_version"


async def stored_revision(conn: AsyncConnection) -> str | None:
    """The revision alembic recorded in the ledger; None for a new (or fully downgraded) ledger."""
    if not await conn.run_sync(lambda sync: inspect(sync).has_table(VERSION_TABLE)):
        return None
    rows = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars().all()
    return ",".join(sorted(rows)) or None  # more than one row would be branches: never equal to the head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await stored_revision(conn)


async def ensure_schema(engine: AsyncEngine, *, readonly: bool | None = None) -> bool:
    """A new ledger is upgraded to head under a lock (a file lock for SQLite, an advisory lock in PostgreSQL;
    True when this call did it); a ledger at another
    revision is an error that names the fix. A read-only ledger (`readonly`, or a read-only URL) is never upgraded."""
    current = await current_revision(engine)
    if current == HEAD_REVISION:
        return False
    from jobman.ledger import migrate  # only now: alembic is most of the cost of opening the ledger

    place = Place.of(engine.url)
    head = migrate.script_head()
    if current == head:  # HEAD_REVISION is behind the migrations; tests/migrations catches that
        return False
    if current is not None:
        raise schema_mismatch(place, current, head, known=migrate.is_known(current))
    if readonly or place.opened_readonly:
        why = place.unwritable() or "it was opened read-only"
        raise LedgerReadOnly(f"the ledger {place} has no schema yet and cannot be set up: {why}")
    async with migration_lock(place):  # one process migrates; the others wait, then find it done
        return await migrate.upgrade(engine, only_if_new=True)


@asynccontextmanager
async def migration_lock(place: Place) -> AsyncIterator[None]:
    if place.path is None:  # a server: migrate.py takes a transaction-scoped advisory lock in the database
        yield
        return
    async with file_lock(place.path.with_name(place.path.name + ".migrate.lock")):
        yield


def schema_mismatch(place: Place, current: str, head: str, *, known: bool) -> LedgerError:
    if known:
        return LedgerError(f"the ledger {place} is at schema {current}, this jobman needs {head}: "
                           "run `jobman db upgrade`")
    return LedgerError(f"the ledger {place} is at schema {current}, which this jobman does not know (its newest is "
                       f"{head}): a newer jobman has upgraded it; use that one, or upgrade jobman")
