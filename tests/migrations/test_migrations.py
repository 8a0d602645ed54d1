"""pytest-alembic's four checks, by hand: single head, upgrade, round trip, models match migrations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from jobman.errors import LedgerError
from jobman.ledger.db import head_revision, make_engine
from jobman.ledger.migrate import alembic_config, downgrade, script_head, upgrade
from jobman.ledger.models import Base
from jobman.ledger.schema import HEAD_REVISION, current_revision, ensure_schema


def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"


def revisions_newest_first() -> list[str]:
    return [s.revision for s in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()]


def test_single_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()) == 1


def test_recorded_head_is_alembics_head() -> None:
    """The schema check compares with HEAD_REVISION so as not to load alembic: a new migration must update it."""
    assert HEAD_REVISION == head_revision() == script_head()


async def test_upgrade_creates_every_table(database: str) -> None:
    engine = make_engine(database)
    await upgrade(engine)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"experiments", "runs", "resources", "events", "leases", "alembic_version"} <= tables
    assert await current_revision(engine) == head_revision()
    await engine.dispose()


async def test_round_trip_down_and_up(database: str) -> None:
    engine = make_engine(database)
    revisions = revisions_newest_first()
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


async def test_models_match_migrations(database: str) -> None:
    engine = make_engine(database)
    await upgrade(engine)

    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    await engine.dispose()
    assert differences == []


# `jobman status` as the CLI runs it, then the alembic modules it imported, on the last line.
STATUS_THEN_ALEMBIC_MODULES = """
import sys
from jobman.cli import app
try:
    app(["status", "--json"])
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print(sorted(name for name in sys.modules if name.partition(".")[0] == "alembic"))
"""


def test_status_imports_alembic_only_to_set_up_a_new_ledger(jobman_home: Path) -> None:
    def alembic_modules() -> str:
        done = subprocess.run([sys.executable, "-c", STATUS_THEN_ALEMBIC_MODULES], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    assert "'alembic.script'" in alembic_modules()  # a new ledger: migrated
    assert alembic_modules() == "[]"  # at the head: one SELECT, no alembic


async def test_new_ledger_is_upgraded_and_newer_one_is_refused(database: str) -> None:
    engine = make_engine(database)
    assert await ensure_schema(engine)  # new: upgraded automatically
    assert await current_revision(engine) == head_revision()
    assert not await ensure_schema(engine)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00d'")
    with pytest.raises(LedgerError, match=r"is at schema f00d, which this jobman does not know .* upgrade jobman$"):
        await ensure_schema(engine)
    await engine.dispose()


async def test_older_ledger_is_refused_with_the_command_to_run(database: str) -> None:
    engine = make_engine(database)
    await upgrade(engine, "0001")
    with pytest.raises(LedgerError, match=r"is at schema 0001, this jobman needs 0002: run `jobman db upgrade`$"):
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


async def test_0002_keeps_the_rows_of_0001_up_and_down(database: str) -> None:
    """Each step with data in the ledger: runs made before 0002 survive it (no starter known) and its downgrade."""
    engine = make_engine(database)
    await upgrade(engine, "0001")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("INSERT INTO experiments (id, name, created_at) VALUES (1, 'x', '2026-01-01')")
        await conn.exec_driver_sql(
            "INSERT INTO runs (id, experiment_id, number, digest, backend, region, config_path, status, started_at) "
            "VALUES (1, 1, 1, 'd', 'local', 'us-east-1', '-', 'succeeded', '2026-01-01')")
    await upgrade(engine, "0002")
    async with engine.connect() as conn:
        row = (await conn.exec_driver_sql("SELECT number, started_by_user, held_by FROM runs")).one()
        leases = await conn.run_sync(lambda c: inspect(c).has_table("leases"))
    assert tuple(row) == (1, None, None) and leases
    await downgrade(engine, "0001")
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("runs")})
        count = (await conn.exec_driver_sql("SELECT count(*) FROM runs")).scalar()
        leases = await conn.run_sync(lambda c: inspect(c).has_table("leases"))
    assert "started_by_user" not in columns and count == 1 and not leases
    await engine.dispose()


async def test_first_use_by_many_processes_at_once_migrates_once(database: str) -> None:
    """Several engines (as several machines would) open a new ledger together: one migrates, none fails."""
    import asyncio

    engines = [make_engine(database) for _ in range(4)]
    done = await asyncio.gather(*(ensure_schema(e) for e in engines))
    assert sum(done) == 1
    assert {await current_revision(e) for e in engines} == {head_revision()}
    for engine in engines:
        await engine.dispose()


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
