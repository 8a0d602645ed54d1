"""Cost safety on the local backend, as a user meets it: the TTL holds with no jobman process running, and a
failure after deploy leaves nothing serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobman.backends.local.daemon import stop_server
from tests.conftest import jobman, write_experiment
from tests.integration.local_fixtures import LocalServer, wait_for
from tests.integration.test_local_run import EXPERIMENT, names_on_backend, schedules_on_backend

pytestmark = pytest.mark.slow


def test_a_kept_endpoint_disappears_at_its_ttl_with_no_jobman_running(
    local_server: LocalServer, tmp_path: Path
) -> None:
    path = write_experiment(tmp_path / "exp.toml", {"keep = false": "keep = true", 'ttl = "1h"': 'ttl = "20s"'})
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert names_on_backend(local_server)["endpoints"] == [f"{EXPERIMENT}-r1-endpoint"]
    assert len(schedules_on_backend(local_server)) == 3
    # No jobman command from here on: the server's schedules do the work.
    wait_for(lambda: names_on_backend(local_server)["endpoints"] == [], timeout_s=120, interval_s=0.5)
    wait_for(lambda: names_on_backend(local_server)["configs"] == [] and names_on_backend(local_server)["models"] == [],
             timeout_s=120, interval_s=0.5)
    wait_for(lambda: schedules_on_backend(local_server) == [], timeout_s=30, interval_s=0.5)
    assert names_on_backend(local_server)["jobs"] == [f"{EXPERIMENT}-r1-train"]

    # As after an idle stop: `jobman status` starts the server to look, and shows why the chain is gone.
    stop_server(local_server.home)
    shown = jobman("status", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    [exp] = json.loads(shown.stdout)["experiments"]
    chain = [r for r in exp["resources"] if r["kind"] != "training_job"]
    assert len(chain) == 6
    assert {(r["status"], r["ttl_expired"]) for r in chain} == {("Absent", True)}
    table = jobman("status", cwd=tmp_path)
    assert "expired" in table.stdout
    events = jobman("reconcile", cwd=tmp_path)  # nothing left to do, and no drift to report
    assert events.returncode == 0 and "0 errors" in events.stdout


def test_a_failure_during_evaluation_tears_the_endpoint_down(local_server: LocalServer, tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "exp.toml")
    # Every input passes the checks; writing the predictions fails only once the endpoint has served them.
    (tmp_path / "jobman-output" / f"{EXPERIMENT}-r1" / "predictions.csv").mkdir(parents=True)
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr + done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: cannot write the run's outputs in") and "predictions.csv" in line
    on_backend = names_on_backend(local_server)
    assert on_backend["jobs"] == [f"{EXPERIMENT}-r1-train"]  # the failure came after training and deploying
    assert on_backend["endpoints"] == [] and on_backend["configs"] == [] and on_backend["models"] == []
    assert schedules_on_backend(local_server) == []
    [exp] = json.loads(jobman("status", "--json", cwd=tmp_path).stdout)["experiments"]
    assert exp["status"] == "failed" and "predictions.csv" in exp["message"]
