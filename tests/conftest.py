"""Shared fixtures: a private JOBMAN_HOME for every test, a migrated ledger, a fake clock."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobman.clock import FakeClock
from jobman.ledger.db import open_engine
from jobman.ledger.location import database_url
from jobman.ledger.store import Ledger
from tests.postgres import PostgresServer, start_server

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "boston.toml"
SCHEDULER_ROLE_ARN = "arn:aws:iam::123456789012:role/JobmanScheduler"
# The example on the AWS backend: it then needs the role its TTL schedules assume.
SAGEMAKER = {'backend = "local"': 'backend = "sagemaker"',
             "[aws]": f'[aws]\nscheduler_role_arn = "{SCHEDULER_ROLE_ARN}"'}


@pytest.fixture(autouse=True)
def jobman_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "jobman-home"
    monkeypatch.setenv("JOBMAN_HOME", str(home))
    monkeypatch.delenv("JOBMAN_DB_URL", raising=False)
    monkeypatch.setenv("JOBMAN_LOCAL_IDLE_S", "60")
    # No test may reach real AWS: no credentials but those a test sets (moto's), no instance-metadata lookups.
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test process (each xdist worker its own), stopped at the end of the session."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, jobman_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty PostgreSQL database for this test, named by JOBMAN_DB_URL (so child processes use it too)."""
    url = postgres_server.create_database()
    monkeypatch.setenv("JOBMAN_DB_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, jobman_home: Path) -> str:
    """The ledger's URL, once for each database: SQLite in JOBMAN_HOME, then a fresh PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return database_url()


@pytest.fixture
async def ledger(database: str) -> AsyncIterator[Ledger]:
    async with open_engine(database) as engine:
        yield Ledger(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def jobman_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobman", *args]


def jobman(*args: str, cwd: Path, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in its own process; COLUMNS keeps rich tables from folding names."""
    return subprocess.run(jobman_cmd(*args), cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=timeout_s)


def write_experiment(path: Path, replace: dict[str, str] | None = None) -> Path:
    """The example experiment, with text replacements (old -> new), written to `path`."""
    body = EXAMPLE.read_text()
    for old, new in (replace or {}).items():
        assert old in body, old
        body = body.replace(old, new)
    path.write_text(body)
    return path
