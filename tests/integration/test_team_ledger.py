"""A ledger a team shares: jobman processes with their own JOBMAN_HOME (standing in for two machines) share one
ledger (a real PostgreSQL; SQLite through JOBMAN_DB_URL where the race can be arranged there too) and one cloud
(moto's server). Claims hold across them, and a holder killed with kill -9 stops nobody for longer than its lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest

from jobman.config import load_experiment
from jobman.kinds import Kind
from jobman.ledger.db import open_engine
from jobman.ledger.location import Place
from jobman.ledger.schema import HEAD_REVISION
from jobman.ledger.store import Ledger, Observation
from tests.conftest import REPO, SAGEMAKER, jobman_cmd, write_experiment
from tests.fault_proxy import FaultProxy
from tests.moto_server import Moto
from tests.postgres import PostgresServer

TEST_ROWS = 167
LEASE_S = "6"  # the holders' and the waiters' lease in these tests (60 s in use)


def machine(tmp_path: Path, name: str, url: str, **extra: str) -> dict[str, str]:
    """The environment of one "machine": its own JOBMAN_HOME and host name, the shared ledger's URL."""
    return {**os.environ, "JOBMAN_HOME": str(tmp_path / f"home-{name}"), "JOBMAN_DB_URL": url, "COLUMNS": "200",
            "JOBMAN_USER": f"user-{name}", "JOBMAN_HOST": f"machine-{name}", **extra}


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen[str]], timeout_s: float = 240) -> list[tuple[int, str, str]]:
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout_s)
        results.append((p.returncode, out, err))
    return results


def sagemaker(moto: Moto) -> Any:
    return boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1")


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def ledger_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with open_engine(url) as engine, engine.connect() as conn:
        return [tuple(r) for r in (await conn.exec_driver_sql(sql)).all()]


def aws_experiment(moto: Moto, tmp_path: Path) -> tuple[Path, str]:
    """The example on the AWS backend (moto), with the predictions its one evaluation will get."""
    moto.queue_invoke_results(["\n".join(["22.5"] * TEST_ROWS) + "\n"])
    path = write_experiment(tmp_path / "exp.toml", SAGEMAKER)
    return path, load_experiment(path).name


async def test_the_same_run_started_on_two_machines_at_once_makes_one_run(
    moto: Moto, database: str, tmp_path: Path
) -> None:
    path, name = aws_experiment(moto, tmp_path)
    async with open_engine(database) as engine:
        await Ledger(engine).experiment(name, create_at=datetime.now(UTC))
    gate = postgres_gate if database.startswith("postgresql") else sqlite_gate
    procs = await gate(database, name, lambda: [
        start(jobman_cmd("run", str(path)), machine(tmp_path, m, database), tmp_path) for m in "ab"])
    results = finish(procs)
    assert [code for code, _, _ in results] == [0, 0], results
    assert all("RMSE" in out for _, out, _ in results)
    assert sum("was finished by user-" in out for _, out, _ in results) == 1, results
    runs = await ledger_rows(database, "SELECT number, status, started_by_user, held_by FROM runs")
    assert len(runs) == 1 and runs[0][:2] == (1, "succeeded") and runs[0][2] in ("user-a", "user-b")
    assert runs[0][3] is None  # released
    jobs = sagemaker(moto).list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == [f"{name}-r1-train"]


Procs = list[subprocess.Popen[str]]


async def postgres_gate(url: str, experiment: str, start_all: Callable[[], Procs]) -> Procs:
    """"At the same moment": the experiment's row lock is held until both processes wait for it."""
    conn, watch = await asyncpg.connect(plain_dsn(url)), await asyncpg.connect(plain_dsn(url))
    try:
        gate = conn.transaction()
        await gate.start()
        await conn.execute("SELECT id FROM experiments WHERE name = $1 FOR UPDATE", experiment)
        procs = start_all()
        # Watched from outside the gate's transaction, which would see one snapshot of pg_stat_activity.
        while await watch.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobman' "
                                   "AND wait_event_type = 'Lock'") < 2:
            assert all(p.poll() is None for p in procs), finish(procs)
            await asyncio.sleep(0.05)
        await gate.rollback()
    finally:
        await conn.close()
        await watch.close()
    return procs


