"""`jobman run` with backend = "sagemaker" against moto's server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobman.backends.factory import open_backend
from jobman.clock import SystemClock
from jobman.config import Experiment, load_experiment
from jobman.errors import RunFailed
from jobman.kinds import Kind
from jobman.ledger.store import Ledger, Resource
from jobman.run import ExperimentRun
from jobman.workflow import SilentReporter
from tests.conftest import SAGEMAKER, jobman, write_experiment
from tests.moto_server import Moto

TEST_ROWS = 167


def sagemaker_client(moto: Moto) -> Any:
    return boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1")


def test_run_end_to_end_as_a_user(moto: Moto, tmp_path: Path) -> None:
    moto.queue_invoke_results(["\n".join(["22.5"] * TEST_ROWS) + "\n"])
    path = write_experiment(tmp_path / "exp.toml", SAGEMAKER)
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "RMSE" in done.stdout

    sm = sagemaker_client(moto)
    jobs = sm.list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == ["boston-xgboost-r1-train"]
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=jobs[0]["TrainingJobArn"])["Tags"]}
    assert tags["jobman:managed"] == "true" and tags["jobman:experiment"] == "boston-xgboost"
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []

    shown = jobman("status", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    [exp] = view["experiments"]
    assert (exp["name"], exp["backend"], exp["status"]) == ("boston-xgboost", "sagemaker", "succeeded")
    assert exp["metrics"]["rows"] == TEST_ROWS
    states = {r["kind"]: (r["status"], r["desired"]) for r in exp["resources"]}
    assert states == {
        "training_job": ("Completed", "present"),
        "model": ("Absent", "absent"),
        "endpoint_config": ("Absent", "absent"),
        "endpoint": ("Absent", "absent"),
        "schedule": ("Absent", "absent"),  # the TTL schedules go once the chain is gone
    }
    assert all({"kind", "name", "arn", "desired", "status", "expires_at"} <= set(r) for r in exp["resources"])
    output = tmp_path / "jobman-output" / "boston-xgboost-r1"
    assert (output / "predictions.csv").exists() and (output / "predicted_vs_actual.png").exists()

    table = jobman("status", cwd=tmp_path)
    assert table.returncode == 0 and "r1-endpoint" in table.stdout  # the experiment's name heads the table
    wide = jobman("status", "--wide", cwd=tmp_path)
    assert wide.returncode == 0 and "boston-xgboost-r1-endpoint" in wide.stdout


class Scripted(SilentReporter):
    """Drives moto's records as SageMaker would move them: a status after `after` polls."""

    def __init__(self, moto: Moto, script: dict[str, list[tuple[str, str | None]]]) -> None:
        self.moto, self.script = moto, script
        self.seen: list[tuple[str, str]] = []

    def status(self, resource: Resource) -> None:
        self.seen.append((resource.name, resource.status))


class ScriptedClock(SystemClock):
    """Each poll moves the scripted resources one step (moto completes everything at once by itself)."""

    def __init__(self, moto: Moto, steps: dict[str, list[tuple[str, str | None]]]) -> None:
        self.moto, self.steps = moto, steps

    async def sleep(self, seconds: float) -> None:
        sm = self.moto.sagemaker
        for name, queue in self.steps.items():
            if not queue:
                continue
            record = sm.training_jobs.get(name) or sm.endpoints.get(name)
            if record is None:
                continue
            status, reason = queue.pop(0)
            if hasattr(record, "training_job_status"):
                record.training_job_status = status
            else:
                record.endpoint_status = status
            if reason:
                record.failure_reason = reason


async def run_in_process(x: Experiment, ledger: Ledger, clock: SystemClock, reporter: SilentReporter) -> Any:
    backend = await open_backend(x.backend, x.aws)
    try:
        return await ExperimentRun(x, ledger, backend, clock=clock, reporter=reporter).execute()
    finally:
        await backend.aclose()


async def test_in_progress_then_completed(moto: Moto, ledger: Ledger, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    moto.queue_invoke_results(["\n".join(["20"] * TEST_ROWS)])
    x = load_experiment(write_experiment(tmp_path / "exp.toml", SAGEMAKER))
    # Moto completes at create; the first sleep turns the job back to InProgress, then on to Completed.
    steps = {
        "boston-xgboost-r1-train": [("InProgress", None), ("InProgress", None), ("Completed", None)],
        "boston-xgboost-r1-endpoint": [("Creating", None), ("InService", None)],
    }
    reporter = Scripted(moto, steps)
    outcome = await run_in_process(x, ledger, ScriptedClock(moto, steps), reporter)
    assert outcome.run.status == "succeeded"
    job = await ledger.resource_by_name(Kind.TRAINING_JOB, "boston-xgboost-r1-train")
    assert job is not None
    transitions = [(e.from_status, e.to_status) for e in await ledger.events(job.id)]
    assert transitions == [(None, "Pending"), ("Pending", "InProgress"), ("InProgress", "Completed")]
    endpoint = await ledger.resource_by_name(Kind.ENDPOINT, "boston-xgboost-r1-endpoint")
    assert endpoint is not None
    assert [e.to_status for e in await ledger.events(endpoint.id)] == [
        "Pending", "Creating", "InService", "Deleting", "Absent"]
    # The console saw each change once, in the order it happened.
    job_seen = [status for name, status in reporter.seen if name == "boston-xgboost-r1-train"]
    endpoint_seen = [status for name, status in reporter.seen if name == "boston-xgboost-r1-endpoint"]
    assert job_seen == ["InProgress", "Completed"]
    assert endpoint_seen == ["Creating", "InService", "Deleting", "Absent"]


@pytest.mark.parametrize(("status", "reason", "message"), [
    ("Failed", "AlgorithmError: num_round is required", "Failed: AlgorithmError: num_round is required"),
    ("Stopped", None, "Stopped"),
])
async def test_training_failure_states(moto: Moto, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       status: str, reason: str | None, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    x = load_experiment(write_experiment(tmp_path / "exp.toml", SAGEMAKER))
    steps = {"boston-xgboost-r1-train": [("InProgress", None), (status, reason)]}
    with pytest.raises(RunFailed, match=message):
        await run_in_process(x, ledger, ScriptedClock(moto, steps), Scripted(moto, steps))
    sm = sagemaker_client(moto)
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    exp = await ledger.experiment("boston-xgboost")
    run = await ledger.latest_run(exp.id)  # type: ignore[union-attr]
    assert run is not None and run.status == "failed"


async def test_failed_endpoint_is_deleted(moto: Moto, ledger: Ledger, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    x = load_experiment(write_experiment(tmp_path / "exp.toml", SAGEMAKER))
    steps = {"boston-xgboost-r1-endpoint": [("Creating", None), ("Failed", "capacity error")]}
    with pytest.raises(RunFailed, match="endpoint boston-xgboost-r1-endpoint Failed: capacity error"):
        await run_in_process(x, ledger, ScriptedClock(moto, steps), Scripted(moto, steps))
    sm = sagemaker_client(moto)
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == [] and sm.list_models()["Models"] == []
