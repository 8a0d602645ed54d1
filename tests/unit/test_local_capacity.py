"""Training capacity on the local server: waiting jobs, FIFO starts, stops and restarts, final metrics.

No process is started: a fake spawner hands out pids that a fake `is_alive` says live until the test
ends them, so every step is driven by the test, never by the wall clock.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from jobman.backends.local import capacity, daemon, server, supervisor
from jobman.backends.local.store import Layout, atomic_write_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.training import TrainingManager
from jobman.backends.local.training_state import JobFiles, advance, finish
from jobman.errors import ConfigError
from jobman.images import xgboost_image_uri
from tests.unit.local_app import served

REGION = "us-east-1"


class FakeWorkers:
    """A spawner whose processes live until `end` is called; `spawned` lists job names in start order."""

    def __init__(self) -> None:
        self.spawned: list[str] = []
        self.alive: set[int] = set()
        self.pids: dict[str, int] = {}

    def spawn(self, module: str, args: list[str], log_path: Path) -> ProcessRef:
        name = args[args.index("--name") + 1]
        pid = 10_000 + len(self.spawned)
        self.spawned.append(name)
        self.alive.add(pid)
        self.pids[name] = pid
        return ProcessRef(pid, None)

    def is_alive(self, ref: ProcessRef | None) -> bool:
        return ref is not None and ref.pid in self.alive

    def end(self, manager: TrainingManager, name: str, primary: str = "Completed") -> None:
        """The worker writes its final status and exits, as a real one does."""
        files = manager.files(REGION, name)
        status = files.read_status() or {}
        status["TrainingStartTime"] = status["LastModifiedTime"]
        finish(status, primary, primary, status["LastModifiedTime"] + 1.5)
        files.write_status(status)
        self.alive.discard(self.pids[name])


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> FakeWorkers:
    fake = FakeWorkers()
    monkeypatch.setattr(supervisor, "is_alive", fake.is_alive)
    monkeypatch.setattr(supervisor, "send_signal", lambda *_: True)
    return fake


def _manager(tmp_path: Path, workers: FakeWorkers, limit: int = 1) -> TrainingManager:
    return TrainingManager(Layout(tmp_path / "local"), spawn=workers.spawn, max_training=limit)


def _request(name: str, max_runtime_s: int = 3600) -> dict[str, Any]:
    return {
        "TrainingJobName": name, "RoleArn": "arn:aws:iam::000000000000:role/r",
        "AlgorithmSpecification": {"TrainingImage": xgboost_image_uri(REGION, "1"), "TrainingInputMode": "File"},
        "HyperParameters": {"num_round": "5"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
    }


def _status(manager: TrainingManager, name: str) -> dict[str, Any]:
    return manager.describe(REGION, manager.records(REGION).get(name) or {})


# --- the limit ---


@pytest.mark.parametrize("raw", ["0", "-2", "abc", "1.5", " "])
def test_bad_limit_is_one_line_naming_the_variable(raw: str) -> None:
    if raw == " ":  # blank means unset: the number of cores
        assert capacity.max_training({capacity.ENV: raw}) >= 1
        return
    with pytest.raises(ConfigError) as caught:
        capacity.max_training({capacity.ENV: raw})
    message = str(caught.value)
    assert "JOBMAN_LOCAL_MAX_TRAINING" in message and repr(raw) in message and "\n" not in message


def test_limit_defaults_to_cores_and_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity.os, "cpu_count", lambda: 6)
    assert capacity.max_training({}) == 6
    assert capacity.max_training({capacity.ENV: "3"}) == 3


def test_server_refuses_to_start_on_a_bad_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(capacity.ENV, "many")
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    with caplog.at_level(logging.ERROR, logger="jobman.local.server"):
        assert server.main(["--home", str(tmp_path / "home")]) == 2
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("JOBMAN_LOCAL_MAX_TRAINING must be a positive integer") and "\n" not in line
    with pytest.raises(ConfigError, match="JOBMAN_LOCAL_MAX_TRAINING"):  # the CLI's path: refused before spawning
        daemon.ensure_running(tmp_path / "home")
    assert not (tmp_path / "home" / "local" / "server.json").exists()


def test_to_start_takes_the_oldest_into_free_slots() -> None:
    jobs = [capacity.Waiting(3, REGION, "c"), capacity.Waiting(1, REGION, "a"), capacity.Waiting(2, REGION, "b")]
    assert [j.name for j in capacity.to_start(jobs, busy=1, limit=3)] == ["a", "b"]
    assert capacity.to_start(jobs, busy=3, limit=2) == []


# --- waiting and starting ---


def test_jobs_over_the_limit_wait_in_starting_and_start_in_creation_order(tmp_path: Path,
                                                                         workers: FakeWorkers) -> None:
    manager = _manager(tmp_path, workers, limit=1)
    for name in ("job-c", "job-a", "job-b"):  # creation order, not name order
        manager.create(REGION, _request(name))
    assert workers.spawned == ["job-c"]
    for name in ("job-a", "job-b"):
        waiting = _status(manager, name)
        assert (waiting["TrainingJobStatus"], waiting["SecondaryStatus"]) == ("InProgress", "Starting")
        [transition] = waiting["SecondaryStatusTransitions"]
        assert transition["Status"] == "Starting" and "waiting for capacity" in transition["StatusMessage"]
        assert "JOBMAN_LOCAL_MAX_TRAINING" in transition["StatusMessage"]
        assert "TrainingStartTime" not in waiting and "BillableTimeInSeconds" not in waiting
    assert [s["TrainingJobStatus"] for s in (manager.summary(REGION, r) for r in manager.records(REGION).all())] == [
        "InProgress"] * 3

    manager.tick()  # nothing freed: nothing more starts
    assert workers.spawned == ["job-c"]
    workers.end(manager, "job-c")
    manager.tick()
    assert workers.spawned == ["job-c", "job-a"]
    started = manager.files(REGION, "job-a").read_status() or {}
    assert started["SecondaryStatusTransitions"][0]["StatusMessage"] == "Preparing the instances for training"
    workers.end(manager, "job-a", "Failed")  # a failed job frees its slot as well
    manager.tick()
    assert workers.spawned == ["job-c", "job-a", "job-b"]
    assert manager.counts() == {"Completed": 1, "Failed": 1, "InProgress": 1}


def test_a_worker_that_wrote_its_end_holds_its_slot_until_it_exits(tmp_path: Path, workers: FakeWorkers) -> None:
    manager = _manager(tmp_path, workers, limit=1)
    manager.create(REGION, _request("first"))
    manager.create(REGION, _request("second"))
    workers.end(manager, "first")
    workers.alive.add(workers.pids["first"])  # Completed in its file, but the process has not exited yet
    manager.tick()
    assert workers.spawned == ["first"]
    workers.alive.discard(workers.pids["first"])
    manager.tick()
    assert workers.spawned == ["first", "second"]


def test_describe_and_list_start_a_waiting_job_without_a_tick(tmp_path: Path, workers: FakeWorkers) -> None:
    manager = _manager(tmp_path, workers, limit=1)
    for name in ("one", "two", "three"):
        manager.create(REGION, _request(name))
    workers.end(manager, "one")
    assert _status(manager, "one")["TrainingJobStatus"] == "Completed"  # describing any job hands the slot on
    assert workers.spawned == ["one", "two"]


async def test_list_training_jobs_starts_waiting_jobs(tmp_path: Path, workers: FakeWorkers,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    async with served(tmp_path / "home") as (app, url):
        app.training.spawn, app.training.max_training = workers.spawn, 1
        sm = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name=REGION).client(
            "sagemaker", endpoint_url=url, config=Config(retries={"total_max_attempts": 1}))
        for name in ("one", "two"):
            request = {**_request(name), "InputDataConfig": [{"ChannelName": "train", "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}}}]}
            await asyncio.to_thread(sm.create_training_job, **request)
        assert workers.spawned == ["one"]
        workers.end(app.training, "one")
        listed = (await asyncio.to_thread(sm.list_training_jobs, SortBy="CreationTime"))["TrainingJobSummaries"]
        assert workers.spawned == ["one", "two"]
        assert {s["TrainingJobName"]: s["TrainingJobStatus"] for s in listed} == {
            "one": "Completed", "two": "InProgress"}


def test_stopping_a_waiting_job_never_starts_it(tmp_path: Path, workers: FakeWorkers) -> None:
    manager = _manager(tmp_path, workers, limit=1)
    manager.create(REGION, _request("running"))
    manager.create(REGION, _request("waiting"))
    assert manager.stop(REGION, "waiting") == "InProgress"
    stopped = _status(manager, "waiting")
    assert (stopped["TrainingJobStatus"], stopped["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert [t["Status"] for t in stopped["SecondaryStatusTransitions"]] == ["Starting", "Stopping", "Stopped"]
    assert "TrainingStartTime" not in stopped and "BillableTimeInSeconds" not in stopped
    workers.end(manager, "running")
    manager.tick()
    assert workers.spawned == ["running"]
    assert manager.stop(REGION, "waiting") == "Stopped"  # StopTrainingJob's caller then says it cannot


def test_a_stop_left_unsettled_by_a_dead_server_settles_as_stopped(tmp_path: Path, workers: FakeWorkers) -> None:
    manager = _manager(tmp_path, workers, limit=1)
    manager.create(REGION, _request("running"))
    manager.create(REGION, _request("waiting"))
    atomic_write_json(manager.files(REGION, "waiting").stop, {"at": 1.0, "secondary": "Stopped"})  # then it died
    workers.end(manager, "running")
    TrainingManager(manager.layout, spawn=workers.spawn, max_training=1).tick()
    assert workers.spawned == ["running"]
    assert _status(manager, "waiting")["TrainingJobStatus"] == "Stopped"


def test_a_restarted_server_loses_no_waiting_job(tmp_path: Path, workers: FakeWorkers) -> None:
    first = _manager(tmp_path, workers, limit=1)
    for name in ("a", "b", "c"):
        first.create(REGION, _request(name))
    workers.end(first, "a")
    del first  # the server goes; its memory with it
    second = _manager(tmp_path, workers, limit=1)
    second.tick()
    assert workers.spawned == ["a", "b"]
    workers.end(second, "b")
    second.tick()
    assert workers.spawned == ["a", "b", "c"]


def test_starts_happen_under_the_lock_so_two_servers_never_start_one_job(tmp_path: Path,
                                                                       workers: FakeWorkers) -> None:
    layout = Layout(tmp_path / "local")
    lock_file = layout.root / "training" / ".start.lock"
    held_while_spawning = []

    def spawn(module: str, args: list[str], log_path: Path) -> ProcessRef:
        with lock_file.open("ab") as other:  # another process's view of the lock, while this one spawns
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held_while_spawning.append(False)
                fcntl.flock(other, fcntl.LOCK_UN)
            except BlockingIOError:
                held_while_spawning.append(True)
        return workers.spawn(module, args, log_path)

    one = TrainingManager(layout, spawn=spawn, max_training=5)
    other = TrainingManager(layout, spawn=spawn, max_training=5)
    files = JobFiles(layout.training_dir(REGION, "j"))
    one.create(REGION, _request("j"))
    other.start_waiting()  # sees the first server's worker.json: does not start the job again
    one.start_waiting()
    assert workers.spawned == ["j"] and held_while_spawning == [True]
    assert files.worker.exists()


def test_max_runtime_counts_from_the_real_start_not_the_wait(tmp_path: Path, workers: FakeWorkers) -> None:
    manager = _manager(tmp_path, workers, limit=1)
    manager.create(REGION, _request("first"))
    manager.create(REGION, _request("waited", max_runtime_s=60))
    records = manager.records(REGION)
    record = records.get("waited") or {}
    record["CreationTime"] = time.time() - 3600  # it waited an hour for its slot
    records.put("waited", record)
    workers.end(manager, "first")
    manager.tick()  # starts it
    files = manager.files(REGION, "waited")
    status = files.read_status() or {}
    advance(status, "InProgress", "Downloading", time.time())  # what the worker writes first
    files.write_status(status)
    manager.tick()
    assert files.stop_request() is None
    assert _status(manager, "waited")["TrainingJobStatus"] == "InProgress"


# --- final metrics ---


def test_final_metrics_are_the_last_logged_round_even_with_early_stopping(tmp_path: Path) -> None:
    """SageMaker's FinalMetricDataList holds the last value the metric regexes found in the log; with early
    stopping that is the last round's (best + early_stopping_rounds), not the best round's."""
    import numpy as np
    import xgboost as xgb

    from jobman.backends.local.training_worker import _round_logger

    class Run:
        def __init__(self) -> None:
            self.files = JobFiles(tmp_path)
            self.lines: list[str] = []

        def log(self, *lines: str) -> None:
            self.lines.extend(lines)

    rng = np.random.default_rng(0)
    x, noise = rng.random((200, 3)), rng.random(200)  # validation labels are noise: it overfits at once
    train = xgb.DMatrix(x[:150], label=x[:150, 0] * 5)
    validation = xgb.DMatrix(x[150:], label=noise[150:] * 5)
    run = Run()
    logger = _round_logger(run)
    booster = xgb.train({"max_depth": 4, "eta": 0.5, "nthread": 1}, train, num_boost_round=200,
                        evals=[(train, "train"), (validation, "validation")], early_stopping_rounds=3,
                        callbacks=[logger], verbose_eval=False)
    rounds = run.files.read_rounds()
    best = int(booster.attr("best_iteration"))
    assert len(rounds) == best + 4 < 200  # it did stop early
    final = logger.final_metrics()
    assert [m["MetricName"] for m in final] == ["train:rmse", "validation:rmse"]
    last_stamp, last_values = rounds[-1]
    assert {m["MetricName"]: m["Value"] for m in final} == last_values
    assert all(m["Timestamp"] == last_stamp and isinstance(m["Value"], float) for m in final)
    assert last_values["validation:rmse"] != rounds[best][1]["validation:rmse"]
    assert run.lines[-1].startswith(f"[{len(rounds) - 1}]\ttrain-rmse:")