async def sqlite_gate(url: str, experiment: str, start_all: Callable[[], Procs]) -> Procs:
    """"At the same moment" on SQLite: the write lock is held until both processes have the ledger open (their
    next step is the write that decides the run), and a moment more."""
    path = Place.of(url).path
    assert path is not None
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")
        procs = start_all()
        while not all(has_open(p.pid, path) for p in procs):
            assert all(p.poll() is None for p in procs), finish(procs)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    return procs


def has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.path.realpath(fd) == str(path.resolve()) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # a descriptor closed while being read
        return False


@pytest.fixture
def proxy(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Any:
    with FaultProxy(moto.url) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        yield p


async def expired_chains(url: str, moto: Moto, n: int) -> list[str]:
    """`n` endpoint chains on the cloud, recorded in the ledger and past their expiry; the endpoints' names."""
    client = sagemaker(moto)
    now = datetime.now(UTC)
    async with open_engine(url) as engine:
        ledger = Ledger(engine)
        exp = await ledger.experiment("shared", create_at=now - timedelta(hours=2))
        assert exp is not None
        run = await ledger.start_run(exp.id, digest="d", backend="sagemaker", region="us-east-1",
                                     config_path="-", at=now - timedelta(hours=2), user="someone")
        await ledger.update_run(run.id, status="succeeded", finished_at=now - timedelta(hours=2))
        for i in range(n):
            base = f"shared-r{i}"
            client.create_model(ModelName=f"{base}-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/R",
                                PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://b/m.tar.gz"})
            client.create_endpoint_config(EndpointConfigName=f"{base}-config", ProductionVariants=[{
                "VariantName": "AllTraffic", "ModelName": f"{base}-model", "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large"}])
            client.create_endpoint(EndpointName=f"{base}-endpoint", EndpointConfigName=f"{base}-config")
            for kind, suffix, status in ((Kind.MODEL, "model", "Present"), (Kind.ENDPOINT_CONFIG, "config", "Present"),
                                         (Kind.ENDPOINT, "endpoint", "InService")):
                row = await ledger.add_resource(run.id, kind, f"{base}-{suffix}", {}, at=now - timedelta(hours=2),
                                                expires_at=now - timedelta(hours=1))
                await ledger.record(row.id, Observation(status=status), at=now - timedelta(hours=1))
    return [f"shared-r{i}-endpoint" for i in range(n)]


async def test_two_gc_at_once_on_two_machines_delete_each_endpoint_once(
    moto: Moto, proxy: FaultProxy, database: str, tmp_path: Path
) -> None:
    endpoints = await expired_chains(database, moto, 3)
    procs = [start(jobman_cmd("gc", "--backend", "sagemaker"), machine(tmp_path, m, database), tmp_path)
             for m in "ab"]
    results = finish(procs)
    assert [code for code, _, _ in results] == [0, 0], results
    assert proxy.count("DeleteEndpoint") == len(endpoints)
    assert sagemaker(moto).list_endpoints()["Endpoints"] == []
    assert sagemaker(moto).list_models()["Models"] == []
    deleting = await ledger_rows(database, "SELECT r.name FROM events e JOIN resources r ON r.id = e.resource_id "
                                           "WHERE e.to_status = 'Deleting' ORDER BY r.name")
    assert [name for (name,) in deleting] == sorted(endpoints)
    leases = await ledger_rows(database, "SELECT name FROM leases")
    assert leases == []  # released by both
    assert not any("could not serialize" in err or "deadlock" in err for _, _, err in results)


def hold(what: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """A process holding `what` in the ledger (see tests/team_holder.py), once it says so."""
    holder = subprocess.Popen([sys.executable, "-m", "tests.team_holder", what, *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line == "held\n", holder.communicate(timeout=30)
    return holder


def kill_9(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


async def test_a_gc_killed_while_holding_the_gc_lease_stops_the_next_one_only_for_the_lease(
    moto: Moto, postgres_url: str, tmp_path: Path
) -> None:
    endpoints = await expired_chains(postgres_url, moto, 1)
    holder = hold("gc", machine(tmp_path, "a", postgres_url, JOBMAN_LEASE_S=LEASE_S))
    held = await ledger_rows(postgres_url, "SELECT holder, expires_at FROM leases WHERE name = 'gc'")
    kill_9(holder)
    assert held and held[0][0].startswith("user-a@machine-a pid ")
    [(code, out, err)] = finish([start(jobman_cmd("gc", "--backend", "sagemaker"),
                                       machine(tmp_path, "b", postgres_url, JOBMAN_LEASE_S=LEASE_S), tmp_path)])
    assert code == 0, err
    assert "note: waiting for user-a@" in err and "holds the gc lease" in err
    assert endpoints[0] in out
    assert sagemaker(moto).list_endpoints()["Endpoints"] == []


async def test_a_run_killed_while_held_is_resumed_by_another_machine_after_the_lease(
    moto: Moto, postgres_url: str, tmp_path: Path
) -> None:
    path, name = aws_experiment(moto, tmp_path)
    async with open_engine(postgres_url):
        pass  # the schema, before the holder uses it
    holder = hold("run", machine(tmp_path, "a", postgres_url, JOBMAN_LEASE_S=LEASE_S), str(path))
    kill_9(holder)
    [(code, out, err)] = finish([start(jobman_cmd("run", str(path)),
                                       machine(tmp_path, "b", postgres_url, JOBMAN_LEASE_S=LEASE_S), tmp_path)])
    assert code == 0, err
    assert f"{name} run 1 is being worked on by user-a@" in out and f"resuming {name} run 1" in out, out
    runs = await ledger_rows(postgres_url, "SELECT number, status, started_by_user, held_by FROM runs")
    assert runs == [(1, "succeeded", "user-a", None)]
    jobs = sagemaker(moto).list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == [f"{name}-r1-train"]


async def test_a_holder_killed_on_this_machine_is_taken_over_at_once(
    moto: Moto, postgres_url: str, tmp_path: Path
) -> None:
    """On one machine a dead holder is known dead (its pid is gone): nobody waits for its lease (60 s here)."""
    holder = hold("gc", machine(tmp_path, "a", postgres_url, JOBMAN_HOST="same"))
    kill_9(holder)
    [(code, _, err)] = finish([start(jobman_cmd("gc", "--backend", "sagemaker"),
                                     machine(tmp_path, "b", postgres_url, JOBMAN_HOST="same"), tmp_path)])
    assert code == 0, err
    assert f"note: user-a@same pid {holder.pid}, which held the gc lease, has stopped: taking it over" in err
    assert "waiting for" not in err


def test_db_commands_and_status_mine_on_a_postgresql_ledger(postgres_url: str, tmp_path: Path) -> None:
    def run(*args: str, user: str = "a") -> tuple[int, str, str]:
        [result] = finish([start(jobman_cmd(*args), machine(tmp_path, user, postgres_url), tmp_path)])
        return result

    assert run("db", "current") == (0, f"ledger: empty; needed: {HEAD_REVISION}\n", "")
    assert run("db", "upgrade") == (0, f"ledger schema at {HEAD_REVISION}\n", "")
    assert run("db", "current") == (0, f"ledger: {HEAD_REVISION}; needed: {HEAD_REVISION}\n", "")
    asyncio.run(started_runs(postgres_url, {"alpha": "user-a", "beta": "user-b"}))
    code, out, err = run("status", "--json", "--mine", user="b")
    assert code == 0, err
    assert [(e["name"], e["started_by"]["user"]) for e in json.loads(out)["experiments"]] == [("beta", "user-b")]
    code, out, err = run("status")
    assert code == 0 and "alpha · run 1 · running · sagemaker/us-east-1 · by user-a@machine-a" in out, out + err
    assert run("status", "--mine", user="c")[1] == "no experiments of yours in the ledger\n"


async def started_runs(url: str, starters: dict[str, str]) -> None:
    async with open_engine(url) as engine:
        ledger = Ledger(engine)
        for name, user in starters.items():
            claim = await ledger.open_run(name, digest="d", backend="sagemaker", region="us-east-1",
                                          config_path="-", at=datetime.now(UTC), holder=f"{user}@x pid 1",
                                          lease_s=60, user=user, host=f"machine-{user[-1]}")
            await ledger.release_run(claim.run.id, holder=f"{user}@x pid 1")


async def test_status_for_a_role_that_may_only_read(
    moto: Moto, postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """A dashboard's database role reads a shared ledger: expired resources are shown as recorded, with a note."""
    endpoints = await expired_chains(postgres_url, moto, 1)
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reader') THEN "
                         "CREATE ROLE reader LOGIN; END IF; END $$")
    postgres_server.psql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader", database)
    reader = postgres_url.replace("postgres@", "reader@")
    [(code, out, err)] = finish([start(jobman_cmd("status", "--json"), machine(tmp_path, "a", reader), tmp_path)])
    assert code == 0, err
    assert err == "note: the ledger is read-only for this user: expired resources were not looked at again\n"
    assert endpoints[0] in out
