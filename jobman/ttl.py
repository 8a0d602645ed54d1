"""Server-side TTL: the EventBridge Scheduler one-time schedules that end what a run left billing.

Each schedule calls one SageMaker action through a universal target, so it happens at its time even if
no jobman process ever runs again: an endpoint chain is deleted at its `jobman:expires-at` (the endpoint
first, its config and model a little later, since SageMaker deletes an endpoint asynchronously); a
transform job is stopped at its deadline and its model deleted after it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from jobman.kinds import KIND_API, SCHEDULE_GROUP, Kind
from jobman.names import schedule_name
from jobman.tags import description_of

UNIVERSAL_TARGET = "arn:aws:scheduler:::aws-sdk:sagemaker:"
TTL_ACTION = {Kind.ENDPOINT: "deleteEndpoint", Kind.ENDPOINT_CONFIG: "deleteEndpointConfig",
              Kind.MODEL: "deleteModel", Kind.TRANSFORM_JOB: "stopTransformJob"}
_KIND_OF_ACTION = {action: kind for kind, action in TTL_ACTION.items()}
# How long after the expiry each schedule fires, in steps of the stagger: what uses a model goes first.
STAGGER_STEPS = {Kind.ENDPOINT: 0, Kind.TRANSFORM_JOB: 0, Kind.ENDPOINT_CONFIG: 1, Kind.MODEL: 2}
# A failed delete is retried for a day: a throttled or briefly failing SageMaker must not leave it billing.
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}


def fire_time(expires_at: datetime, kind: Kind, stagger_s: float) -> datetime:
    return expires_at + timedelta(seconds=stagger_s * STAGGER_STEPS[kind])


def at_expression(moment: datetime) -> str:
    """`at(yyyy-mm-ddThh:mm:ss)`, read in ScheduleExpressionTimezone (always UTC here)."""
    return f"at({moment:%Y-%m-%dT%H:%M:%S})"


def schedule_request(
    target_kind: Kind, target_name: str, at: datetime, *, role_arn: str, tags: dict[str, str]
) -> dict[str, Any]:
    """CreateSchedule's request for the schedule that deletes (or stops) one resource at `at` (UTC)."""
    name = schedule_name(target_name)
    expression = at_expression(at)
    return {
        "Name": name,
        "GroupName": SCHEDULE_GROUP,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ActionAfterCompletion": "DELETE",  # fired schedules would otherwise count against the quota
        "State": "ENABLED",
        "Description": description_of(tags),
        "Target": {
            "Arn": UNIVERSAL_TARGET + TTL_ACTION[target_kind],
            "RoleArn": role_arn,
            "Input": json.dumps({KIND_API[target_kind].name_key: target_name}),
            "RetryPolicy": dict(RETRY_POLICY),
        },
        # A create retried after a lost reply meets its own token, not a conflict.
        "ClientToken": hashlib.sha256(f"{name}|{expression}".encode()).hexdigest()[:40],
    }


def schedule_target(request: dict[str, Any]) -> tuple[Kind, str] | None:
    """Which resource a schedule jobman made deletes or stops, from its request (or GetSchedule's answer)."""
    target = request.get("Target") or {}
    arn = str(target.get("Arn", ""))
    kind = _KIND_OF_ACTION.get(arn.removeprefix(UNIVERSAL_TARGET)) if arn.startswith(UNIVERSAL_TARGET) else None
    if kind is None:
        return None
    try:
        name = json.loads(target.get("Input") or "{}").get(KIND_API[kind].name_key)
    except (ValueError, AttributeError):
        return None
    return (kind, name) if isinstance(name, str) else None
