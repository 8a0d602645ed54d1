"""Claims that hold across processes, on both databases: each engine here is a connection pool of its own, as
each jobman process (on one machine or several) has."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from jobman.errors import LedgerBusy, LedgerConflict, LedgerError, LedgerReadOnly
from jobman.identity import current_user, holder_name, stopped_here
from jobman.kinds import Kind
from jobman.leases import held, renewing
from jobman.ledger.boundary import ledger_error
from jobman.ledger.db import make_engine, open_engine
from jobman.ledger.location import Place
from jobman.ledger.store import Ledger, Observation
from jobman.states import RunStatus
from jobman.status import status_view
from tests.postgres import PostgresServer

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def ledgers(database: str) -> AsyncIterator[list[Ledger]]:
    """Four processes' worth of ledgers on one database."""
    async with open_engine(database):
        pass  # the schema, set up once
    engines = [make_engine(database) for _ in range(4)]
    yield [Ledger(e) for e in engines]
    for engine in engines:
        await engine.dispose()


def open_args(holder: str, **extra: object) -> dict[str, object]:
    return {"digest": "d1", "backend": "sagemaker", "region": "us-east-1", "config_path": "x.toml", "at": NOW,
            "holder": holder, "lease_s": 60, "user": holder.split("@")[0], "host": "h", **extra}


async def test_one_run_however_many_processes_open_it_at_once(ledgers: list[Ledger]) -> None:
    claims = await asyncio.gather(*(
        ledger.open_run("exp", **open_args(f"u{i}@h pid {i}")) for i, ledger in enumerate(ledgers)  # type: ignore[arg-type]
    ))
    assert sum(not c.busy for c in claims) == 1
    [mine] = [c for c in claims if not c.busy]
    assert not mine.resumed and mine.run.number == 1
    assert {c.run.id for c in claims} == {mine.run.id}  # the busy ones name the run and its holder
    assert all(c.run.held_by == mine.run.held_by for c in claims if c.busy)
    exp = await ledgers[0].experiment("exp")
    assert exp is not None and len(await ledgers[0].runs(exp.id)) == 1


async def test_a_held_run_is_resumed_only_after_its_holder_releases_it_or_its_lease_runs_out(ledger: Ledger) -> None:
    first = await ledger.open_run("exp", **open_args("a@h pid 1"))  # type: ignore[arg-type]
    assert (first.busy, first.run.started_by) == (False, "a@h")
    assert (await ledger.open_run("exp", **open_args("b@h pid 2", at=NOW + timedelta(seconds=59)))).busy  # type: ignore[arg-type]
    later = await ledger.open_run("exp", **open_args("b@h pid 2", at=NOW + timedelta(seconds=61)))  # type: ignore[arg-type]
    assert (later.busy, later.resumed, later.run.id, later.run.held_by) == (False, True, first.run.id, "b@h pid 2")
    assert not await ledger.renew_run(first.run.id, holder="a@h pid 1", until=NOW + timedelta(minutes=5))
    await ledger.release_run(first.run.id, holder="b@h pid 2")
    again = await ledger.open_run("exp", **open_args("c@h pid 3", at=NOW + timedelta(seconds=62)))  # type: ignore[arg-type]
    assert (again.busy, again.resumed) == (False, True)


async def test_a_changed_file_supersedes_an_unheld_run_and_a_waiter_gets_the_run_it_waited_for(ledger: Ledger) -> None:
    first = await ledger.open_run("exp", **open_args("a@h pid 1"))  # type: ignore[arg-type]
    busy = await ledger.open_run("exp", **open_args("b@h pid 2"))  # type: ignore[arg-type]
    assert busy.busy
    await ledger.update_run(first.run.id, status=RunStatus.SUCCEEDED, finished_at=NOW)
    await ledger.release_run(first.run.id, holder="a@h pid 1")
    waited = await ledger.open_run("exp", **open_args("b@h pid 2", waited_on=busy.run.id))  # type: ignore[arg-type]
    assert (waited.busy, waited.run.id, waited.run.status) == (True, first.run.id, RunStatus.SUCCEEDED)
    second = await ledger.open_run("exp", **open_args("b@h pid 2"))  # type: ignore[arg-type]
    await ledger.release_run(second.run.id, holder="b@h pid 2")
    third = await ledger.open_run("exp", **open_args("c@h pid 3", digest="d2"))  # type: ignore[arg-type]
    assert third.run.number == 3 and third.superseded is not None and third.superseded.id == second.run.id
    assert (await ledger.run(second.run.id)).status == RunStatus.SUPERSEDED


