"""Alembic, imported only to set up a new ledger, to upgrade or downgrade one, or to explain a revision that
is not the one this jobman expects: a ledger at the current schema never loads it (see schema.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from jobman.errors import ConfigError
from jobman.ledger.location import database_url

MIGRATION_LOCK_KEY = 0x6A6F626D616E  # "jobman": the advisory lock a PostgreSQL ledger's migrations run under


def alembic_config(url: str | None = None) -> Config:
    import jobman.migrations as migrations_pkg  # the top-level migrations/ folder, installed as a package

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations_pkg.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))  # configparser interpolates %
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def script_head() -> str:
    head = script_directory().get_current_head()
    assert head is not None
    return head


def is_known(revision: str) -> bool:
    """Whether the migrations hold `revision`: an older ledger does, one a newer jobman upgraded does not."""
    try:
        return script_directory().get_revision(revision) is not None
    except CommandError:
        return False


async def upgrade(engine: AsyncEngine, revision: str = "head", *, only_if_new: bool = False) -> bool:
    """Upgrade to `revision`; with `only_if_new`, only a ledger with no schema yet (another process may have set
    it up while this one waited for the lock). True when alembic ran."""
    return await _run_alembic(engine, lambda cfg: command.upgrade(cfg, revision), only_if_new=only_if_new)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run_alembic(engine, lambda cfg: command.downgrade(cfg, revision))


async def _run_alembic(engine: AsyncEngine, action: Callable[[Config], None], *, only_if_new: bool = False) -> bool:
    """One transaction. On PostgreSQL it first takes the migration's transaction-scoped advisory lock, so one
    process (on any machine) migrates at a time and the lock goes with the transaction, even if the process dies;
    SQLite's BEGIN IMMEDIATE (and schema.migration_lock's file lock) does the same there."""

    def run(sync_conn: Connection) -> bool:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        if only_if_new and MigrationContext.configure(sync_conn).get_current_revision() is not None:
            return False
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = sync_conn
        try:
            action(cfg)
        except CommandError as exc:  # a revision alembic does not know: the user's to fix
            raise ConfigError(f"schema revision: {exc}") from None
        return True

    async with engine.begin() as conn:
        return await conn.run_sync(run)
