"""Benchmark: `jobman status --json` and one reconcile observation over a large ledger, on SQLite and PostgreSQL.

A team's ledger grows with history: every experiment keeps its runs, most of whose resources are long gone,
while what is live at any moment (kept endpoints, a few runs under way) stays about the same. So the ledger
holds N resources in N/10 experiments (two runs each: a training job and a torn-down chain with its TTL
schedules), and a fixed set of 20 kept endpoint chains is live. Measured at N = 1,000 and N = 10,000:

- `status --json`: the command as a user runs it (its own process, median of 3), reading the whole ledger;
- reconcile: one pass of `jobman reconcile` (lease, read of what is live, bulk observation against the in-memory
  backend, nothing changed), median of 5.

Prints the times and the growth ratio (10,000 / 1,000); target: at most 3x for 10x the data.
PostgreSQL is started in a temporary folder as the tests do it (tests/postgres.py).

    python bench/ledger.py [--sizes 1000 10000] [--databases sqlite postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from jobman.backends.fake import FakeBackend, FakeResource  # noqa: E402
from jobman.clock import SystemClock  # noqa: E402
from jobman.config import AwsConfig  # noqa: E402
from jobman.fleet import reconcile_all  # noqa: E402
from jobman.kinds import Kind  # noqa: E402
from jobman.ledger.db import open_engine  # noqa: E402
from jobman.ledger.models import EventModel, ExperimentModel, ResourceModel, RunModel  # noqa: E402
from jobman.ledger.store import Ledger  # noqa: E402
from tests.postgres import start_server  # noqa: E402

LIVE_CHAINS = 20
TARGET_RATIO = 3.0
HISTORY = [  # (kind, suffix, desired, status) of each run: a training job kept, the rest torn down
    (Kind.TRAINING_JOB, "train", "present", "Completed"),
    (Kind.MODEL, "model", "absent", "Absent"),
    (Kind.ENDPOINT_CONFIG, "config", "absent", "Absent"),
    (Kind.ENDPOINT, "endpoint", "absent", "Absent"),
    (Kind.SCHEDULE, "ttl-endpoint", "absent", "Absent"),
]
LIVE = [(Kind.MODEL, "model", "Present"), (Kind.ENDPOINT_CONFIG, "config", "Present"),
        (Kind.ENDPOINT, "endpoint", "InService")]


async def populate(url: str, n_resources: int, backend: FakeBackend) -> None:
    """N resources of history in N/10 experiments, plus LIVE_CHAINS kept chains that `backend` also holds."""
    now = datetime.now(UTC)
    past = now - timedelta(days=3)
    experiments = n_resources // 10
    async with open_engine(url) as engine, engine.begin() as conn:
        await conn.execute(insert(ExperimentModel), [
            {"id": e + 1, "name": f"exp-{e:05d}", "created_at": past} for e in range(experiments)])
        runs, resources, events = [], [], []
        for e in range(experiments):
            for number in (1, 2):
                run_id = e * 2 + number
                runs.append({"id": run_id, "experiment_id": e + 1, "number": number, "digest": "d" * 64,
                             "backend": "fake", "region": "us-east-1", "config_path": "exp.toml",
                             "status": "succeeded", "metrics": {"rmse": 3.2}, "started_at": past,
                             "finished_at": past, "started_by_user": f"user{e % 7}", "started_by_host": "host"})
                for kind, suffix, desired, status in HISTORY:
                    rid = len(resources) + 1
                    resources.append(_resource(rid, run_id, kind, f"exp-{e:05d}-r{number}-{suffix}", desired, status,
                                               past, {"described": True} if kind is Kind.TRAINING_JOB else None))
                    events.append({"resource_id": rid, "at": past, "from_status": None, "to_status": status})
        live_runs = [e * 2 + 2 for e in range(LIVE_CHAINS)]
        for run_id, e in zip(live_runs, range(LIVE_CHAINS), strict=True):
            for kind, suffix, status in LIVE:
                name = f"exp-{e:05d}-kept-{suffix}"
                resources.append(_resource(len(resources) + 1, run_id, kind, name, "present", status, past, None,
                                           expires_at=now + timedelta(days=1)))
                backend.resources[(kind, name)] = FakeResource(kind, name, {}, f"arn:fake:{name}", past, status)
        await conn.execute(insert(RunModel), runs)
        for start in range(0, len(resources), 2000):
            await conn.execute(insert(ResourceModel), resources[start:start + 2000])
        for start in range(0, len(events), 2000):
            await conn.execute(insert(EventModel), events[start:start + 2000])
        if conn.dialect.name == "postgresql":  # ids were given: move the sequences past them
            for table in ("experiments", "runs", "resources"):
                await conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    async with open_engine(url) as engine, engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("ANALYZE")


def _resource(rid: int, run_id: int, kind: Kind, name: str, desired: str, status: str, at: datetime,
              details: dict[str, object] | None, expires_at: datetime | None = None) -> dict[str, object]:
    return {"id": rid, "run_id": run_id, "kind": kind.value, "name": name, "desired": desired, "status": status,
            "spec": {}, "details": details, "stop_requested": False, "created_at": at, "updated_at": at,
            "expires_at": expires_at, "instance_type": "ml.m5.large", "instance_count": 1}


def time_status(url: str, home: Path, repeats: int = 3) -> float:
    env = {**os.environ, "JOBMAN_DB_URL": url, "JOBMAN_HOME": str(home)}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "jobman", "status", "--json"], env=env, capture_output=True)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr.decode()
    return statistics.median(times)


async def time_reconcile(url: str, backend: FakeBackend, repeats: int = 5) -> float:
    async def open_backend(name: str, aws: AwsConfig) -> FakeBackend:
        return backend

    async with open_engine(url) as engine:
        ledger = Ledger(engine)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            report = await reconcile_all(ledger, open_backend, SystemClock())  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            assert not report.errors and not report.changes, report
    return statistics.median(times)


async def measure(url: str, home: Path, n: int) -> tuple[float, float]:
    backend = FakeBackend(training_polls=0, endpoint_polls=0)
    await populate(url, n, backend)
    return time_status(url, home), await time_reconcile(url, backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    small, large = args.sizes
    server = start_server() if "postgresql" in args.databases else None
    failed = False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{'database':<11} {'resources':>9} {'status --json':>14} {'reconcile':>10}")
            for database in args.databases:
                results = {}
                for n in (small, large):
                    home = Path(tmp) / f"{database}-{n}"
                    home.mkdir()
                    url = (server.create_database() if database == "postgresql" and server
                           else f"sqlite+aiosqlite:///{home / 'ledger.db'}")
                    results[n] = asyncio.run(measure(url, home, n))
                    print(f"{database:<11} {n:>9,} {results[n][0] * 1000:>12.0f}ms {results[n][1] * 1000:>8.1f}ms",
                          flush=True)
                status_ratio = results[large][0] / results[small][0]
                reconcile_ratio = results[large][1] / results[small][1]
                ok = status_ratio <= TARGET_RATIO and reconcile_ratio <= TARGET_RATIO
                failed |= not ok
                print(f"{database:<11} {'ratio':>9} {status_ratio:>13.2f}x {reconcile_ratio:>9.2f}x  "
                      f"(target <= {TARGET_RATIO:.0f}x: {'met' if ok else 'MISSED'})", flush=True)
    finally:
        if server is not None:
            server.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
