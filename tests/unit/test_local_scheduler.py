"""The local EventBridge Scheduler without a server: at() parsing, validation, refusals, and firing on a fake clock.

The SageMaker side is a stub operations table that records its calls and fails on demand.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from jobman.backends.local import schedules, validation
from jobman.backends.local.logstore import LogStore
from jobman.backends.local.schedule_store import ScheduleStore
from jobman.backends.local.scheduler import LOG_GROUP_PREFIX, Scheduler
from jobman.backends.local.scheduler_api import SchedulerApi
from jobman.backends.local.store import Layout, layout
from jobman.backends.local.wire import AwsError

REGION = "eu-west-1"
ROLE = "arn:aws:iam::000000000000:role/scheduler"
DELETE_ENDPOINT = "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint"
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class StubSageMaker:
    """Records every call; `failures[operation]` is a list of exceptions to raise, one per call, first first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.operations: dict[str, Callable[[str, dict[str, Any]], Any]] = {
            name: self._handler(name)
            for name in ("DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel", "DescribeEndpoint", "ListModels")
        }

    def _handler(self, name: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
        def handle(region: str, body: dict[str, Any]) -> dict[str, Any]:
            self.calls.append((name, region, body))
            pending = self.failures.get(name)
            if pending:
                raise pending.pop(0)
            return {}
        return handle


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.layout: Layout = layout(tmp_path / "home")
        self.clock = Clock(T0)
        self.sagemaker = StubSageMaker()
        self.store = ScheduleStore(self.layout)
        self.api = SchedulerApi(self.store, self.sagemaker.operations, self.clock)
        self.scheduler = Scheduler(self.store, self.sagemaker.operations, self.layout.logs, self.clock)

    def create(self, name: str = "ttl", at: float = T0 + 60, **extra: Any) -> dict[str, Any]:
        target = {"Arn": DELETE_ENDPOINT, "RoleArn": ROLE, "Input": json.dumps({"EndpointName": "ep-1"}),
                  **extra.pop("Target", {})}
        params = {"Name": name, "ScheduleExpression": _at(at), "FlexibleTimeWindow": {"Mode": "OFF"},
                  "Target": target, **extra}
        return self.api.call("CreateSchedule", REGION, params)

    def get(self, name: str = "ttl", group: str | None = None) -> dict[str, Any]:
        return self.api.call("GetSchedule", REGION, {"Name": name, **({"GroupName": group} if group else {})})

    async def tick_at(self, when: float) -> int:
        self.clock.now = when
        return await self.scheduler.tick()

    def calls(self) -> list[str]:
        return [name for name, _, _ in self.sagemaker.calls]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("at(%Y-%m-%dT%H:%M:%S)")


def _refused(call: Callable[[], Any]) -> str:
    with pytest.raises(AwsError) as error:
        call()
    assert (error.value.code, error.value.status) == ("ValidationException", 400)
    return error.value.message


# --- at() ---


@pytest.mark.parametrize(("expression", "zone", "utc"), [
    ("at(2030-01-01T12:00:00)", None, datetime(2030, 1, 1, 12, tzinfo=UTC)),
    ("at(2030-01-01T12:00:00)", "UTC", datetime(2030, 1, 1, 12, tzinfo=UTC)),
    ("at(2030-01-01T12:00:00)", "Europe/Berlin", datetime(2030, 1, 1, 11, tzinfo=UTC)),  # CET, +1
    ("at(2030-07-01T12:00:00)", "America/New_York", datetime(2030, 7, 1, 16, tzinfo=UTC)),  # EDT, -4
    ("at(2030-01-01T00:30:00)", "Asia/Kolkata", datetime(2029, 12, 31, 19, 0, tzinfo=UTC)),  # +5:30
])
def test_at_is_read_in_its_time_zone(expression: str, zone: str | None, utc: datetime) -> None:
    assert schedules.due_at(expression, zone) == utc.timestamp()


@pytest.mark.parametrize(("expression", "zone"), [
    ("at(2030-13-01T00:00:00)", None), ("at(2030-02-30T00:00:00)", None), ("at(2030-01-01 00:00:00)", None),
    ("at(2030-01-01T00:00:00Z)", None), ("at(2030-01-01T00:00)", None), ("2030-01-01T00:00:00", None),
    ("at(2030-01-01T00:00:00)", "Mars/Olympus_Mons"), ("at(2030-01-01T00:00:00)", "../../etc/passwd"),
    ("at(2030-01-01T00:00:00)", "Europe"),
])
def test_bad_at_expressions_and_zones_are_refused(expression: str, zone: str | None) -> None:
    message = _refused(lambda: schedules.due_at(expression, zone))
    assert "Invalid" in message


# --- validation against botocore's model ---


def test_missing_members_are_named_as_aws_names_them(world: World) -> None:
    message = _refused(lambda: world.api.call("CreateSchedule", REGION, {"Name": "x"}))
    assert message == (
        "3 validation errors detected: "
        "Value null at 'flexibleTimeWindow' failed to satisfy constraint: Member must not be null; "
        "Value null at 'scheduleExpression' failed to satisfy constraint: Member must not be null; "
        "Value null at 'target' failed to satisfy constraint: Member must not be null")
    nested = _refused(lambda: world.create(Target={"RoleArn": None}))
    assert "Value null at 'target.roleArn' failed to satisfy constraint: Member must not be null" in nested


def test_types_ranges_and_enums(world: World) -> None:
    wrong_type = _refused(lambda: world.create(Target={"RetryPolicy": {"MaximumRetryAttempts": "5"}}))
    assert wrong_type == ("1 validation error detected: Value '5' at 'target.retryPolicy.maximumRetryAttempts' "
                          "failed to satisfy constraint: Member must be of type integer")
    too_many = _refused(lambda: world.create(Target={"RetryPolicy": {"MaximumRetryAttempts": 186}}))
    assert "Member must have value less than or equal to 185" in too_many
    too_young = _refused(lambda: world.create(Target={"RetryPolicy": {"MaximumEventAgeInSeconds": 59}}))
    assert "at 'target.retryPolicy.maximumEventAgeInSeconds'" in too_young
    assert "Member must have value greater than or equal to 60" in too_young
    enum = _refused(lambda: world.create(State="ON"))
    assert enum == ("1 validation error detected: Value 'ON' at 'state' failed to satisfy constraint: "
                    "Member must satisfy enum value set: [ENABLED, DISABLED]")
    window = _refused(lambda: world.create(FlexibleTimeWindow="OFF"))
    assert "at 'flexibleTimeWindow' failed to satisfy constraint: Member must be of type structure" in window
    tags = _refused(lambda: world.api.call("CreateScheduleGroup", REGION, {"Name": "g", "Tags": [{"Key": "k"}]}))
    assert "Value null at 'tags.1.member.value' failed to satisfy constraint: Member must not be null" in tags
    ecs_tags = {"TaskDefinitionArn": "td", "Tags": [{"k": ""}]}
    nested_map = _refused(lambda: world.create(Target={"EcsParameters": ecs_tags}))
    assert "at 'target.ecsParameters.tags.1.member' failed to satisfy constraint: Map value must satisfy " \
           "constraint: [Member must have length greater than or equal to 1]" in nested_map
    assert world.store.pending() == 0 and not world.layout.scheduler.exists()  # nothing was written


@pytest.mark.parametrize("name", ["a/b", "../escape", "a\\b", "nul\0", "x" * 65, "", "spa ce"])
def test_bad_names_are_refused_before_they_name_a_file(world: World, name: str) -> None:
    for call in (lambda: world.create(name=name), lambda: world.get(name),
                 lambda: world.api.call("CreateScheduleGroup", REGION, {"Name": name}),
                 lambda: world.create(name="ok", GroupName=name)):
        message = _refused(call)
        assert "failed to satisfy constraint" in message
    assert not world.layout.scheduler.exists()
    world.create(name="x" * 64)  # the longest name is fine
    assert world.get("x" * 64)["Name"] == "x" * 64


def test_dot_names_stay_inside_the_state_folder(world: World) -> None:
    world.api.call("CreateScheduleGroup", REGION, {"Name": ".."})
    world.create(name="..", GroupName="..")
    world.create(name=".", GroupName="..")
    assert world.get("..", "..")["Arn"] == f"arn:aws:scheduler:{REGION}:000000000000:schedule/../.."
    root = world.layout.scheduler.resolve()
    files = [p.resolve() for p in world.layout.root.parent.rglob("*") if p.is_file()]
    assert files and all(p.is_relative_to(root) for p in files)
    assert sorted(p.name for p in (world.layout.scheduler / REGION / "schedules").iterdir()) == ["%2E."]


def test_the_validator_is_generic_over_service_models() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("DeleteEndpoint").input_shape
    assert validation.problems(shape, {"EndpointName": "ok-name"}) == []
    found = validation.problems(shape, {"EndpointName": "bad_name!" * 10})
    assert any("Member must have length less than or equal to 63" in p for p in found)
    assert any("Member must satisfy regular expression pattern" in p for p in found)
    many = validation.problems(model.operation_model("AddTags").input_shape,
                               {"ResourceArn": "arn:aws:sagemaker:eu-west-1:000000000000:model/m",
                                "Tags": [{"Key": ""}] * 5000})
    assert len(many) == validation.MAX_PROBLEMS  # a readable message, not a huge one
    tags = model.operation_model("AddTags").input_shape  # a Java \p{L} pattern: not checked, never refused
    request = {"ResourceArn": "arn:aws:sagemaker:eu-west-1:000000000000:model/m", "Tags": [{"Key": "ü", "Value": "ß"}]}
    assert validation.problems(tags, request) == []


# --- refusals: what the local backend cannot fire ---


@pytest.mark.parametrize(("change", "says"), [
    ({"ScheduleExpression": "rate(5 minutes)"}, "fires only one-time at() schedules"),
    ({"ScheduleExpression": "cron(0 12 * * ? *)"}, "fires only one-time at() schedules"),
    ({"Target": {"Arn": "arn:aws:scheduler:::aws-sdk:sagemaker:describeEndpoint"}}, "read-only API action"),
    ({"Target": {"Arn": "arn:aws:scheduler:::aws-sdk:sagemaker:listModels"}}, "read-only API action"),
    ({"Target": {"Arn": "arn:aws:lambda:eu-west-1:000000000000:function:f"}}, "fires only SageMaker universal"),
    ({"Target": {"Arn": "arn:aws:scheduler:::aws-sdk:s3:deleteObject"}}, "fires only SageMaker universal"),
    ({"Target": {"Arn": "arn:aws:scheduler:::aws-sdk:sagemaker:createPipeline"}}, "does not implement"),
    ({"Target": {"Arn": "arn:aws:scheduler:::aws-sdk:sagemaker:DeleteEndpoint"}}, "camelCase"),
    ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "MaximumWindowInMinutes is required"),
])
def test_what_cannot_fire_is_refused_plainly(world: World, change: dict[str, Any], says: str) -> None:
    assert says in _refused(lambda: world.create(**change))
    world.create(name="other")
    params = {**world.get("other"), **change}
    params = {k: v for k, v in params.items() if k in ("Name", "ScheduleExpression", "FlexibleTimeWindow", "Target")}
    if "Target" in change:
        params["Target"] = {"Arn": change["Target"]["Arn"], "RoleArn": ROLE}
    assert says in _refused(lambda: world.api.call("UpdateSchedule", REGION, params))
    assert world.store.pending() == 1  # only "other", unchanged


