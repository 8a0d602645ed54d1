"""No hang when the local cloud goes away: a stopped server is started again and the run goes on; a server
that cannot start ends the run quickly with the resume command, and the resumed run finishes."""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

import pytest

from jobman.backends.local import daemon
from jobman.backends.local.daemon import stop_server
from jobman.backends.local.store import layout
from tests.conftest import jobman, jobman_cmd, write_experiment
from tests.integration.local_fixtures import LocalServer, wait_for
from tests.integration.test_local_run import EXPERIMENT, ledger_statuses, names_on_backend

pytestmark = pytest.mark.slow


def start_run(path: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(jobman_cmd("run", str(path)), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_server_stopped_during_a_run_is_started_again(local_server: LocalServer, tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "exp.toml")
    process = start_run(path, tmp_path)
    wait_for(lambda: ledger_statuses(local_server.home).get(f"{EXPERIMENT}-r1-train") == "InProgress",
             timeout_s=90, interval_s=0.02)
    assert stop_server(local_server.home)  # `jobman local stop`: the training process keeps going
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr + stdout
    assert "(will retry)" not in stdout and "RMSE" in stdout
    [exp] = json.loads(jobman("status", "--json", cwd=tmp_path).stdout)["experiments"]
    assert exp["status"] == "succeeded"


def test_a_server_that_cannot_start_ends_the_run_within_a_minute(local_server: LocalServer, tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "exp.toml")
    process = start_run(path, tmp_path)
    wait_for(lambda: ledger_statuses(local_server.home).get(f"{EXPERIMENT}-r1-endpoint") == "Creating",
             timeout_s=90, interval_s=0.02)
    where = layout(local_server.home)
    # Stop the server and hold its lock, as a hung server would: no new server can start on this home.
    with daemon._start_lock(where):
        daemon._stop(where, stop_endpoints=False)
        lock = where.server_lock.open("ab")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        stdout, stderr = process.communicate(timeout=120)  # the server's start timeout is 30 s
    finally:
        lock.close()
    assert process.returncode == 4, stderr + stdout
    [line] = stderr.splitlines()
    assert line.startswith("Error: ") and "the local server stopped and could not be started again" in line
    assert f"`jobman run {path}` resumes it" in line and f"`jobman stop {EXPERIMENT}` tears it down" in line

    resumed = jobman("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resuming boston-xgboost run 1" in resumed.stdout
    server = LocalServer(local_server.home, json.loads(jobman("local", "status", "--json", cwd=tmp_path).stdout)["url"])
    assert names_on_backend(server)["endpoints"] == []
