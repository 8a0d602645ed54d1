"""Engines: SQLite pragmas, opening the ledger read-write or read-only, and `open_engine`, which checks the schema.

Nothing here imports alembic: opening a ledger at the current schema costs one SELECT (see schema.py).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from jobman.errors import LedgerError
from jobman.ledger.boundary import cannot_write, damaged, translated
from jobman.ledger.location import Place, database_url, ledger_exists
from jobman.ledger.schema import HEAD_REVISION, current_revision, ensure_schema
from jobman.ledger.shield import to_completion

__all__ = [  # with names re-exported for the callers that import them from here
    "BUSY_TIMEOUT_MS", "check_intact", "current_revision", "database_url", "head_revision", "ledger_exists",
    "make_engine", "open_engine", "sessionmaker", "upgrade",
]

BUSY_TIMEOUT_MS = 30_000
# PostgreSQL: a transaction left open by a process that stopped answering (a frozen laptop, a lost network) is
# ended by the server after this long, releasing its row locks; a waiter gives up after LOCK_TIMEOUT_MS.
IDLE_IN_TRANSACTION_MS = 30_000
LOCK_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 10
Note = Callable[[str], None]


def make_engine(url: str | URL | None = None) -> AsyncEngine:
    place = Place.of(url)
    backend = place.url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000}
    elif place.url.get_driver_name() == "asyncpg":  # asyncpg is imported by SQLAlchemy only for such a URL
        connect_args = {"timeout": CONNECT_TIMEOUT_S, "server_settings": {
            "application_name": "jobman",
            "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
            "lock_timeout": str(LOCK_TIMEOUT_MS),
            "timezone": "UTC",
        }}
    engine = create_async_engine(place.url, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, readonly=place.opened_readonly)
    return engine


def _configure_sqlite(engine: AsyncEngine, *, readonly: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that writers can BEGIN IMMEDIATE: a writer then
        # waits for the lock up front (busy_timeout) instead of failing with "database is locked" later.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if readonly:  # setting the journal mode may write; query_only makes any write attempt SQLITE_READONLY
            cursor.execute("PRAGMA query_only=ON")
        else:
            _wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")  # a reader never takes the write lock


def _wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so). The switch needs the file to itself, and SQLite refuses it at once
    ("database is locked"), without waiting, while another connection is opening a new ledger too: it is
    retried, briefly, as the busy timeout would. A ledger already in WAL only reads its mode."""
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # only ever while several processes create one ledger at the same moment


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def head_revision() -> str:
    return HEAD_REVISION


@asynccontextmanager
async def open_engine(
    url: str | URL | None = None, *, check_schema: bool = True, readonly: bool | None = None,
    on_note: Note | None = None,
) -> AsyncIterator[AsyncEngine]:
    """An engine on the ledger, its schema checked (a new ledger is set up), disposed of on the way out.

    `readonly`: None opens read-write when this process can write the ledger and read-only when it cannot (reads
    work; the first write is a LedgerReadOnly that says why). True opens read-only: no write, no write lock, no
    schema upgrade. False refuses at once, saying why, when the ledger cannot be written.
    `on_note` hears, in one line, what jobman did that the user may want to know (a zero-byte ledger set up)."""
    place = Place.of(url)
    with translated(place):
        readonly = _open_readonly(place, readonly)
        was_empty = place.is_empty_file()
        if not readonly and place.path is not None:
            place.path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(place.readonly_url() if readonly and place.path is not None else place.url)
    try:
        if check_schema:
            with translated(place):
                created = await to_completion(_check(engine, place, readonly=readonly))
            if created and was_empty and on_note is not None:
                on_note(f"the ledger {place} was an empty file (a first use that was interrupted leaves one); "
                        "it is now set up as a new ledger")
        yield engine
    finally:
        with translated(place):
            await to_completion(engine.dispose())


async def _check(engine: AsyncEngine, place: Place, *, readonly: bool) -> bool:
    await check_intact(engine, place)
    return await ensure_schema(engine, readonly=readonly)


async def check_intact(engine: AsyncEngine, place: Place) -> None:
    """Refuse a damaged SQLite ledger before anything reads or writes it, not only when a query meets the damage:
    a write that happens to miss the damaged pages would otherwise succeed. quick_check reads every page once
    (about 1 ms per MB), which a ledger of a few MB affords on every open."""
    if place.path is None:
        return
    async with engine.connect() as conn:
        problems = (await conn.exec_driver_sql("PRAGMA quick_check(1)")).scalars().all()
    if problems != ["ok"]:  # SQLite's report spans lines ("*** in database main ***\nPage 17: ..."): one line
        report = " ".join(" ".join(map(str, problems)).replace("*** in database main ***", "").split())
        raise damaged(place, f"quick_check: {report or 'failed'}")


def _open_readonly(place: Place, readonly: bool | None) -> bool:
    if place.path is None:
        return bool(readonly)
    why = place.unwritable()
    if readonly is False and why is not None:
        raise cannot_write(place)
    readonly = bool(readonly) or why is not None
    if readonly and not place.path.exists():
        raise LedgerError(f"there is no ledger at {place}" + (f", and none can be made: {why}" if why else ""))
    return readonly


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Alembic's upgrade on an open engine, imported only now (kept here for callers that knew it here)."""
    from jobman.ledger.migrate import upgrade as alembic_upgrade

    await alembic_upgrade(engine, revision)
