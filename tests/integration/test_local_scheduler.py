"""EventBridge Scheduler on the local server, driven by plain boto3: CRUD, errors, and schedules that really fire."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from jobman.backends.local import daemon, supervisor
from jobman.backends.local.store import layout, read_json
from jobman.cli.local import app
from tests.integration.local_fixtures import ROLE_ARN, LocalServer, deploy, kill_leftovers, wait_for

FAR = "at(2099-01-01T00:00:00)"
PREFIX = "arn:aws:scheduler:::aws-sdk:sagemaker:"


def _at(seconds_ahead: float) -> tuple[str, float]:
    """An at() expression `seconds_ahead` from now (whole seconds, as at() has), and its epoch."""
    due = math.ceil(time.time() + seconds_ahead)
    return time.strftime("at(%Y-%m-%dT%H:%M:%S)", time.gmtime(due)), float(due)


def _target(action: str, **request: str) -> dict[str, Any]:
    return {"Arn": PREFIX + action, "RoleArn": ROLE_ARN, "Input": json.dumps(request)}


def _create(scheduler: Any, name: str, expression: str, target: dict[str, Any], **extra: Any) -> str:
    return str(scheduler.create_schedule(Name=name, ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
                                         Target=target, **extra)["ScheduleArn"])


def _error(call: Callable[[], Any]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def _model(server: LocalServer, name: str) -> None:
    server.client("sagemaker").create_model(
        ModelName=name, ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": "local/none", "ModelDataUrl": f"s3://models/{name}/model.tar.gz"})


def _model_names(server: LocalServer) -> list[str]:
    return [m["ModelName"] for m in server.client("sagemaker").list_models()["Models"]]


def test_schedule_and_group_crud(local_server: LocalServer) -> None:
    scheduler = local_server.client("scheduler")
    group_arn = scheduler.create_schedule_group(Name="ttl", Tags=[{"Key": "team", "Value": "ml"}])["ScheduleGroupArn"]
    assert group_arn == "arn:aws:scheduler:us-east-1:000000000000:schedule-group/ttl"
    arn = _create(scheduler, "ep-1-ttl", FAR, _target("deleteEndpoint", EndpointName="ep-1"), GroupName="ttl",
                  ActionAfterCompletion="DELETE")
    assert arn == "arn:aws:scheduler:us-east-1:000000000000:schedule/ttl/ep-1-ttl"
    got = scheduler.get_schedule(Name="ep-1-ttl", GroupName="ttl")
    assert got["ScheduleExpression"] == FAR and got["State"] == "ENABLED" and got["ActionAfterCompletion"] == "DELETE"
    assert got["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert got["CreationDate"].tzinfo is not None and abs(got["CreationDate"].timestamp() - time.time()) < 60

    assert _error(lambda: _create(scheduler, "ep-1-ttl", FAR, _target("deleteEndpoint", EndpointName="x"),
                                  GroupName="ttl")) == ("ConflictException", 409, "Schedule ep-1-ttl already exists.")
    assert _error(lambda: scheduler.create_schedule_group(Name="ttl"))[:2] == ("ConflictException", 409)
    assert _error(lambda: scheduler.get_schedule(Name="ep-1-ttl")) == (
        "ResourceNotFoundException", 404, "Schedule ep-1-ttl does not exist.")  # not in the default group
    assert _error(lambda: scheduler.get_schedule(Name="x", GroupName="nogroup"))[:2] == (
        "ResourceNotFoundException", 404)
    assert _error(lambda: scheduler.delete_schedule_group(Name="default"))[:2] == ("ValidationException", 400)

    scheduler.update_schedule(Name="ep-1-ttl", GroupName="ttl", ScheduleExpression="at(2098-06-01T08:00:00)",
                              ScheduleExpressionTimezone="Europe/Paris", FlexibleTimeWindow={"Mode": "OFF"},
                              Target=_target("deleteEndpoint", EndpointName="ep-1"))
    updated = scheduler.get_schedule(Name="ep-1-ttl", GroupName="ttl")
    assert updated["ScheduleExpressionTimezone"] == "Europe/Paris" and updated["ActionAfterCompletion"] == "NONE"
    assert updated["CreationDate"] == got["CreationDate"]

    # Tags live on groups.
    scheduler.tag_resource(ResourceArn=group_arn, Tags=[{"Key": "owner", "Value": "jobman"}])
    scheduler.untag_resource(ResourceArn=group_arn, TagKeys=["team"])
    assert scheduler.list_tags_for_resource(ResourceArn=group_arn)["Tags"] == [{"Key": "owner", "Value": "jobman"}]
    missing = "arn:aws:scheduler:us-east-1:000000000000:schedule-group/none"
    assert _error(lambda: scheduler.list_tags_for_resource(ResourceArn=missing))[:2] == (
        "ResourceNotFoundException", 404)
    groups = scheduler.list_schedule_groups()["ScheduleGroups"]
    assert [g["Name"] for g in groups] == ["default", "ttl"] and all(g["State"] == "ACTIVE" for g in groups)

    # Deleting a group deletes its schedules.
    scheduler.delete_schedule_group(Name="ttl")
    assert _error(lambda: scheduler.get_schedule_group(Name="ttl"))[:2] == ("ResourceNotFoundException", 404)
    assert scheduler.list_schedules()["Schedules"] == []


def test_list_filters_and_pages(local_server: LocalServer) -> None:
    scheduler = local_server.client("scheduler")
    scheduler.create_schedule_group(Name="other")
    for name in ("ttl-a", "ttl-b", "ttl-c", "ttl-d", "keep-1"):
        _create(scheduler, name, FAR, _target("deleteModel", ModelName=name))
    _create(scheduler, "ttl-e", FAR, _target("deleteModel", ModelName="e"), GroupName="other", State="DISABLED")

    names, token, pages = [], None, 0
    while True:
        page = scheduler.list_schedules(NamePrefix="ttl-", MaxResults=2, **({"NextToken": token} if token else {}))
        names += [(s["GroupName"], s["Name"]) for s in page["Schedules"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert names == [("default", "ttl-a"), ("default", "ttl-b"), ("default", "ttl-c"), ("default", "ttl-d"),
                     ("other", "ttl-e")]
    assert pages == 3
    summary = scheduler.list_schedules(GroupName="other")["Schedules"]
    assert [s["Name"] for s in summary] == ["ttl-e"]
    assert summary[0]["Target"] == {"Arn": PREFIX + "deleteModel"} and summary[0]["State"] == "DISABLED"
    assert [s["Name"] for s in scheduler.list_schedules(State="DISABLED")["Schedules"]] == ["ttl-e"]
    paginated = scheduler.get_paginator("list_schedules").paginate(PaginationConfig={"PageSize": 4})
    assert sum(len(p["Schedules"]) for p in paginated) == 6
    assert _error(lambda: scheduler.list_schedules(GroupName="nogroup"))[:2] == ("ResourceNotFoundException", 404)
    assert _error(lambda: scheduler.list_schedules(NextToken="not-a-token"))[:2] == ("ValidationException", 400)

    status = CliRunner().invoke(app, ["status"])
    assert status.exit_code == 0 and "Schedules pending: 5" in status.output  # the disabled one is not pending


def test_bad_requests_are_validation_errors(local_server: LocalServer) -> None:
    scheduler = local_server.client("scheduler")
    for name, constraint in (("a/b", "regular expression pattern"), ("../etc", "regular expression pattern"),
                             ("n" * 65, "length less than or equal to 64")):
        code, status, message = _error(partial(_create, scheduler, name, FAR, _target("deleteModel")))
        assert (code, status) == ("ValidationException", 400)
        assert message.startswith(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                                  f"constraint: Member must") and constraint in message
    assert not list(local_server.root.rglob("etc*"))
    sqs = {"Arn": "arn:aws:sqs:us-east-1:000000000000:queue", "RoleArn": ROLE_ARN}
    for expression, target, says in (
        ("rate(5 minutes)", _target("deleteModel"), "fires only one-time at() schedules"),
        (FAR, _target("describeEndpoint"), "read-only API action"),
        (FAR, sqs, "fires only SageMaker universal targets"),
    ):
        code, status, message = _error(partial(_create, scheduler, "refused", expression, target))
        assert (code, status) == ("ValidationException", 400) and says in message, message


@pytest.mark.slow
def test_schedules_tear_down_a_deployed_endpoint(local_server: LocalServer) -> None:
    deploy(local_server, "ttl-demo")
    sagemaker, scheduler = local_server.client("sagemaker"), local_server.client("scheduler")
    assert local_server.endpoint_pid("ttl-demo") is not None
    expression, due = _at(2)
    _create(scheduler, "ttl-demo-endpoint", expression, _target("deleteEndpoint", EndpointName="ttl-demo"),
            ActionAfterCompletion="DELETE")
    wait_for(lambda: not sagemaker.list_endpoints()["Endpoints"], timeout_s=30)
    assert time.time() >= due  # not before its time
    wait_for(lambda: local_server.endpoint_pid("ttl-demo") is None)
    assert _error(lambda: scheduler.get_schedule(Name="ttl-demo-endpoint"))[0] == "ResourceNotFoundException"

    expression, _ = _at(2)
    _create(scheduler, "ttl-demo-config", expression, _target("deleteEndpointConfig", EndpointConfigName="ttl-demo"))
    _create(scheduler, "ttl-demo-model", expression, _target("deleteModel", ModelName="ttl-demo"))
    wait_for(lambda: not sagemaker.list_endpoint_configs()["EndpointConfigs"] and not _model_names(local_server))
    assert {s["Name"] for s in scheduler.list_schedules()["Schedules"]} == {"ttl-demo-config", "ttl-demo-model"}
    log = (local_server.root / "server.log").read_text()
    for action, request in (("deleteEndpoint", '{"EndpointName": "ttl-demo"}'),
                            ("deleteEndpointConfig", '{"EndpointConfigName": "ttl-demo"}'),
                            ("deleteModel", '{"ModelName": "ttl-demo"}')):
        assert f"fired sagemaker:{action} {request}, attempt 1: succeeded" in log
    events = local_server.client("logs").get_log_events(logGroupName="/aws/scheduler/default",
                                                        logStreamName="ttl-demo-model")["events"]
    assert [json.loads(e["message"])["outcome"] for e in events] == ["succeeded"]
    assert daemon.server_status(local_server.home)["schedules_pending"] == 0  # type: ignore[index]


def test_a_schedule_due_while_the_server_is_down_fires_when_it_starts(local_server: LocalServer) -> None:
    _model(local_server, "overdue")
    expression, due = _at(1.5)
    _create(local_server.client("scheduler"), "overdue-ttl", expression, _target("deleteModel", ModelName="overdue"))
    assert daemon.stop_server(local_server.home)
    while time.time() < due + 1:
        time.sleep(0.1)
    model_file = local_server.root / "sagemaker" / local_server.region / "model" / "overdue.json"
    assert model_file.exists()  # nothing fired it while no server ran
    restarted = LocalServer(local_server.home, daemon.ensure_running(local_server.home))
    wait_for(lambda: "overdue" not in _model_names(restarted), timeout_s=10)
    assert "fired sagemaker:deleteModel" in (local_server.root / "server.log").read_text()


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A JOBMAN_HOME with no server yet; whatever runs on it at the end is stopped."""
    home = tmp_path / "idle-home"
    monkeypatch.setenv("JOBMAN_HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    try:
        yield home
    finally:
        try:
            daemon.stop_server(home, stop_endpoints=True)
        finally:
            kill_leftovers(home)


def test_an_idle_server_waits_for_a_pending_schedule(fresh_home: Path) -> None:
    # The schedule must be created before the server first idles out: 6 s leaves room for a loaded machine
    # between the start and the first request; the schedule falls due well past that.
    server = LocalServer(fresh_home, daemon.ensure_running(fresh_home, idle_timeout_s=6))
    process = supervisor.ProcessRef.from_json(read_json(layout(fresh_home).server_json))
    assert process is not None
    expression, due = _at(10)
    _create(server.client("scheduler"), "idle-ttl", expression, _target("deleteModel", ModelName="idle"))
    _model(server, "idle")
    while time.time() < due - 0.5:  # past the idle timeout, with no request meanwhile
        time.sleep(0.1)
    assert supervisor.is_alive(process)
    wait_for(lambda: "idle" not in _model_names(server), timeout_s=10)
    wait_for(lambda: not supervisor.is_alive(process), timeout_s=15)  # fired: now it may stop for idleness
    assert "idle for 6 s with nothing running: stopping" in layout(fresh_home).server_log.read_text()
