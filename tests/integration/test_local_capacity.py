"""Training capacity against a real local server with JOBMAN_LOCAL_MAX_TRAINING=1 and real XGBoost workers."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from jobman.backends.local import supervisor
from jobman.backends.local.store import read_json
from tests.integration import local_fixtures
from tests.integration.local_fixtures import LocalServer, wait_for
from tests.integration.test_local_training import _start

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

pytestmark = pytest.mark.slow
NAMES = ("cap-first", "cap-second", "cap-third")


@pytest.fixture
def one_slot_server(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """A local server started with one training slot (the variable is read as the server starts)."""
    monkeypatch.setenv("JOBMAN_LOCAL_MAX_TRAINING", "1")
    yield request.getfixturevalue("local_server")


def _waiting(described: dict[str, Any]) -> bool:
    transitions = described["SecondaryStatusTransitions"]
    return (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("InProgress", "Starting") and (
        "waiting for capacity" in transitions[-1]["StatusMessage"]) and "TrainingStartTime" not in described


def test_one_slot_runs_jobs_one_at_a_time_in_creation_order(one_slot_server: LocalServer) -> None:
    server = one_slot_server
    sm = _start(server, NAMES[0], hyper={"num_round": "30", "objective": "reg:squarederror"})
    # The first worker is frozen as soon as it exists, so it holds the only slot while the others are created,
    # however slow this machine is; then it is let go.
    worker = server.root / "training" / server.region / NAMES[0] / "worker.json"
    first = wait_for(lambda: supervisor.ProcessRef.from_json(read_json(worker)), interval_s=0.001)
    supervisor.send_signal(first, signal.SIGSTOP)
    waiting_seen = set()
    try:
        for name in NAMES[1:]:
            _start(server, name, hyper={"num_round": "30", "objective": "reg:squarederror"})
            if _waiting(sm.describe_training_job(TrainingJobName=name)):
                waiting_seen.add(name)
    finally:
        supervisor.send_signal(first, signal.SIGCONT)
    assert waiting_seen == set(NAMES[1:])

    most_alive = 0

    def all_done() -> bool:
        """Watched through the state files only: no client call, so the server's own loop must start them."""
        nonlocal most_alive
        most_alive = max(most_alive, len(server.worker_pids()))
        statuses = [read_json(server.root / "training" / server.region / name / "status.json") for name in NAMES]
        return all(s["TrainingJobStatus"] not in ("InProgress", "Stopping") for s in statuses) and not (
            server.worker_pids())

    wait_for(all_done, timeout_s=120, interval_s=0.02)
    assert most_alive <= 1
    described = [sm.describe_training_job(TrainingJobName=name) for name in NAMES]
    assert [d["TrainingJobStatus"] for d in described] == ["Completed"] * 3, [d.get("FailureReason") for d in described]
    for earlier, later in zip(described, described[1:], strict=False):
        # FIFO, one at a time: each job starts only after the one created before it has ended.
        assert later["TrainingStartTime"] >= earlier["TrainingEndTime"]
    for job in described:
        # The wait is not billed: start and billable time count from the worker's real start.
        assert job["TrainingStartTime"] > job["CreationTime"]
        seconds = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
        assert seconds <= job["BillableTimeInSeconds"] < max(1, seconds) + 1.001  # whole seconds, rounded up
        assert [m["MetricName"] for m in job["FinalMetricDataList"]] == ["train:rmse", "validation:rmse"]
    waited = described[2]["SecondaryStatusTransitions"][0]
    assert waited["Status"] == "Starting" and waited["StatusMessage"] == "Preparing the instances for training"