async def test_a_past_time_is_accepted_and_fires_at_once(world: World) -> None:
    world.create(at=T0 - 3600)
    assert await world.scheduler.tick() == 1
    assert world.calls() == ["DeleteEndpoint"]


# --- firing on a fake clock ---


async def test_fires_when_due_and_not_before(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.create(at=T0 + 60)
    assert world.store.pending() == 1
    assert await world.tick_at(T0 + 59.9) == 0 and world.calls() == []
    caplog.set_level(logging.INFO, logger="jobman.local.scheduler")
    assert await world.tick_at(T0 + 60) == 1
    assert world.sagemaker.calls == [("DeleteEndpoint", REGION, {"EndpointName": "ep-1"})]
    assert await world.tick_at(T0 + 3600) == 0 and len(world.calls()) == 1  # once only
    assert world.store.pending() == 0
    schedule = world.get()  # NONE: it stays, done
    assert schedule["State"] == "ENABLED" and schedule["ActionAfterCompletion"] == "NONE"
    assert "Jobman" not in schedule
    assert "schedule default/ttl (eu-west-1) fired sagemaker:deleteEndpoint" in caplog.text
    assert '{"EndpointName": "ep-1"}' in caplog.text and "succeeded" in caplog.text
    events = LogStore(world.layout.logs / REGION).read_forward(LOG_GROUP_PREFIX + "default", "ttl", 0, 10)
    assert [json.loads(e.message)["outcome"] for e in events] == ["succeeded"]


async def test_action_after_completion_delete_removes_the_schedule(world: World) -> None:
    world.create(ActionAfterCompletion="DELETE")
    await world.tick_at(T0 + 60)
    assert world.calls() == ["DeleteEndpoint"]
    with pytest.raises(AwsError) as gone:
        world.get()
    assert (gone.value.code, gone.value.status) == ("ResourceNotFoundException", 404)
    assert world.store.pending() == 0


async def test_a_client_error_is_final(world: World) -> None:
    world.sagemaker.failures["DeleteEndpoint"] = [AwsError("ValidationException", "Could not find endpoint")]
    world.create(ActionAfterCompletion="NONE")
    assert await world.tick_at(T0 + 60) == 1
    for second in range(61, 400, 7):
        await world.tick_at(T0 + second)
    assert world.calls() == ["DeleteEndpoint"]
    assert world.store.pending() == 0
    events = LogStore(world.layout.logs / REGION).read_forward(LOG_GROUP_PREFIX + "default", "ttl", 0, 10)
    last = json.loads(events[-1].message)
    assert last["outcome"] == "failed" and "Could not find endpoint" in last["detail"]


async def test_server_errors_are_retried_within_the_retry_policy(world: World) -> None:
    world.sagemaker.failures["DeleteEndpoint"] = [AwsError("InternalFailure", "boom", 500) for _ in range(10)]
    world.create(Target={"RetryPolicy": {"MaximumRetryAttempts": 2}}, ActionAfterCompletion="DELETE")
    assert world.get()["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 86400}
    await world.tick_at(T0 + 60)
    await world.tick_at(T0 + 60.5)  # backing off
    assert world.calls() == ["DeleteEndpoint"]
    await world.tick_at(T0 + 61)
    await world.tick_at(T0 + 62)
    assert len(world.calls()) == 2
    await world.tick_at(T0 + 63)
    assert len(world.calls()) == 3  # the first attempt and two retries: then it gives up
    for second in range(64, 300):
        await world.tick_at(T0 + second)
    assert len(world.calls()) == 3 and world.store.pending() == 0
    with pytest.raises(AwsError):
        world.get()  # DELETE applies after a final failure too


async def test_retries_stop_at_the_maximum_event_age(world: World) -> None:
    world.sagemaker.failures["DeleteEndpoint"] = [RuntimeError("socket closed") for _ in range(100)]
    world.create(Target={"RetryPolicy": {"MaximumEventAgeInSeconds": 60}})
    for second in range(60, 400):
        await world.tick_at(T0 + second)
    # Attempts at +0, +1, +3, +7, +15, +31 s; the next would be at +63 s, past the 60 s age.
    assert len(world.calls()) == 6 and world.store.pending() == 0


async def test_an_unexpected_error_is_retried_until_it_succeeds(world: World) -> None:
    world.sagemaker.failures["DeleteEndpoint"] = [RuntimeError("transient")]
    world.create()
    await world.tick_at(T0 + 60)
    await world.tick_at(T0 + 61)
    assert world.calls() == ["DeleteEndpoint", "DeleteEndpoint"] and world.store.pending() == 0


async def test_disabled_never_fires_until_enabled(world: World) -> None:
    world.create(State="DISABLED")
    assert world.store.pending() == 0
    for second in (60, 3600, 86400 * 10):
        await world.tick_at(T0 + second)
    assert world.calls() == []
    params = {k: world.get()[k] for k in ("Name", "ScheduleExpression", "FlexibleTimeWindow", "Target")}
    world.api.call("UpdateSchedule", REGION, {**params, "State": "ENABLED"})
    assert world.store.pending() == 1
    await world.tick_at(T0 + 86400 * 10 + 1)  # overdue: fires at once
    assert world.calls() == ["DeleteEndpoint"]


async def test_an_awaitable_handler_and_a_restarted_store(world: World) -> None:
    async def delete_model(region: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        world.sagemaker.calls.append(("DeleteModel", region, body))
        return {}

    world.sagemaker.operations["DeleteModel"] = delete_model
    world.create(Target={"Arn": "arn:aws:scheduler:::aws-sdk:sagemaker:deleteModel",
                         "Input": json.dumps({"ModelName": "m"})})
    restarted = ScheduleStore(world.layout)  # as a new server process finds it on disk
    assert restarted.pending() == 0
    restarted.load()
    assert restarted.pending() == 1
    world.clock.now = T0 + 120
    assert await Scheduler(restarted, world.sagemaker.operations, None, world.clock).tick() == 1
    assert world.sagemaker.calls == [("DeleteModel", REGION, {"ModelName": "m"})]


async def test_a_schedule_changed_while_it_fires_keeps_the_change(world: World) -> None:
    world.create(at=T0 + 60)
    params = {k: world.get()[k] for k in ("Name", "FlexibleTimeWindow", "Target")}

    async def slow_delete(region: str, body: dict[str, Any]) -> dict[str, Any]:
        world.api.call("UpdateSchedule", REGION, {**params, "ScheduleExpression": _at(T0 + 600)})  # re-armed
        return {}

    world.sagemaker.operations["DeleteEndpoint"] = slow_delete
    await world.tick_at(T0 + 60)
    assert world.store.pending() == 1 and world.store.next_wake() == T0 + 600


async def test_bad_target_input_is_a_final_failure(world: World) -> None:
    world.create(Target={"Input": "[1, 2]"})
    await world.tick_at(T0 + 60)
    assert world.calls() == [] and world.store.pending() == 0
