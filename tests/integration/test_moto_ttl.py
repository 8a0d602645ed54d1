"""Server-side TTL on the AWS path: EventBridge Scheduler schedules on moto's server (which stores them, never fires).

A kept run leaves one schedule per part of the endpoint chain; `jobman stop` removes them; a run killed
after deploy and resumed leaves exactly one set; gc finds expired orphans, schedules included, in AWS's
default region without being told where to look.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobman.clock import utc_iso
from jobman.tags import description_of
from tests.conftest import SAGEMAKER, SCHEDULER_ROLE_ARN, jobman, jobman_cmd, write_experiment
from tests.fault_proxy import FaultProxy
from tests.integration.local_fixtures import wait_for
from tests.moto_server import Moto

KEPT = {**SAGEMAKER, "keep = false": "keep = true"}
TEST_ROWS = 167
CHAIN = {"deleteEndpoint": ("EndpointName", "boston-xgboost-r1-endpoint", 0),
         "deleteEndpointConfig": ("EndpointConfigName", "boston-xgboost-r1-config", 120),
         "deleteModel": ("ModelName", "boston-xgboost-r1-model", 240)}


def client(moto: Moto, service: str) -> Any:
    return boto3.client(service, endpoint_url=moto.url, region_name="us-east-1")


def jobman_schedules(moto: Moto) -> list[dict[str, Any]]:
    scheduler = client(moto, "scheduler")
    try:
        summaries = scheduler.list_schedules(GroupName="jobman")["Schedules"]
    except scheduler.exceptions.ResourceNotFoundException:
        return []
    return [scheduler.get_schedule(Name=s["Name"], GroupName="jobman") for s in summaries]


@pytest.fixture
def proxy(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(moto.url) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        yield p


def test_a_kept_run_leaves_one_schedule_per_part_of_the_chain(moto: Moto, tmp_path: Path) -> None:
    moto.queue_invoke_results(["\n".join(["21"] * TEST_ROWS)])
    path = write_experiment(tmp_path / "exp.toml", KEPT)
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "its schedules delete it after its TTL" in done.stdout
    sm = client(moto, "sagemaker")
    endpoint = sm.describe_endpoint(EndpointName="boston-xgboost-r1-endpoint")
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    expires_at = datetime.strptime(tags["jobman:expires-at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    schedules = jobman_schedules(moto)
    assert len(schedules) == 3
    for schedule in schedules:
        action = schedule["Target"]["Arn"].removeprefix("arn:aws:scheduler:::aws-sdk:sagemaker:")
        member, target, offset_s = CHAIN[action]
        assert json.loads(schedule["Target"]["Input"]) == {member: target}
        assert schedule["Target"]["RoleArn"] == SCHEDULER_ROLE_ARN
        at = expires_at + timedelta(seconds=offset_s)
        assert schedule["ScheduleExpression"] == f"at({at:%Y-%m-%dT%H:%M:%S})"
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["ActionAfterCompletion"] == "DELETE" and schedule["State"] == "ENABLED"
        assert json.loads(schedule["Description"])["jobman:expires-at"] == tags["jobman:expires-at"]
    assert {CHAIN[s["Target"]["Arn"].rsplit(":", 1)[1]][1] for s in schedules} == {n for _, n, _ in CHAIN.values()}

    shown = json.loads(jobman("status", "--json", cwd=tmp_path).stdout)
    kinds = [r["kind"] for r in shown["experiments"][0]["resources"]]
    assert kinds.count("schedule") == 3

    stopped = jobman("stop", "boston-xgboost", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert jobman_schedules(moto) == []
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []


def test_kill_9_after_deploy_then_resume_leaves_exactly_one_set(
    moto: Moto, proxy: FaultProxy, tmp_path: Path
) -> None:
    moto.queue_invoke_results(["\n".join(["21"] * TEST_ROWS)] * 2)
    proxy.faults.slow["InvokeEndpoint"] = 60.0  # the run sits in evaluation, after deploy, until killed
    path = write_experiment(tmp_path / "exp.toml", KEPT)
    process = subprocess.Popen(jobman_cmd("run", str(path)), cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: proxy.count("InvokeEndpoint") >= 1, timeout_s=120)
    finally:
        process.kill()
        process.wait()
    assert len(jobman_schedules(moto)) == 3
    resumed = jobman("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resuming boston-xgboost run 1" in resumed.stdout
    schedules = jobman_schedules(moto)
    assert sorted(s["Name"] for s in schedules) == [
        "boston-xgboost-r1-ttl-config", "boston-xgboost-r1-ttl-endpoint", "boston-xgboost-r1-ttl-model"]


def test_gc_without_flags_scans_the_default_aws_region_and_reaps_orphan_schedules(
    moto: Moto, tmp_path: Path
) -> None:
    """A lost ledger: the new one names no backend, yet gc looks in AWS's default region and finds the
    expired tagged chain and a schedule whose resources are gone."""
    expired = utc_iso(datetime.now(UTC) - timedelta(hours=1))
    tags = {"jobman:managed": "true", "jobman:experiment": "lost", "jobman:expires-at": expired}
    sm = client(moto, "sagemaker")
    sm.create_model(ModelName="lost-r1-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/R",
                    PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://b/m.tar.gz"},
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    scheduler = client(moto, "scheduler")
    scheduler.create_schedule_group(Name="jobman")
    for name, description in (("lost-r1-ttl-endpoint", description_of(tags)), ("someone-elses", "not jobman's")):
        scheduler.create_schedule(
            Name=name, GroupName="jobman", ScheduleExpression="at(2020-01-01T00:00:00)",
            FlexibleTimeWindow={"Mode": "OFF"}, Description=description,
            Target={"Arn": "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint", "RoleArn": SCHEDULER_ROLE_ARN,
                    "Input": json.dumps({"EndpointName": "lost-r1-endpoint"})})

    dry = jobman("gc", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "lost-r1-model" in dry.stdout and "lost-r1-ttl-endpoint" in dry.stdout and "someone-elses" not in dry.stdout
    assert "AWS not scanned" not in dry.stderr
    reaped = jobman("gc", cwd=tmp_path)
    assert reaped.returncode == 0, reaped.stderr
    assert sm.list_models()["Models"] == []
    assert [s["Name"] for s in scheduler.list_schedules(GroupName="jobman")["Schedules"]] == ["someone-elses"]


def test_gc_says_when_aws_is_not_scanned(tmp_path: Path) -> None:
    done = jobman("gc", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("note: AWS not scanned: no AWS credentials are configured; scan it with "
            "`jobman gc --backend sagemaker --region REGION`") in done.stderr
    assert not (tmp_path / "jobman-home" / "ledger.db").exists()  # a dry run writes nothing
