"""What `jobman db` does: read the schema revision without touching the ledger, or upgrade it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from jobman.ledger.boundary import translated
from jobman.ledger.db import check_intact, open_engine
from jobman.ledger.location import Place
from jobman.ledger.schema import current_revision, migration_lock
from jobman.ledger.shield import to_completion


async def ledger_revision(url: str | None = None) -> str | None:
    """`jobman db current`: the stored revision, read without making, locking or changing the ledger; None for a
    ledger with no schema yet, or none at all. A damaged ledger is a LedgerDamaged, not a revision."""
    place = Place.of(url)
    if not place.exists():
        return None

    async def read(engine: AsyncEngine) -> str | None:
        await check_intact(engine, place)
        return await current_revision(engine)

    async with open_engine(place.url, check_schema=False, readonly=True) as engine:
        with translated(place):
            return await to_completion(read(engine))


async def upgrade_ledger(revision: str = "head", url: str | None = None) -> str | None:
    """`jobman db upgrade`: the ledger (made if missing) upgraded to `revision`, under the same lock as a first
    use; returns the revision it is at now. A damaged ledger is refused before alembic touches it."""
    from jobman.ledger.migrate import upgrade  # alembic: only for this command

    place = Place.of(url)

    async def upgraded(engine: AsyncEngine) -> str | None:
        await check_intact(engine, place)
        async with migration_lock(place):
            await upgrade(engine, revision)
        return await current_revision(engine)

    async with open_engine(place.url, check_schema=False, readonly=False) as engine:
        with translated(place):
            return await to_completion(upgraded(engine))
