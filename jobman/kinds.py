"""The resource kinds jobman manages, and the API names of each.

The backends and the reconciler are generic over kinds; this table is the one place that knows
which service, operation, response key and field belong to which kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    TRAINING_JOB = "training_job"
    MODEL = "model"
    ENDPOINT_CONFIG = "endpoint_config"
    ENDPOINT = "endpoint"
    SCHEDULE = "schedule"  # an EventBridge Scheduler one-time schedule that deletes one part of a chain
    TRANSFORM_JOB = "transform_job"  # Batch Transform: a model run over a CSV in S3, billed until it ends


# Every schedule jobman creates lives in this group, so one ListSchedules call finds them all.
SCHEDULE_GROUP = "jobman"


@dataclass(frozen=True)
class KindApi:
    create: str
    describe: str
    list: str
    delete: str | None  # jobs cannot be deleted, only stopped
    list_key: str  # the list response's array of summaries
    name_key: str  # the request/summary field holding the name
    arn_key: str
    status_key: str | None  # models and endpoint configs have no status
    suffix: str  # short name suffix used in deterministic names
    service: str = "sagemaker"
    create_arn_key: str | None = None  # when Create answers the ARN under another key than Describe
    scope: dict[str, Any] = field(default_factory=dict)  # members every call about this kind carries
    name_filter: str = "NameContains"  # how its List call filters by name
    sortable: bool = True  # its List call takes SortBy/SortOrder and creation-time bounds
    created_key: str = "CreationTime"
    stop: str | None = None  # how a job that runs is stopped (jobs are never deleted)


KIND_API: dict[Kind, KindApi] = {
    Kind.TRAINING_JOB: KindApi(
        "create_training_job", "describe_training_job", "list_training_jobs", None,
        "TrainingJobSummaries", "TrainingJobName", "TrainingJobArn", "TrainingJobStatus", "train",
        stop="stop_training_job",
    ),
    Kind.MODEL: KindApi(
        "create_model", "describe_model", "list_models", "delete_model",
        "Models", "ModelName", "ModelArn", None, "model",
    ),
    Kind.ENDPOINT_CONFIG: KindApi(
        "create_endpoint_config", "describe_endpoint_config", "list_endpoint_configs",
        "delete_endpoint_config", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn", None,
        "config",
    ),
    Kind.ENDPOINT: KindApi(
        "create_endpoint", "describe_endpoint", "list_endpoints", "delete_endpoint",
        "Endpoints", "EndpointName", "EndpointArn", "EndpointStatus", "endpoint",
    ),
    Kind.SCHEDULE: KindApi(
        "create_schedule", "get_schedule", "list_schedules", "delete_schedule",
        "Schedules", "Name", "Arn", "State", "ttl", service="scheduler", create_arn_key="ScheduleArn",
        scope={"GroupName": SCHEDULE_GROUP}, name_filter="NamePrefix", sortable=False, created_key="CreationDate",
    ),
    Kind.TRANSFORM_JOB: KindApi(
        "create_transform_job", "describe_transform_job", "list_transform_jobs", None,
        "TransformJobSummaries", "TransformJobName", "TransformJobArn", "TransformJobStatus", "transform",
        stop="stop_transform_job",
    ),
}

# Kinds that run to an end of their own: stopped, never deleted; billed while they run.
JOB_KINDS: frozenset[Kind] = frozenset({Kind.TRAINING_JOB, Kind.TRANSFORM_JOB})

# Teardown order: endpoint, config, model (never the job's artifacts); the schedules that would have
# deleted them go last, so a teardown cut short still leaves the server-side TTL in place.
TEARDOWN_ORDER: tuple[Kind, ...] = (Kind.ENDPOINT, Kind.ENDPOINT_CONFIG, Kind.MODEL, Kind.SCHEDULE)
# The endpoint chain: what an expiry (`jobman:expires-at`) covers.
CHAIN: tuple[Kind, ...] = (Kind.ENDPOINT, Kind.ENDPOINT_CONFIG, Kind.MODEL)
