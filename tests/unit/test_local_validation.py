"""Every SageMaker and CloudWatch Logs request is checked against botocore's model before a handler runs.

Requests are sent raw (boto3 would refuse or fail to serialize the wrongly typed members locally), signed
with a well-formed SigV4 header whose signature the server never verifies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobman.backends.local import arns, validation
from jobman.backends.local.logstore import LogStore
from jobman.backends.local.scheduler import LOG_GROUP_PREFIX
from jobman.backends.local.server import Server
from jobman.backends.local.wire import AwsError
from jobman.images import xgboost_image_uri
from tests.unit.local_app import served
from tests.unit.test_local_scheduler import REGION, T0, World

IMAGE = xgboost_image_uri("us-east-1", "1")
ROLE = "arn:aws:iam::000000000000:role/r"
TARGETS = {"sagemaker": "SageMaker", "logs": "Logs_20140328"}

JOB = {
    "TrainingJobName": "job", "RoleArn": ROLE, "HyperParameters": {"num_round": "5"},
    "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
    "InputDataConfig": [{"ChannelName": "train", "DataSource": {
        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}}}],
    "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
    "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
    "StoppingCondition": {"MaxRuntimeInSeconds": 60},
}
MODEL = {"ModelName": "m", "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": IMAGE}}
CONFIG = {"EndpointConfigName": "c", "ProductionVariants": [
    {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m4.xlarge"}]}


class Raw:
    def __init__(self, server: Server, url: str, session: aiohttp.ClientSession) -> None:
        self.server, self.url, self.session = server, url, session

    async def call(self, service: str, operation: str, body: Any) -> tuple[int, str, dict[str, Any]]:
        """(status, x-amzn-ErrorType, body) of one JSON 1.1 request."""
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"{TARGETS[service]}.{operation}",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/{service}/aws4_request, "
                             f"SignedHeaders=host, Signature={'0' * 64}",
        }
        async with self.session.post(self.url + "/", data=json.dumps(body), headers=headers) as response:
            return response.status, response.headers.get("x-amzn-ErrorType", ""), await response.json(content_type=None)


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[Raw]:
    async with served(tmp_path / "home") as (server, url), aiohttp.ClientSession() as session:
        yield Raw(server, url, session)


@pytest.mark.parametrize(("operation", "request_body", "path", "kind"), [
    ("CreateTrainingJob", {**JOB, "OutputDataConfig": "s3://x/y"}, "outputDataConfig", "structure"),
    ("CreateTrainingJob", {**JOB, "HyperParameters": ["a"]}, "hyperParameters", "map"),
    ("CreateTrainingJob", {**JOB, "InputDataConfig": ["x"]}, "inputDataConfig.1.member", "structure"),
    ("CreateEndpointConfig", {**CONFIG, "ProductionVariants": "abc"}, "productionVariants", "list"),
    ("CreateModel", {**MODEL, "PrimaryContainer": "x"}, "primaryContainer", "structure"),
])
async def test_wrongly_typed_members_get_sagemakers_validation_error(
    raw: Raw, operation: str, request_body: dict[str, Any], path: str, kind: str
) -> None:
    status, code, body = await raw.call("sagemaker", operation, request_body)
    assert (status, code, body["__type"]) == (400, "ValidationException", "ValidationException")
    assert body["message"].startswith("1 validation error detected: Value ")
    assert f"at '{path}' failed to satisfy constraint: Member must be of type {kind}" in body["message"]
    assert not any(list(raw.server.sagemaker.store("us-east-1", rtype).all()) for rtype in arns.RESOURCE_TYPES)


async def test_the_model_check_comes_first_and_valid_requests_pass(raw: Raw) -> None:
    status, code, body = await raw.call("sagemaker", "CreateModel", {"ModelName": "bad_name", "PrimaryContainer": 1})
    assert (status, code) == (400, "ValidationException")
    assert body["message"].startswith("2 validation errors detected: ")
    status, _, _ = await raw.call("sagemaker", "CreateModel", MODEL)
    assert status == 200
    # The handler's own checks still run after the model's: a config naming a missing model.
    status, code, body = await raw.call("sagemaker", "CreateEndpointConfig", {
        **CONFIG, "ProductionVariants": [{**CONFIG["ProductionVariants"][0], "ModelName": "nope"}]})
    assert (status, code) == (400, "ValidationException") and "Could not find model" in body["message"]


async def test_unknown_members_are_ignored_not_stored(raw: Raw) -> None:
    status, _, _ = await raw.call("sagemaker", "CreateModel", {**MODEL, "Bogus": {"x": 1},
                                                               "PrimaryContainer": {"Image": IMAGE, "Extra": [1]}})
    assert status == 200
    status, _, described = await raw.call("sagemaker", "DescribeModel", {"ModelName": "m", "AlsoBogus": 1})
    assert status == 200
    assert "Bogus" not in described and "Extra" not in described["PrimaryContainer"]


async def test_timestamps_arrive_as_epoch_numbers(raw: Raw) -> None:
    status, _, _ = await raw.call("sagemaker", "ListTrainingJobs", {"CreationTimeAfter": 1700000000.5})
    assert status == 200
    status, code, body = await raw.call("sagemaker", "ListTrainingJobs", {"CreationTimeAfter": {"t": 1}})
    assert (status, code) == (400, "ValidationException")
    assert "at 'creationTimeAfter' failed to satisfy constraint: Member must be of type timestamp" in body["message"]


async def test_logs_words_model_violations_as_invalid_parameter(raw: Raw) -> None:
    status, code, body = await raw.call("logs", "DescribeLogStreams", {"logGroupName": "/g", "limit": "5"})
    assert (status, code) == (400, "InvalidParameterException")
    assert body["message"] == ("1 validation error detected: Value '5' at 'limit' failed to satisfy constraint: "
                               "Member must be of type integer")
    status, code, _ = await raw.call("logs", "GetLogEvents", {"logGroupName": ["/g"], "logStreamName": "s"})
    assert (status, code) == (400, "InvalidParameterException")
    status, code, _ = await raw.call("logs", "DescribeLogGroups", {"limit": 5, "unknownMember": {}})
    assert (status, code) == (200, "")


def test_checked_keeps_only_modelled_members() -> None:
    request = {**MODEL, "Bogus": 1, "Tags": [{"Key": "k", "Value": "v", "Junk": True}]}
    assert validation.checked("sagemaker", "CreateModel", request) == {**MODEL, "Tags": [{"Key": "k", "Value": "v"}]}
    with pytest.raises(AwsError) as refused:
        validation.checked("logs", "GetLogEvents", {}, code="InvalidParameterException")
    assert refused.value.code == "InvalidParameterException" and "'logStreamName'" in refused.value.message


async def test_a_scheduled_targets_input_is_checked_like_a_request(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.create(Target={"Input": json.dumps({"EndpointName": ["ep-1"], "Unknown": 1})})
    await world.tick_at(T0 + 60)
    assert world.calls() == [] and world.store.pending() == 0  # refused before the handler; final, not retried
    events = LogStore(world.layout.logs / REGION).read_forward(LOG_GROUP_PREFIX + "default", "ttl", 0, 10)
    detail = json.loads(events[-1].message)["detail"]
    assert detail.startswith("ValidationException (400): 1 validation error detected: Value '[\"ep-1\"]' at "
                             "'endpointName' failed to satisfy constraint: Member must be of type string")
    world.create(name="ok", at=T0 + 120, Target={"Input": json.dumps({"EndpointName": "ep-1", "Unknown": 1})})
    await world.tick_at(T0 + 120)
    assert world.sagemaker.calls == [("DeleteEndpoint", REGION, {"EndpointName": "ep-1"})]  # unknown members dropped
