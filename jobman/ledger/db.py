"""Engine, SQLite pragmas, and the schema check that upgrades a new ledger or says what to run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from jobman.errors import LedgerError
from jobman.filelock import file_lock
from jobman.paths import jobman_home

BUSY_TIMEOUT_MS = 30_000


def database_url() -> str:
    return os.environ.get("JOBMAN_DB_URL") or f"sqlite+aiosqlite:///{jobman_home() / 'ledger.db'}"


def ledger_exists(url: str | None = None) -> bool:
    """False for a SQLite ledger whose file is not there yet (opening it would create it)."""
    url = url or database_url()
    if not url.startswith("sqlite"):
        return True
    database = url.split("///", 1)[1] if "///" in url else ""
    return not database or database == ":memory:" or Path(database.split("?", 1)[0]).exists()


def alembic_config(url: str | None = None) -> Config:
    import jobman.migrations as migrations_pkg  # the top-level migrations/ folder, installed as a package

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations_pkg.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url or database_url())
    return cfg


def make_engine(url: str | None = None) -> AsyncEngine:
    url = url or database_url()
    engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000} if "sqlite" in url else {})
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that writers can BEGIN IMMEDIATE: a writer then
        # waits for the lock up front (busy_timeout) instead of failing with "database is locked" later.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run_alembic(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run_alembic(engine, lambda cfg: command.downgrade(cfg, revision))


async def _run_alembic(engine: AsyncEngine, action: Any) -> None:
    def run(sync_conn: Connection) -> None:
        cfg = alembic_config(str(engine.url))
        cfg.attributes["connection"] = sync_conn
        action(cfg)

    async with engine.begin() as conn:
        await conn.run_sync(run)


def _sqlite_path(engine: AsyncEngine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


async def ensure_schema(engine: AsyncEngine) -> None:
    """A new ledger is upgraded to head under a file lock; an older one is an error naming the fix."""
    head = head_revision()
    current = await current_revision(engine)
    if current == head:
        return
    if current is None:
        db_path = _sqlite_path(engine)
        if db_path is not None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            lock = db_path.with_name(db_path.name + ".migrate.lock")
            async with file_lock(lock):  # one process migrates; the others wait, then find it done
                if await current_revision(engine) is None:
                    await upgrade(engine)
        else:
            await upgrade(engine)
        return
    raise LedgerError(
        f"the ledger {engine.url.render_as_string(hide_password=True)} is at schema {current}, "
        f"this jobman needs {head}: run `jobman db upgrade`"
    )


@asynccontextmanager
async def open_engine(url: str | None = None, *, check_schema: bool = True) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url)
    try:
        if check_schema:
            await ensure_schema(engine)
        yield engine
    finally:
        await engine.dispose()
