"""pytest-alembic's four checks, by hand: single head, upgrade, round trip, models match migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from jobman.errors import LedgerError
from jobman.ledger.db import (
    alembic_config,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    make_engine,
    upgrade,
)
from jobman.ledger.models import Base


def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"


def test_single_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()) == 1


async def test_upgrade_creates_every_table(tmp_path: Path) -> None:
    engine = make_engine(url(tmp_path))
    await upgrade(engine)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"experiments", "runs", "resources", "events", "alembic_version"} <= tables
    assert await current_revision(engine) == head_revision()
    await engine.dispose()


async def test_round_trip_down_and_up(tmp_path: Path) -> None:
    engine = make_engine(url(tmp_path))
    revisions = [s.revision for s in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()]
    await upgrade(engine)
    for _ in revisions:  # newest first: step down one at a time, then back up
        await downgrade(engine, "-1")
    assert await current_revision(engine) is None
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables <= {"alembic_version"}
    await upgrade(engine)
    assert await current_revision(engine) == head_revision()
    await engine.dispose()


async def test_models_match_migrations(tmp_path: Path) -> None:
    engine = make_engine(url(tmp_path))
    await upgrade(engine)

    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    await engine.dispose()
    assert differences == []


async def test_new_ledger_is_upgraded_and_old_one_is_refused(tmp_path: Path) -> None:
    engine = make_engine(url(tmp_path))
    await ensure_schema(engine)  # new: upgraded automatically
    assert await current_revision(engine) == head_revision()
    async with engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")
    with pytest.raises(LedgerError, match="run `jobman db upgrade`"):
        await ensure_schema(engine)
    await engine.dispose()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(url(tmp_path))
    async with engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    await engine.dispose()
    assert (mode, keys, busy) == ("wal", 1, 30000)


async def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    """Two engines are two connections, as two jobman processes are: BEGIN IMMEDIATE + busy_timeout."""
    import asyncio
    from datetime import UTC, datetime

    from jobman.kinds import Kind
    from jobman.ledger.store import Ledger

    engines = [make_engine(url(tmp_path)) for _ in range(2)]
    await ensure_schema(engines[0])
    ledgers = [Ledger(e) for e in engines]
    now = datetime.now(UTC)
    exp = await ledgers[0].experiment("race", create_at=now)
    assert exp is not None
    run = await ledgers[0].start_run(exp.id, digest="d", backend="local", region="us-east-1", config_path="-", at=now)

    async def writer(ledger: Ledger, tag: str) -> None:
        for i in range(40):
            await ledger.add_resource(run.id, Kind.MODEL, f"race-{tag}-{i}", {}, at=now)

    await asyncio.gather(writer(ledgers[0], "a"), writer(ledgers[1], "b"))
    assert len(await ledgers[1].resources(run_ids=[run.id])) == 80
    for engine in engines:
        await engine.dispose()
