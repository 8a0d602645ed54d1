"""`jobman run` on the local backend as a user runs it: real training, real endpoints, real processes.

Kept endpoints outlive the jobman process and a server restart; kill -9 at any point and a rerun
converge with nothing created twice; Ctrl-C leaves a resumable run; gc reaps what outlived its TTL.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobman.backends.local.daemon import ensure_running, stop_server
from jobman.timing import Timing
from tests.conftest import jobman, jobman_cmd, write_experiment
from tests.integration.local_fixtures import LocalServer, wait_for

pytestmark = pytest.mark.slow
EXPERIMENT = "boston-xgboost"
LOCAL_POLL_S = Timing.for_backend("local").endpoint_poll_s


def ledger_statuses(home: Path) -> dict[str, str]:
    """Resource name -> observed status, read straight from the ledger file (as another process would)."""
    path = home / "ledger.db"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return dict(conn.execute("SELECT name, status FROM resources").fetchall())
    except sqlite3.OperationalError:  # created but not yet migrated
        return {}


def kill_9_run_when(path: Path, reached: Callable[[], bool], timeout_s: float = 90, interval_s: float = 0.02) -> None:
    """Start `jobman run PATH` (in its folder) and kill -9 it as soon as `reached()` holds."""
    process = subprocess.Popen(jobman_cmd("run", str(path)), cwd=path.parent, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(reached, timeout_s=timeout_s, interval_s=interval_s)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)


def status_json(cwd: Path) -> dict[str, Any]:
    shown = jobman("status", "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def names_on_backend(server: LocalServer) -> dict[str, list[str]]:
    sm = server.client("sagemaker")
    jobs = sm.list_training_jobs(NameContains=EXPERIMENT)["TrainingJobSummaries"]
    configs = sm.list_endpoint_configs(NameContains=EXPERIMENT)["EndpointConfigs"]
    return {
        "jobs": [j["TrainingJobName"] for j in jobs],
        "endpoints": [e["EndpointName"] for e in sm.list_endpoints(NameContains=EXPERIMENT)["Endpoints"]],
        "configs": [c["EndpointConfigName"] for c in configs],
        "models": [m["ModelName"] for m in sm.list_models(NameContains=EXPERIMENT)["Models"]],
    }


def schedules_on_backend(server: LocalServer) -> list[str]:
    scheduler = server.client("scheduler")
    try:
        return [s["Name"] for s in scheduler.list_schedules(GroupName="jobman")["Schedules"]]
    except scheduler.exceptions.ResourceNotFoundException:
        return []


def test_kept_endpoint_outlives_jobman_and_a_server_restart(local_server: LocalServer, tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "exp.toml", {"keep = false": "keep = true"})
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "RMSE" in done.stdout and "kept" in done.stdout
    endpoint = f"{EXPERIMENT}-r1-endpoint"
    features = (tmp_path / "jobman-output" / f"{EXPERIMENT}-r1" / "data" / "test_features.csv").read_bytes()

    def predict() -> list[str]:
        runtime = local_server.client("sagemaker-runtime")
        body = runtime.invoke_endpoint(EndpointName=endpoint, Body=features, ContentType="text/csv")["Body"].read()
        return body.decode().split()

    before = predict()  # the jobman process that started it has exited
    assert len(before) == features.count(b"\n")
    stop_server(local_server.home)  # endpoints keep running, as real ones do
    local_server.url = ensure_running(local_server.home, idle_timeout_s=120)
    assert predict() == before
    view = status_json(tmp_path)
    [exp] = view["experiments"]
    states = {r["kind"]: r["status"] for r in exp["resources"]}
    assert states["endpoint"] == "InService" and exp["status"] == "succeeded"
    assert 0 < next(r for r in exp["resources"] if r["kind"] == "endpoint")["ttl_left_s"] <= 3600

    stopped = jobman("stop", EXPERIMENT, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    on_backend = names_on_backend(local_server)
    assert on_backend["endpoints"] == [] and on_backend["configs"] == [] and on_backend["models"] == []
    assert schedules_on_backend(local_server) == []
    local = jobman("local", "status", "--json", cwd=tmp_path)
    assert not json.loads(local.stdout)["endpoints"]


@pytest.mark.parametrize("moment", ["training", "endpoint-creating", "evaluating"])
def test_kill_9_then_rerun_converges(local_server: LocalServer, tmp_path: Path, moment: str) -> None:
    path = write_experiment(tmp_path / "exp.toml")
    wanted = {
        "training": (f"{EXPERIMENT}-r1-train", {"InProgress"}),
        "endpoint-creating": (f"{EXPERIMENT}-r1-endpoint", {"Pending", "Creating"}),
        "evaluating": (f"{EXPERIMENT}-r1-endpoint", {"InService"}),
    }[moment]
    kill_9_run_when(path, lambda: ledger_statuses(local_server.home).get(wanted[0]) in wanted[1])

    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "resuming boston-xgboost run 1" in done.stdout
    on_backend = names_on_backend(local_server)
    assert on_backend == {"jobs": [f"{EXPERIMENT}-r1-train"], "endpoints": [], "configs": [], "models": []}
    # Every resource accounted for, and the ledger agrees with the backend.
    [exp] = status_json(tmp_path)["experiments"]
    assert exp["run"] == 1 and exp["status"] == "succeeded"
    assert {r["name"]: r["status"] for r in exp["resources"]} == {
        f"{EXPERIMENT}-r1-train": "Completed",
        f"{EXPERIMENT}-r1-model": "Absent",
        f"{EXPERIMENT}-r1-config": "Absent",
        f"{EXPERIMENT}-r1-endpoint": "Absent",
        f"{EXPERIMENT}-r1-ttl-model": "Absent",
        f"{EXPERIMENT}-r1-ttl-config": "Absent",
        f"{EXPERIMENT}-r1-ttl-endpoint": "Absent",
    }
    assert schedules_on_backend(local_server) == []


def test_ctrl_c_saves_state_and_says_how_to_resume(local_server: LocalServer, tmp_path: Path) -> None:
    # The interrupt lands while a ledger write is in flight, every time: the moment that once printed SQLAlchemy's
    # "Exception during reset or similar" traceback. While the endpoint is Creating, the run cannot go on without
    # writing the ledger (each poll records what it saw), so the test holds the ledger's write lock from then on:
    # once the server says InService (and so answers the run's polls again), the run's next write waits inside its
    # transaction (BEGIN IMMEDIATE, busy_timeout); SIGINT cancels the run there, and the lock is let go. The write
    # completes, then the run stops. (test_ledger_cli.py interrupts a fake run at many other moments.)
    path = write_experiment(tmp_path / "exp.toml")
    endpoint = f"{EXPERIMENT}-r1-endpoint"
    sagemaker = local_server.client("sagemaker")
    process = subprocess.Popen(jobman_cmd("run", str(path)), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: ledger_statuses(local_server.home).get(endpoint) == "Creating", timeout_s=90, interval_s=0.02)
    lock = sqlite3.connect(local_server.home / "ledger.db", isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")
        [(held_at, seen)] = lock.execute("SELECT status, observed_at FROM resources WHERE name = ?", (endpoint,))
        assert held_at == "Creating"  # so the run's next poll needs the lock we hold
        # Well within the run's busy_timeout (30 s), after which its write would fail instead of waiting.
        wait_for(lambda: sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService",
                 timeout_s=20, interval_s=0.05)
        time.sleep(4 * LOCAL_POLL_S)  # by now the run's poll has its answer and waits inside its ledger write
        process.send_signal(signal.SIGINT)
        time.sleep(LOCAL_POLL_S)  # the cancellation reaches the run while its write still waits
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stderr == (f"Interrupted. The ledger holds the run's state; every endpoint has a TTL.\n"
                      f"  resume:    jobman run {path}\n  tear down: jobman stop {EXPERIMENT}\n")
    [exp] = status_json(tmp_path)["experiments"]
    shown = next(r for r in exp["resources"] if r["kind"] == "endpoint")
    assert exp["status"] == "running" and shown["expires_at"]  # never unbounded
    with sqlite3.connect(f"file:{local_server.home / 'ledger.db'}?mode=ro", uri=True) as conn:
        [(observed_at,)] = conn.execute("SELECT observed_at FROM resources WHERE name = ?", (endpoint,))
    conn.close()
    assert observed_at != seen  # the write in flight when the signal came was recorded, not lost
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0 and "resuming" in done.stdout
    assert names_on_backend(local_server)["endpoints"] == []


def test_gc_reaps_an_expired_kept_endpoint(local_server: LocalServer, tmp_path: Path, database: str) -> None:
    """End to end on the local backend, with the ledger in SQLite and in PostgreSQL (JOBMAN_DB_URL)."""
    # With "gc" enforcement nothing else deletes the expired endpoint (no schedules are made).
    path = write_experiment(tmp_path / "exp.toml", {"keep = false": 'keep = true\nttl_enforcement = "gc"',
                                                   'ttl = "1h"': 'ttl = "1s"'})
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [exp] = status_json(tmp_path)["experiments"]
    assert exp["started_by"]["user"] and exp["local_site"].endswith(str(local_server.home.resolve()))
    assert names_on_backend(local_server)["endpoints"] == [f"{EXPERIMENT}-r1-endpoint"]
    dry = jobman("gc", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and f"{EXPERIMENT}-r1-endpoint" in dry.stdout
    assert names_on_backend(local_server)["endpoints"] == [f"{EXPERIMENT}-r1-endpoint"]
    reaped = jobman("gc", cwd=tmp_path)
    assert reaped.returncode == 0, reaped.stderr
    on_backend = names_on_backend(local_server)
    assert on_backend["endpoints"] == [] and on_backend["configs"] == [] and on_backend["models"] == []
    assert on_backend["jobs"] == [f"{EXPERIMENT}-r1-train"]  # training artifacts are never gc's
