"""SageMaker names and ARNs as the real service makes them."""

from __future__ import annotations

import re
from typing import Any

from jobman.backends.local.wire import ACCOUNT_ID, AwsError

NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
_NAME = re.compile(NAME_PATTERN + "$")
_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<rtype>[a-z-]+)/(?P<name>[^/]+)$"
)

# ARN resource type of each kind; also the folder its records live in.
TRAINING_JOB = "training-job"
MODEL = "model"
ENDPOINT_CONFIG = "endpoint-config"
ENDPOINT = "endpoint"
TRANSFORM_JOB = "transform-job"
RESOURCE_TYPES = (TRAINING_JOB, MODEL, ENDPOINT_CONFIG, ENDPOINT, TRANSFORM_JOB)


def arn(region: str, rtype: str, name: str) -> str:
    """SageMaker lower-cases the name inside an ARN."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT_ID}:{rtype}/{name.lower()}"


def parse_arn(value: str) -> tuple[str, str, str]:
    """(region, resource type, name) of a SageMaker ARN this backend could have made."""
    match = _ARN.match(value)
    if (match is None or match["rtype"] not in RESOURCE_TYPES or match["account"] != ACCOUNT_ID
            or not _NAME.match(match["name"])):
        raise AwsError("ValidationException", f"Could not find resource \"{value}\".")
    return match["region"], match["rtype"], match["name"]


def validation_error(value: Any, member: str, constraint: str) -> AwsError:
    """SageMaker's wording for a request value that fails a modelled constraint."""
    return AwsError(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}",
    )


def check_name(value: Any, member: str) -> str:
    """A resource name, checked against SageMaker's pattern before it names any file."""
    if not isinstance(value, str) or not value:
        raise validation_error(value, member, "Member must have length greater than or equal to 1")
    if len(value) > 63:
        raise validation_error(value, member, "Member must have length less than or equal to 63")
    if not _NAME.match(value):
        raise validation_error(value, member, f"Member must satisfy regular expression pattern: {NAME_PATTERN}")
    return value


def member_name(field: str) -> str:
    """`TrainingJobName` -> `trainingJobName`, the casing SageMaker's validation messages use."""
    return field[:1].lower() + field[1:]
