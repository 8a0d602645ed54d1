"""The four SageMaker resource kinds jobman manages, and the API names of each.

The backends and the reconciler are generic over kinds; this table is the one place that knows
which SageMaker operation, response key and field belong to which kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    TRAINING_JOB = "training_job"
    MODEL = "model"
    ENDPOINT_CONFIG = "endpoint_config"
    ENDPOINT = "endpoint"


@dataclass(frozen=True)
class KindApi:
    create: str
    describe: str
    list: str
    delete: str | None  # training jobs cannot be deleted, only stopped
    list_key: str  # the list response's array of summaries
    name_key: str  # the request/summary field holding the name
    arn_key: str
    status_key: str | None  # models and endpoint configs have no status
    suffix: str  # short name suffix used in deterministic names


KIND_API: dict[Kind, KindApi] = {
    Kind.TRAINING_JOB: KindApi(
        "create_training_job", "describe_training_job", "list_training_jobs", None,
        "TrainingJobSummaries", "TrainingJobName", "TrainingJobArn", "TrainingJobStatus", "train",
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
}

# Creation order; teardown runs it backwards (endpoint, config, model; never the job's artifacts).
CREATE_ORDER: tuple[Kind, ...] = (Kind.TRAINING_JOB, Kind.MODEL, Kind.ENDPOINT_CONFIG, Kind.ENDPOINT)
TEARDOWN_ORDER: tuple[Kind, ...] = (Kind.ENDPOINT, Kind.ENDPOINT_CONFIG, Kind.MODEL)