async def test_one_process_wins_a_deletion(ledgers: list[Ledger]) -> None:
    exp = await ledgers[0].experiment("exp", create_at=NOW)
    assert exp is not None
    run = await ledgers[0].start_run(exp.id, digest="d", backend="fake", region="r", config_path="-", at=NOW)
    row = await ledgers[0].add_resource(run.id, Kind.ENDPOINT, "exp-r1-endpoint", {}, at=NOW)
    await ledgers[0].record(row.id, Observation(status="InService"), at=NOW)
    for _ in range(3):
        won = await asyncio.gather(*(ledger.claim_deletion(row.id, at=NOW) for ledger in ledgers))
        assert sum(won) <= 1
    assert [e.to_status for e in await ledgers[0].events(row.id)].count("Deleting") == 1


async def test_the_same_intent_recorded_at_once_is_one_row(ledgers: list[Ledger]) -> None:
    exp = await ledgers[0].experiment("exp", create_at=NOW)
    assert exp is not None
    run = await ledgers[0].start_run(exp.id, digest="d", backend="fake", region="r", config_path="-", at=NOW)
    rows = await asyncio.gather(*(ledger.add_resource(run.id, Kind.MODEL, "exp-r1-model", {}, at=NOW)
                                  for ledger in ledgers))
    assert len({r.id for r in rows}) == 1
    made = await asyncio.gather(*(ledger.experiment("new", create_at=NOW) for ledger in ledgers))
    assert len({e.id for e in made if e is not None}) == 1


async def test_a_lease_has_one_holder_until_it_is_released_or_runs_out(ledgers: list[Ledger]) -> None:
    a, b = ledgers[0], ledgers[1]
    taken = await asyncio.gather(*(ledger.acquire_lease("gc", holder=f"p{i}", at=NOW, lease_s=60)
                                   for i, ledger in enumerate(ledgers)))
    holders = {lease.holder for lease in taken}
    assert len(holders) == 1
    [holder] = holders
    other = "p1" if holder != "p1" else "p2"
    assert (await b.acquire_lease("gc", holder=other, at=NOW + timedelta(seconds=30), lease_s=60)).holder == holder
    assert await a.renew_lease("gc", holder=holder, until=NOW + timedelta(seconds=120))
    assert (await b.acquire_lease("gc", holder=other, at=NOW + timedelta(seconds=90), lease_s=60)).holder == holder
    # The holder stops renewing (kill -9): after the lease, another takes it, and the first has lost it.
    assert (await b.acquire_lease("gc", holder=other, at=NOW + timedelta(seconds=121), lease_s=60)).holder == other
    assert not await a.renew_lease("gc", holder=holder, until=NOW + timedelta(seconds=300))
    await a.release_lease("gc", holder=holder)  # not its own any more: changes nothing
    assert (await a.acquire_lease("gc", holder=holder, at=NOW + timedelta(seconds=122), lease_s=60)).holder == other
    await b.release_lease("gc", holder=other)
    assert (await a.acquire_lease("gc", holder=holder, at=NOW + timedelta(seconds=123), lease_s=60)).holder == holder


async def test_a_hold_found_lost_stops_the_work_with_a_ledger_error() -> None:
    renewals: list[datetime] = []

    async def renew(until: datetime) -> bool:
        renewals.append(until)
        return len(renewals) < 2

    with pytest.raises(LedgerError, match="^this process lost the run: it was not renewed in time"):
        async with renewing(renew, 0.03, "the run"):
            await asyncio.sleep(10)
    assert len(renewals) == 2


async def test_status_shows_who_started_each_run_and_mine_filters(ledger: Ledger) -> None:
    for name, user in (("alpha", "alice"), ("beta", "bob")):
        claim = await ledger.open_run(name, **open_args(f"{user}@h pid 1"))  # type: ignore[arg-type]
        await ledger.release_run(claim.run.id, holder=f"{user}@h pid 1")
    view = await status_view(ledger, NOW)
    assert {e["name"]: e["started_by"] for e in view["experiments"]} == {
        "alpha": {"user": "alice", "host": "h"}, "beta": {"user": "bob", "host": "h"}}
    assert [e["name"] for e in (await status_view(ledger, NOW, mine="bob"))["experiments"]] == ["beta"]
    assert (await status_view(ledger, NOW, mine="carol"))["experiments"] == []
    one = await status_view(ledger, NOW, experiment="beta")  # reads only beta's rows, and shows the same
    assert one["experiments"] == [e for e in view["experiments"] if e["name"] == "beta"]
    assert (await status_view(ledger, NOW, experiment="gamma"))["experiments"] == []


