"""Amazon EventBridge Scheduler's API (botocore `scheduler` 2021-06-30, REST-JSON) over the schedule store.

Every request is validated against botocore's own model before anything else looks at it. Errors are
the service's: ConflictException (409) for a name taken, ResourceNotFoundException (404) for a missing
schedule or group, ValidationException (400) for bad input and for what the local backend cannot fire.
Tags belong to schedule groups, as in AWS. The `default` group always exists and cannot be deleted.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from botocore.model import ServiceModel, Shape

from jobman.backends.local import rest_json, schedules, validation, wire
from jobman.backends.local.listing import paginate
from jobman.backends.local.schedule_store import ScheduleStore
from jobman.backends.local.schedules import DEFAULT_GROUP, invalid
from jobman.backends.local.wire import AwsError

log = logging.getLogger("jobman.local.scheduler")

LIST_LIMIT = 100  # MaxResults when the request gives none (the model allows 1-100)
MAX_TAGS = 200  # per group, as many as one TagResource call may carry
Operation = Callable[[str, dict[str, Any]], dict[str, Any]]
_STORED_SCHEDULE_MEMBERS = ("Description", "EndDate", "FlexibleTimeWindow", "KmsKeyArn", "ScheduleExpression",
                            "ScheduleExpressionTimezone", "StartDate")


@functools.cache
def service_model() -> ServiceModel:
    import botocore.session

    return botocore.session.get_session().get_service_model("scheduler")


def _not_found(what: str, name: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"{what} {name} does not exist.", 404)


def _conflict(what: str, name: str) -> AwsError:
    return AwsError("ConflictException", f"{what} {name} already exists.", 409)


class SchedulerApi:
    """`sagemaker_operations` is the local SageMaker API's table: what a schedule's target may call."""

    def __init__(self, store: ScheduleStore, sagemaker_operations: Mapping[str, Any],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.sagemaker_operations = sagemaker_operations
        self.clock = clock
        self.model = service_model()
        self.router = rest_json.Router(self.model)
        self.operations: dict[str, Operation] = {
            "CreateSchedule": self.create_schedule,
            "GetSchedule": self.get_schedule,
            "UpdateSchedule": self.update_schedule,
            "DeleteSchedule": self.delete_schedule,
            "ListSchedules": self.list_schedules,
            "CreateScheduleGroup": self.create_schedule_group,
            "GetScheduleGroup": self.get_schedule_group,
            "DeleteScheduleGroup": self.delete_schedule_group,
            "ListScheduleGroups": self.list_schedule_groups,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    async def handle(self, request: web.Request, scope: wire.Scope) -> web.Response:
        try:
            region = wire.check_region(scope.region)
            operation, labels = self.router.match(request.method, request.raw_path)
            params = await self.router.members(request, operation, labels)
            return rest_json.response(self.call(operation.name, region, params))
        except AwsError as exc:
            return rest_json.error(exc)

    def call(self, operation: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate `params` (member names as keys) against the model, then run the operation."""
        handler = self.operations.get(operation)
        if handler is None:
            raise AwsError("UnknownOperationException", f"The local backend does not implement {operation}.", 404)
        shape = self.model.operation_model(operation).input_shape
        validation.validate(shape, params)
        return handler(region, validation.known(shape, params))

    def _now(self) -> float:
        return round(self.clock(), 3)

    def _output(self, operation: str, record: dict[str, Any]) -> dict[str, Any]:
        shape: Shape = self.model.operation_model(operation).output_shape
        return {k: record[k] for k in shape.members if record.get(k) is not None}

    # --- schedules ---

    def create_schedule(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        name, group = params["Name"], params.get("GroupName") or DEFAULT_GROUP
        self._group(region, group)
        existing = self.store.get_schedule(region, group, name)
        token = params.get("ClientToken")
        if existing is not None:
            if token and (existing.get("Jobman") or {}).get("ClientToken") == token:
                return {"ScheduleArn": existing["Arn"]}  # a retried request: the same answer again
            raise _conflict("Schedule", name)
        now = self._now()
        record = self._schedule(region, group, params, created=now, now=now, token=token)
        self.store.put_schedule(region, record)
        log.info("schedule %s/%s (%s) created: %s %s -> %s", group, name, region, record["ScheduleExpression"],
                 record.get("ScheduleExpressionTimezone", "UTC"), record["Target"]["Arn"])
        return {"ScheduleArn": record["Arn"]}

    def update_schedule(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        """Replaces the schedule as AWS does (members not given return to their defaults) and re-arms it."""
        existing = self._existing(region, params)
        record = self._schedule(region, existing["GroupName"], params, created=existing["CreationDate"],
                                now=self._now(), token=(existing.get("Jobman") or {}).get("ClientToken"))
        self.store.put_schedule(region, record)
        log.info("schedule %s/%s (%s) updated: %s -> %s", record["GroupName"], record["Name"], region,
                 record["ScheduleExpression"], record["Target"]["Arn"])
        return {"ScheduleArn": record["Arn"]}

    def get_schedule(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._output("GetSchedule", self._existing(region, params))

    def delete_schedule(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        record = self._existing(region, params)
        self.store.delete_schedule(region, record["GroupName"], record["Name"])
        log.info("schedule %s/%s (%s) deleted", record["GroupName"], record["Name"], region)
        return {}

    def list_schedules(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("GroupName")
        if group is not None:
            self._group(region, group)
        prefix, state = params.get("NamePrefix") or "", params.get("State")
        items = [
            {**{k: r[k] for k in ("Arn", "CreationDate", "GroupName", "LastModificationDate", "Name", "State")},
             "Target": {"Arn": r["Target"]["Arn"]}}
            for r in self.store.schedules(region, group)
            if r["Name"].startswith(prefix) and (state is None or r.get("State") == state)
        ]
        page = paginate(items, lambda s: (s["GroupName"], s["Name"]), descending=False,
                        limit=params.get("MaxResults", LIST_LIMIT), token=params.get("NextToken"))
        return {"Schedules": page.items, **({"NextToken": page.next_token} if page.next_token else {})}

    def _existing(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        name, group = params["Name"], params.get("GroupName") or DEFAULT_GROUP
        self._group(region, group)
        record = self.store.get_schedule(region, group, name)
        if record is None:
            raise _not_found("Schedule", name)
        return record

    def _schedule(self, region: str, group: str, params: dict[str, Any], *, created: float, now: float,
                  token: str | None) -> dict[str, Any]:
        """The stored record of a schedule: its model members, AWS's defaults, and the firing state."""
        due = schedules.due_at(params["ScheduleExpression"], params.get("ScheduleExpressionTimezone"))
        schedules.target_operation(params["Target"]["Arn"], schedules.firable(self.sagemaker_operations))
        window = params["FlexibleTimeWindow"]
        if window["Mode"] == "FLEXIBLE" and window.get("MaximumWindowInMinutes") is None:
            raise invalid("MaximumWindowInMinutes is required when FlexibleTimeWindow Mode is FLEXIBLE.")
        if window["Mode"] == "OFF" and window.get("MaximumWindowInMinutes") is not None:
            raise invalid("MaximumWindowInMinutes must not be given when FlexibleTimeWindow Mode is OFF.")
        record = {k: params[k] for k in _STORED_SCHEDULE_MEMBERS if params.get(k) is not None}
        for field in ("StartDate", "EndDate"):
            if field in record:
                record[field] = wire.parse_timestamp(record[field], field)
        name = params["Name"]
        record.update(
            Name=name, GroupName=group, Arn=schedules.schedule_arn(region, group, name),
            State=params.get("State") or "ENABLED", ActionAfterCompletion=params.get("ActionAfterCompletion") or "NONE",
            Target=schedules.with_retry_defaults(params["Target"]), CreationDate=created, LastModificationDate=now,
            # Ours, never answered: when it falls due, and a revision so a firing never overwrites a newer version.
            Jobman={"DueAt": due, "Revision": uuid.uuid4().hex, "ClientToken": token, "Attempts": 0},
        )
        return record

    # --- groups ---

    def create_schedule_group(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        name, token = params["Name"], params.get("ClientToken")
        existing = self._group_or_none(region, name)
        if existing is not None:
            if token and (existing.get("Jobman") or {}).get("ClientToken") == token:
                return {"ScheduleGroupArn": existing["Arn"]}
            raise _conflict("Schedule group", name)
        record = self._new_group(region, name, token)
        record["Tags"] = _merge_tags([], params.get("Tags") or [])
        self.store.put_group(region, record)
        log.info("schedule group %s (%s) created", name, region)
        return {"ScheduleGroupArn": record["Arn"]}

    def get_schedule_group(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._output("GetScheduleGroup", self._group(region, params["Name"]))

    def delete_schedule_group(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        if name == DEFAULT_GROUP:
            raise invalid("The default schedule group cannot be deleted.")
        self._group(region, name)
        self.store.delete_group(region, name)
        log.info("schedule group %s (%s) deleted with its schedules", name, region)
        return {}

    def list_schedule_groups(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        self._group(region, DEFAULT_GROUP)
        records = {g["Name"]: g for g in self.store.groups(region)}
        items = [self._output("GetScheduleGroup", g) for n, g in records.items() if n.startswith(prefix)]
        page = paginate(items, lambda g: (g["Name"],), descending=False, limit=params.get("MaxResults", LIST_LIMIT),
                        token=params.get("NextToken"))
        return {"ScheduleGroups": page.items, **({"NextToken": page.next_token} if page.next_token else {})}

    def _group_or_none(self, region: str, name: str) -> dict[str, Any] | None:
        record = self.store.get_group(region, name)
        if record is None and name == DEFAULT_GROUP:
            return self._new_group(region, name, None)
        return record

    def _group(self, region: str, name: str) -> dict[str, Any]:
        """An existing group; the default one always exists (its record is written when a region first needs it)."""
        record = self.store.get_group(region, name)
        if record is None and name == DEFAULT_GROUP:
            record = self._new_group(region, name, None)
            self.store.put_group(region, record)
        if record is None:
            raise _not_found("Schedule group", name)
        return record

    def _new_group(self, region: str, name: str, token: str | None) -> dict[str, Any]:
        now = self._now()
        return {"Name": name, "Arn": schedules.group_arn(region, name), "State": "ACTIVE", "CreationDate": now,
                "LastModificationDate": now, "Tags": [], "Jobman": {"ClientToken": token}}

    # --- tags (schedule groups only, as the model's TagResourceArn says) ---

    def tag_resource(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        record = self._tagged(region, params["ResourceArn"])
        record["Tags"] = _merge_tags(record.get("Tags") or [], params["Tags"])
        self.store.put_group(region, record)
        return {}

    def untag_resource(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        record = self._tagged(region, params["ResourceArn"])
        drop = set(params["TagKeys"])
        record["Tags"] = [t for t in record.get("Tags") or [] if t["Key"] not in drop]
        self.store.put_group(region, record)
        return {}

    def list_tags_for_resource(self, region: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": self._tagged(region, params["ResourceArn"]).get("Tags") or []}

    def _tagged(self, region: str, arn: str) -> dict[str, Any]:
        parsed = schedules.parse_group_arn(arn)
        if parsed is None or parsed[0] != region:  # another account's or region's group is not here
            raise AwsError("ResourceNotFoundException", f"Resource {arn} does not exist.", 404)
        return self._group(region, parsed[1])


def _merge_tags(tags: list[dict[str, str]], more: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {t["Key"]: t["Value"] for t in tags}
    merged.update({t["Key"]: t["Value"] for t in more})
    if len(merged) > MAX_TAGS:
        raise invalid(f"A schedule group can have at most {MAX_TAGS} tags; this request would give it {len(merged)}.")
    return [{"Key": k, "Value": v} for k, v in merged.items()]
