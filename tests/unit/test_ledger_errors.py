"""The ledger's boundary: damaged files, read-only opening, missing rows and cancellation, in one process.

What leaves jobman.ledger is jobman's: a LedgerError naming the database, never a SQLAlchemy exception or a row.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from jobman.errors import LedgerBusy, LedgerDamaged, LedgerError, LedgerReadOnly, NotInLedger
from jobman.ledger.boundary import ledger_error
from jobman.ledger.db import open_engine
from jobman.ledger.location import Place
from jobman.ledger.shield import to_completion
from jobman.ledger.store import Ledger, Observation
from tests.ledger_files import DAMAGES, NOW, damage, make_ledger


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.mark.parametrize("how", DAMAGES)
async def test_a_damaged_ledger_is_refused_and_left_as_it_is(tmp_path: Path, how: str) -> None:
    path = tmp_path / "ledger.db"
    await make_ledger(path)
    damage(path, how)
    before = path.read_bytes()
    for readonly in (None, True):
        with pytest.raises(LedgerDamaged) as caught:
            async with open_engine(url(path), readonly=readonly):
                pass
        message = str(caught.value)
        assert message.startswith(f"the ledger {path} is damaged (")
        assert "move it aside" in message and "jobman starts a new ledger when there is none" in message
        assert "\n" not in message
        assert caught.value.exit_code == 3
    assert path.read_bytes() == before


async def test_a_missing_row_is_jobmans_error_naming_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with open_engine(url(path)) as engine:
        ledger = Ledger(engine)
        with pytest.raises(NotInLedger, match=rf"^run 42 is not in the ledger {path}$"):
            await ledger.run(42)
        with pytest.raises(NotInLedger, match=r"^resource 7 is not in the ledger "):
            await ledger.record(7, Observation(status="InService"), at=NOW)


async def test_a_naive_datetime_is_a_bug_raised_as_itself(tmp_path: Path) -> None:
    async with open_engine(url(tmp_path / "ledger.db")) as engine:
        with pytest.raises(ValueError, match="naive datetime"):
            await Ledger(engine).experiment("exp", create_at=datetime(2026, 1, 1))


def test_sqlite_result_codes_become_jobmans_errors(tmp_path: Path) -> None:
    place = Place.of(url(tmp_path / "ledger.db"))

    def sqlite_error(message: str, code: str) -> sqlite3.Error:
        error = sqlite3.OperationalError(message)
        error.sqlite_errorname = code  # type: ignore[attr-defined]  # as SQLite itself sets it
        return error

    busy = ledger_error(sqlite_error("database is locked", "SQLITE_BUSY"), place)
    assert isinstance(busy, LedgerBusy) and busy.retryable
    assert isinstance(ledger_error(sqlite_error("attempt to write a readonly database", "SQLITE_READONLY_DBMOVED"),
                                   place), LedgerReadOnly)
    assert isinstance(ledger_error(sqlite_error("file is not a database", "SQLITE_NOTADB"), place), LedgerDamaged)
    other = ledger_error(sqlite_error("no such table: runs", "SQLITE_ERROR"), place)
    assert type(other) is LedgerError and str(other) == f"the ledger {tmp_path / 'ledger.db'}: no such table: runs"


async def test_a_read_only_open_reads_refuses_writes_and_leaves_no_files(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await make_ledger(path)
    before = path.read_bytes()
    async with open_engine(url(path), readonly=True) as engine:
        ledger = Ledger(engine)
        assert ledger.readonly
        [exp] = await ledger.experiments()
        assert len(await ledger.resources()) == 40
        with pytest.raises(LedgerReadOnly, match=rf"^the ledger {path} cannot be written: it was opened read-only"):
            await ledger.experiment("another", create_at=NOW)
        assert [e.name for e in await ledger.experiments()] == ["exp"]
    assert path.read_bytes() == before
    assert not path.with_name("ledger.db-wal").exists() and not path.with_name("ledger.db-shm").exists()


async def test_an_unwritable_ledger_is_read_without_asking_and_refused_when_writing_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root every file is writable: stand in for what os.access would say to another user.
    path = tmp_path / "ledger.db"
    await make_ledger(path)
    why = f"its folder {tmp_path} is not writable by this user"
    monkeypatch.setattr(Place, "unwritable", lambda self: why)
    async with open_engine(url(path)) as engine:  # readonly=None: read-only, since it cannot be written
        ledger = Ledger(engine)
        assert ledger.readonly and len(await ledger.resources()) == 40
        with pytest.raises(LedgerReadOnly, match=rf"^the ledger {path} cannot be written: {why}\. This command"):
            await ledger.update_run(1, status="stopped")
    with pytest.raises(LedgerReadOnly, match=rf"^the ledger {path} cannot be written: {why}\."):
        async with open_engine(url(path), readonly=False):
            pass
    missing = tmp_path / "elsewhere.db"
    with pytest.raises(LedgerError, match=rf"^there is no ledger at {missing}, and none can be made: {why}$"):
        async with open_engine(url(missing)):
            pass
    assert not missing.exists()


async def test_a_zero_byte_ledger_is_set_up_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.touch()
    notes: list[str] = []
    async with open_engine(url(path), on_note=notes.append) as engine:
        assert await Ledger(engine).experiments() == []
    assert notes == [f"the ledger {path} was an empty file (a first use that was interrupted leaves one); "
                     "it is now set up as a new ledger"]
    async with open_engine(url(path), on_note=notes.append):
        pass
    assert len(notes) == 1  # a new ledger made from nothing, or one already set up, is not news


async def test_a_home_with_url_characters_opens_read_write_and_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "we ird?%20#x"
    monkeypatch.setenv("JOBMAN_HOME", str(home))
    async with open_engine() as engine:
        assert Place.of(engine.url).path == home / "ledger.db"
        await Ledger(engine).experiment("exp", create_at=NOW)
    async with open_engine(readonly=True) as engine:
        assert Place.of(engine.url).path == home / "ledger.db"
        assert [e.name for e in await Ledger(engine).experiments()] == ["exp"]
    assert os.listdir(tmp_path) == [home.name]  # nothing made beside it, at a cut-off name


def test_every_ledger_call_runs_to_completion() -> None:
    methods = [m for name, m in inspect.getmembers(Ledger, inspect.iscoroutinefunction) if not name.startswith("_")]
    assert len(methods) > 15
    assert [m.__name__ for m in methods if not getattr(m, "uncancellable", False)] == []


async def test_a_cancelled_ledger_call_finishes_its_transaction_then_is_cancelled(tmp_path: Path) -> None:
    async with open_engine(url(tmp_path / "ledger.db")) as engine:
        ledger = Ledger(engine)
        call = asyncio.ensure_future(ledger.experiment("exp", create_at=NOW))
        await asyncio.sleep(0)  # under way
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert [e.name for e in await ledger.experiments()] == ["exp"]  # the write was not cut short


async def test_to_completion_defers_the_cancellation() -> None:
    steps: list[str] = []

    async def work() -> str:
        await asyncio.sleep(0.05)
        steps.append("done")
        return "result"

    task = asyncio.ensure_future(to_completion(work()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["done"]


def test_a_wal_switch_refused_at_once_is_retried() -> None:
    """Two processes creating one ledger at the same moment: SQLite may refuse the switch to WAL at once."""
    import sqlite3

    from jobman.ledger.db import _wal

    class Cursor:
        def __init__(self, refusals: int) -> None:
            self.refusals, self.calls = refusals, 0

        def execute(self, sql: str) -> None:
            self.calls += 1
            if sql == "PRAGMA journal_mode=WAL" and self.refusals:
                self.refusals -= 1
                raise sqlite3.OperationalError("database is locked")

        def fetchone(self) -> tuple[str]:
            return ("delete",)

    cursor = Cursor(refusals=3)
    _wal(cursor)
    assert cursor.refusals == 0 and cursor.calls == 5  # one read of the mode, three refusals, one switch

    class Broken(Cursor):
        def execute(self, sql: str) -> None:
            if sql == "PRAGMA journal_mode=WAL":
                raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        _wal(Broken(0))
