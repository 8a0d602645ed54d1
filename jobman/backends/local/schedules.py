"""What an EventBridge Scheduler schedule means to the local backend: ARNs, its fire time, its target.

The local backend fires one-time `at(yyyy-mm-ddThh:mm:ss)` schedules (in `ScheduleExpressionTimezone`,
UTC by default) whose target is a SageMaker universal target,
`arn:aws:scheduler:::aws-sdk:sagemaker:<apiAction>`, with the API request as JSON in `Target.Input`.
Everything else is refused when the schedule is created, so a schedule it accepts is one it can fire.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobman.backends.local.wire import ACCOUNT_ID, AwsError

DEFAULT_GROUP = "default"
NAME = re.compile(r"[0-9a-zA-Z\-_.]{1,64}")  # schedule and group names, as the model's pattern and length
DEFAULT_RETRY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}  # AWS's, filled when absent
READ_ONLY_PREFIXES = ("get", "describe", "list", "search")  # AWS refuses these as universal targets
_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_UNIVERSAL = re.compile(r"arn:aws(-[a-z]+)?:scheduler:::aws-sdk:(?P<service>[a-z0-9-]+):(?P<action>[A-Za-z0-9]+)")
_GROUP_ARN = re.compile(
    r"arn:aws(-[a-z]+)?:scheduler:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):schedule-group/(?P<name>[^/]+)")


def invalid(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def schedule_arn(region: str, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{ACCOUNT_ID}:schedule/{group}/{name}"


def group_arn(region: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{ACCOUNT_ID}:schedule-group/{name}"


def parse_group_arn(value: str) -> tuple[str, str] | None:
    """(region, group name) of a schedule group ARN of this account, or None."""
    match = _GROUP_ARN.fullmatch(value)
    if match is None or match["account"] != ACCOUNT_ID or not NAME.fullmatch(match["name"]):
        return None
    return match["region"], match["name"]


def due_at(expression: str, timezone: str | None) -> float:
    """Epoch seconds at which a one-time `at()` expression falls due; refuses every other expression."""
    if expression.startswith(("rate(", "cron(")):
        raise invalid(f"The local backend fires only one-time at() schedules; {expression} is a recurring "
                      "schedule and is not supported.")
    match = _AT.fullmatch(expression)
    if match is None:
        raise invalid(f"Invalid Schedule Expression {expression}.")
    zone = time_zone(timezone or "UTC")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except (ValueError, OverflowError):
        raise invalid(f"Invalid Schedule Expression {expression}.") from None
    return moment.timestamp()


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a key naming a folder, like "Europe"
        raise invalid(f"Invalid ScheduleExpressionTimezone {name}.") from None


def target_operation(target_arn: str, implemented: Collection[str]) -> str:
    """The SageMaker operation (`DeleteEndpoint`) a target calls, if the local backend can fire it."""
    match = _UNIVERSAL.fullmatch(target_arn)
    if match is None:
        raise invalid(f"The local backend fires only SageMaker universal targets "
                      f"(arn:aws:scheduler:::aws-sdk:sagemaker:<apiAction>); it cannot fire {target_arn}.")
    service, action = match["service"], match["action"]
    if action.lower().startswith(READ_ONLY_PREFIXES):
        raise invalid(f"{service}:{action} is a read-only API action; EventBridge Scheduler does not accept "
                      "read-only actions (get, describe, list, search) as universal targets.")
    if service != "sagemaker":
        raise invalid(f"The local backend fires only SageMaker universal targets; it cannot call {service}:{action}.")
    operation = action[:1].upper() + action[1:]
    if not action[:1].islower():
        raise invalid(f"The API action in a universal target is written in camelCase: sagemaker:{camel(action)}, "
                      f"not sagemaker:{action}.")
    if operation not in implemented:
        raise invalid(f"The local backend cannot fire sagemaker:{action}: its SageMaker API does not implement "
                      f"that action. It fires {', '.join(camel(o) for o in sorted(implemented))}.")
    return operation


def camel(operation: str) -> str:
    return operation[:1].lower() + operation[1:]


def firable(operations: Collection[str]) -> list[str]:
    """The operations a schedule may call: every mutating one."""
    return [o for o in operations if not o.lower().startswith(READ_ONLY_PREFIXES)]


def with_retry_defaults(target: dict[str, Any]) -> dict[str, Any]:
    return {**target, "RetryPolicy": {**DEFAULT_RETRY, **(target.get("RetryPolicy") or {})}}


def wake_at(record: dict[str, Any]) -> float | None:
    """When the firing loop must next look at this schedule; None once it never will (disabled or done)."""
    state = record.get("Jobman") or {}
    if record.get("State") != "ENABLED" or state.get("Outcome"):
        return None
    wake = state.get("NextAttemptAt") or state.get("DueAt")
    return float(wake) if isinstance(wake, int | float) else None