async def test_a_postgresql_ledger_that_cannot_be_used_is_one_line_naming_it(postgres_server: PostgresServer) -> None:
    missing = postgres_server.url("no_such_ledger")
    with pytest.raises(LedgerError, match=r"^the ledger postgresql\+asyncpg://postgres@127\.0\.0\.1:\d+/no_such_ledger "
                                          r"does not exist: .*; create it \(see the README's team section\)$"):
        async with open_engine(missing):
            pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nobody = f"postgresql+asyncpg://jobman:secret@127.0.0.1:{port}/ledger"
    with pytest.raises(LedgerError, match=r"^the ledger postgresql\+asyncpg://jobman:\*\*\*@127\.0\.0\.1:\d+/ledger "
                                          "cannot be reached: ") as caught:
        async with open_engine(nobody):
            pass
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_a_stopped_holder_is_known_only_on_its_own_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMAN_HOST", "here")
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    assert stopped_here(f"alice@here pid {dead}")
    assert not stopped_here(f"alice@here pid {os.getpid()}")  # alive
    assert not stopped_here(f"alice@elsewhere pid {dead}")  # another machine: its lease decides
    assert not stopped_here("not a holder")
    assert holder_name() == f"{current_user()}@here pid {os.getpid()}"


class PgError(Exception):
    def __init__(self, sqlstate: str, text: str) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "error", "words"), [
    ("40P01", LedgerConflict, "raced another one"),
    ("40001", LedgerConflict, "raced another one"),
    ("55P03", LedgerBusy, "stayed locked by another process"),
    ("25006", LedgerReadOnly, "cannot be written by this database role"),
    ("08006", LedgerError, "cannot be reached"),
    ("28P01", LedgerError, "refused the login"),
])
def test_postgresql_errors_become_jobmans_by_their_sqlstate(sqlstate: str, error: type, words: str) -> None:
    place = Place.of("postgresql+asyncpg://jobman:secret@db:5432/ledger")
    found = ledger_error(PgError(sqlstate, "the server's\nwords"), place)
    assert type(found) is error and words in str(found)
    assert "secret" not in str(found) and "\n" not in str(found)


async def test_a_transaction_the_database_aborted_in_a_race_is_run_again(ledger: Ledger,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = Ledger._session

    def flaky(self: Ledger):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) <= 2:
            raise LedgerConflict("deadlock detected")
        return real(self)

    monkeypatch.setattr(Ledger, "_session", flaky)
    assert await ledger.experiments() == []
    assert len(calls) == 3


async def test_a_waiter_never_takes_a_run_made_from_another_file_as_its_own(ledger: Ledger) -> None:
    other = await ledger.open_run("exp", **open_args("a@h pid 1", digest="other"))  # type: ignore[arg-type]
    busy = await ledger.open_run("exp", **open_args("b@h pid 2"))  # type: ignore[arg-type]
    assert busy.busy and busy.run.id == other.run.id
    await ledger.update_run(other.run.id, status=RunStatus.SUCCEEDED, finished_at=NOW)
    await ledger.release_run(other.run.id, holder="a@h pid 1")
    mine = await ledger.open_run("exp", **open_args("b@h pid 2", waited_on=other.run.id))  # type: ignore[arg-type]
    assert (mine.busy, mine.resumed, mine.run.number) == (False, False, 2)


async def test_held_lets_one_pass_at_a_time_and_the_next_waits_for_it(
    ledgers: list[Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMAN_LEASE_S", "1")
    # Each task stands for a process of its own (within one process, a holder may take its own lease again).
    monkeypatch.setattr("jobman.leases.holder_name", lambda: f"t@h task {asyncio.current_task().get_name()}")
    inside: list[int] = []
    overlaps: list[bool] = []
    notes: list[str] = []

    async def one_pass(i: int, ledger: Ledger) -> None:
        async with held(ledger, "reconcile", on_wait=notes.append):
            overlaps.append(bool(inside))
            inside.append(i)
            await asyncio.sleep(0.1)
            inside.remove(i)

    await asyncio.gather(*(one_pass(i, ledger) for i, ledger in enumerate(ledgers)))
    assert overlaps == [False] * len(ledgers)
    assert notes and all("holds the reconcile lease" in n for n in notes)
