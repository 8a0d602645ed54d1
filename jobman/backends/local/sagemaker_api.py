"""SageMaker's control plane (JSON 1.1, `X-Amz-Target: SageMaker.<Operation>`) for the four kinds jobman uses.

Errors are worded as SageMaker words them, because callers (jobman's own backend included) tell
"not found" and "already exists" apart by code and message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jobman.backends.local import arns, describe_defaults, validation, wire
from jobman.backends.local.endpoints import EndpointManager
from jobman.backends.local.job_manager import RUNNING, JobManager
from jobman.backends.local.listing import ListSpec, list_resources, paginate
from jobman.backends.local.store import Layout, RecordStore
from jobman.backends.local.training import TrainingManager
from jobman.backends.local.transforms import TransformManager
from jobman.backends.local.wire import AwsError, now

Handler = Callable[[str, dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]
MAX_TAGS = 50
_S3_URI = re.compile(r"^(https|s3)://([^/]+)/?(.*)$")

_LISTS = {
    arns.TRAINING_JOB: ListSpec(
        "TrainingJobName", "TrainingJobStatus",
        {"Name": "TrainingJobName", "CreationTime": "CreationTime", "Status": "TrainingJobStatus"},
    ),
    arns.ENDPOINT: ListSpec("EndpointName", "EndpointStatus",
                            {"Name": "EndpointName", "CreationTime": "CreationTime", "Status": "EndpointStatus"}),
    arns.TRANSFORM_JOB: ListSpec(
        "TransformJobName", "TransformJobStatus",
        {"Name": "TransformJobName", "CreationTime": "CreationTime", "Status": "TransformJobStatus"},
    ),
    arns.MODEL: ListSpec("ModelName", None, {"Name": "ModelName", "CreationTime": "CreationTime"}),
    arns.ENDPOINT_CONFIG: ListSpec("EndpointConfigName", None,
                                   {"Name": "EndpointConfigName", "CreationTime": "CreationTime"}),
}
_MODEL_FIELDS = ("ModelName", "PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn",
                 "VpcConfig", "CreationTime", "ModelArn", "EnableNetworkIsolation")
_CONFIG_FIELDS = ("EndpointConfigName", "EndpointConfigArn", "ProductionVariants", "DataCaptureConfig", "KmsKeyId",
                  "CreationTime", "AsyncInferenceConfig", "ExplainerConfig", "ShadowProductionVariants",
                  "ExecutionRoleArn", "VpcConfig", "EnableNetworkIsolation")


MAX_TRANSFORM_MB = 100  # MaxPayloadInMB, and MaxConcurrentTransforms x MaxPayloadInMB, at most
DEFAULT_PAYLOAD_MB = 6


def _not_found(region: str, rtype: str, name: str) -> AwsError:
    if rtype in (arns.TRAINING_JOB, arns.TRANSFORM_JOB):
        return AwsError("ValidationException", "Requested resource not found.")
    noun = {arns.MODEL: "model", arns.ENDPOINT_CONFIG: "endpoint configuration", arns.ENDPOINT: "endpoint"}[rtype]
    return AwsError("ValidationException", f'Could not find {noun} "{arns.arn(region, rtype, name)}".')


def _required(body: dict[str, Any], field: str) -> Any:
    if body.get(field) in (None, "", []):
        raise AwsError("ValidationException",
                       f"1 validation error detected: Value null at '{arns.member_name(field)}' failed to satisfy "
                       "constraint: Member must not be null")
    return body[field]


def _name(body: dict[str, Any], field: str) -> str:
    return arns.check_name(_required(body, field), arns.member_name(field))


def _check_tags(tags: Any) -> list[dict[str, str]]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("Key"), str) for t in tags):
        raise AwsError("ValidationException", "Tags must be a list of {Key, Value} objects.")
    if len(tags) > MAX_TAGS:
        raise AwsError("ValidationException", f"A resource can have at most {MAX_TAGS} tags.")
    return [{"Key": t["Key"], "Value": str(t.get("Value", ""))} for t in tags]


def _check_s3_uri(value: Any, member: str) -> None:
    """SageMaker checks only the URI's shape here; a bad bucket or key fails the job or endpoint later."""
    if not isinstance(value, str) or not _S3_URI.match(value):
        raise arns.validation_error(value, member, f"Member must satisfy regular expression pattern: {_S3_URI.pattern}")


class SageMakerApi:
    def __init__(self, layout: Layout, training: TrainingManager, endpoints: EndpointManager,
                 transforms: TransformManager) -> None:
        self.layout = layout
        self.training = training
        self.endpoints = endpoints
        self.transforms = transforms
        self.operations: dict[str, Handler] = {
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
            "CreateTransformJob": self.create_transform_job,
            "DescribeTransformJob": self.describe_transform_job,
            "ListTransformJobs": self.list_transform_jobs,
            "StopTransformJob": self.stop_transform_job,
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "DeleteEndpoint": self.delete_endpoint,
            "AddTags": self.add_tags,
            "ListTags": self.list_tags,
            "DeleteTags": self.delete_tags,
        }

    async def handle(self, request: web.Request, scope: wire.Scope) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").partition(".")[2]
        try:
            handler = self.operations.get(operation)
            if handler is None:
                raise AwsError("UnknownOperationException",
                               f"The local backend does not implement SageMaker.{operation}.")
            body = await wire.read_json_body(request)
            region = wire.check_region(scope.region)
            # botocore's model first, as SageMaker's front end: handlers then see only well-typed, known members
            answer = handler(region, validation.checked("sagemaker", operation, body))
            if not isinstance(answer, dict):
                answer = await answer
            return wire.json_response(answer)
        except AwsError as exc:
            return wire.json_error(exc)

    def store(self, region: str, rtype: str) -> RecordStore:
        return RecordStore(self.layout.resources(region, rtype))

    def _get(self, region: str, rtype: str, name: str) -> dict[str, Any]:
        record = self.store(region, rtype).get(name)
        if record is None:
            raise _not_found(region, rtype, name)
        return record

    # --- training jobs ---

    def create_training_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "TrainingJobName")
        _required(body, "AlgorithmSpecification")
        _check_s3_uri(_required(body, "OutputDataConfig").get("S3OutputPath"), "outputDataConfig.s3OutputPath")
        for channel in body.get("InputDataConfig") or []:
            uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
            if uri is not None:
                _check_s3_uri(uri, "inputDataConfig.member.dataSource.s3DataSource.s3Uri")
        hyper = body.get("HyperParameters") or {}
        if not all(isinstance(v, str) for v in hyper.values()):
            raise AwsError("ValidationException", "HyperParameters values must be strings.")
        self._check_new_job(region, self.training, name, "training job")
        request = {**body, "Tags": _check_tags(body.get("Tags"))}
        return {"TrainingJobArn": self.training.create(region, request)["TrainingJobArn"]}

    def describe_training_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._describe_job(region, body, self.training)

    def list_training_jobs(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        self.training.start_waiting()  # free training slots go to waiting jobs before they are listed
        return self._list_jobs(region, body, self.training, "TrainingJobSummaries")

    def stop_training_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._stop_job(region, body, self.training)

    # --- what training and transform jobs share ---

    def _check_new_job(self, region: str, jobs: JobManager, name: str, noun: str) -> None:
        existing = self.store(region, jobs.resource_type).get(name)
        if existing is not None:
            raise AwsError(
                "ResourceInUse",
                f"{noun.capitalize()} names must be unique within an AWS account and region, and a {noun} with "
                f"this name already exists ({existing[jobs.arn_key]})",
            )

    def _describe_job(self, region: str, body: dict[str, Any], jobs: JobManager) -> dict[str, Any]:
        return jobs.describe(region, self._get(region, jobs.resource_type, _name(body, jobs.name_key)))

    def _list_jobs(self, region: str, body: dict[str, Any], jobs: JobManager, key: str) -> dict[str, Any]:
        items = [jobs.summary(region, r) for r in self.store(region, jobs.resource_type).all()]
        page = list_resources(items, body, _LISTS[jobs.resource_type])
        return _page(key, page.items, page.next_token)

    def _stop_job(self, region: str, body: dict[str, Any], jobs: JobManager) -> dict[str, Any]:
        name = _name(body, jobs.name_key)
        self._get(region, jobs.resource_type, name)
        status = jobs.stop(region, name)
        if status not in RUNNING:
            raise AwsError("ValidationException",
                           f"The request was rejected because the {jobs.noun} is in status {status}.")
        return {}

    # --- transform jobs ---

    def create_transform_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "TransformJobName")
        model_name = _name(body, "ModelName")
        request = {**body, **_transform_settings(body), "Tags": _check_tags(body.get("Tags"))}
        model = self._get(region, arns.MODEL, model_name)
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        self._check_new_job(region, self.transforms, name, "transform job")
        return {"TransformJobArn": self.transforms.create(region, request, container)["TransformJobArn"]}

    def describe_transform_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._describe_job(region, body, self.transforms)

    def list_transform_jobs(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._list_jobs(region, body, self.transforms, "TransformJobSummaries")

    def stop_transform_job(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._stop_job(region, body, self.transforms)

    # --- models ---

    def create_model(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "ModelName")
        containers = [body["PrimaryContainer"]] if body.get("PrimaryContainer") else list(body.get("Containers") or [])
        if not containers:
            raise AwsError("ValidationException", "Either PrimaryContainer or Containers must be specified.")
        for container in containers:
            if container.get("ModelDataUrl") is not None:
                _check_s3_uri(container["ModelDataUrl"], "primaryContainer.modelDataUrl")
        model_arn = arns.arn(region, arns.MODEL, name)
        if self.store(region, arns.MODEL).get(name) is not None:
            raise AwsError("ValidationException", f'Cannot create already existing model "{model_arn}".')
        record = {**body, "Tags": _check_tags(body.get("Tags")), "ModelArn": model_arn, "CreationTime": now()}
        self.store(region, arns.MODEL).put(name, record)
        return {"ModelArn": model_arn}

    def describe_model(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self._get(region, arns.MODEL, _name(body, "ModelName"))
        return describe_defaults.model({k: record[k] for k in _MODEL_FIELDS if k in record})

    def list_models(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._list_statusless(region, body, arns.MODEL, "Models", ("ModelName", "ModelArn", "CreationTime"))

    def delete_model(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._delete_record(region, body, arns.MODEL, "ModelName")

    # --- endpoint configs ---

    def create_endpoint_config(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "EndpointConfigName")
        variants = _required(body, "ProductionVariants")
        for variant in variants:
            arns.check_name(variant.get("VariantName"), "productionVariants.member.variantName")
            model = arns.check_name(variant.get("ModelName"), "productionVariants.member.modelName")
            self._get(region, arns.MODEL, model)
        config_arn = arns.arn(region, arns.ENDPOINT_CONFIG, name)
        if self.store(region, arns.ENDPOINT_CONFIG).get(name) is not None:
            raise AwsError("ValidationException",
                           f'Cannot create already existing endpoint configuration "{config_arn}".')
        record = {**body, "Tags": _check_tags(body.get("Tags")), "EndpointConfigArn": config_arn, "CreationTime": now()}
        self.store(region, arns.ENDPOINT_CONFIG).put(name, record)
        return {"EndpointConfigArn": config_arn}

    def describe_endpoint_config(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self._get(region, arns.ENDPOINT_CONFIG, _name(body, "EndpointConfigName"))
        return describe_defaults.endpoint_config({k: record[k] for k in _CONFIG_FIELDS if k in record})

    def list_endpoint_configs(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        fields = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")
        return self._list_statusless(region, body, arns.ENDPOINT_CONFIG, "EndpointConfigs", fields)

    def delete_endpoint_config(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._delete_record(region, body, arns.ENDPOINT_CONFIG, "EndpointConfigName")

    # --- shared by models and endpoint configs (records with no status and no process behind them) ---

    def _list_statusless(
        self, region: str, body: dict[str, Any], rtype: str, key: str, fields: tuple[str, ...]
    ) -> dict[str, Any]:
        items = [{k: r[k] for k in fields} for r in self.store(region, rtype).all()]
        page = list_resources(items, body, _LISTS[rtype])
        return _page(key, page.items, page.next_token)

    def _delete_record(self, region: str, body: dict[str, Any], rtype: str, name_key: str) -> dict[str, Any]:
        name = _name(body, name_key)
        if not self.store(region, rtype).delete(name):
            raise _not_found(region, rtype, name)
        return {}

    # --- endpoints ---

    def create_endpoint(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        _name(body, "EndpointName")
        _name(body, "EndpointConfigName")
        request = {**body, "Tags": _check_tags(body.get("Tags"))}
        return {"EndpointArn": self.endpoints.create(region, request)["EndpointArn"]}

    def describe_endpoint(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.endpoints.describe(self._get(region, arns.ENDPOINT, _name(body, "EndpointName")))

    def list_endpoints(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        fields = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
        items = [{k: r[k] for k in fields} for r in self.store(region, arns.ENDPOINT).all()]
        page = list_resources(items, body, _LISTS[arns.ENDPOINT])
        return _page("Endpoints", page.items, page.next_token)

    def delete_endpoint(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        self.endpoints.delete(region, _name(body, "EndpointName"))
        return {}

    # --- tags ---

    def _tagged(self, body: dict[str, Any]) -> tuple[RecordStore, str, dict[str, Any]]:
        resource_arn = _required(body, "ResourceArn")
        region, rtype, name = arns.parse_arn(resource_arn)
        store = self.store(region, rtype)
        record = store.get(name)
        if record is None:
            raise AwsError("ValidationException", f'Could not find resource "{resource_arn}".')
        return store, name, record

    def add_tags(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        store, name, record = self._tagged(body)
        merged = {t["Key"]: t["Value"] for t in record.get("Tags") or []}
        merged.update({t["Key"]: t["Value"] for t in _check_tags(_required(body, "Tags"))})
        record["Tags"] = _check_tags([{"Key": k, "Value": v} for k, v in merged.items()])
        store.put(name, record)
        return {"Tags": record["Tags"]}

    def list_tags(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        _, _, record = self._tagged(body)
        limit = body.get("MaxResults", 50)
        page = paginate(record.get("Tags") or [], lambda t: (t["Key"],), descending=False, limit=limit,
                        token=body.get("NextToken"))
        return _page("Tags", page.items, page.next_token)

    def delete_tags(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        store, name, record = self._tagged(body)
        drop = set(_required(body, "TagKeys"))
        record["Tags"] = [t for t in record.get("Tags") or [] if t["Key"] not in drop]
        store.put(name, record)
        return {}


def _transform_settings(body: dict[str, Any]) -> dict[str, Any]:
    """Check what SageMaker checks at CreateTransformJob; returns the batching settings with defaults filled in.

    The built-in XGBoost container's execution parameters supply the defaults, as SageMaker asks it for them:
    6 MB payloads and one concurrent transform per CPU (within the 100 MB product)."""
    source = ((_required(body, "TransformInput").get("DataSource") or {}).get("S3DataSource") or {})
    _check_s3_uri(source.get("S3Uri"), "transformInput.dataSource.s3DataSource.s3Uri")
    _check_s3_uri(_required(body, "TransformOutput").get("S3OutputPath"), "transformOutput.s3OutputPath")
    _required(body, "TransformResources")
    payload = body.get("MaxPayloadInMB", DEFAULT_PAYLOAD_MB)
    if payload > MAX_TRANSFORM_MB:
        raise arns.validation_error(payload, "maxPayloadInMB",
                                    f"Member must have value less than or equal to {MAX_TRANSFORM_MB}")
    if payload == 0:
        raise AwsError("ValidationException", "MaxPayloadInMB 0 asks for chunked transfer encoding, which the "
                                              "built-in algorithms do not support: set 1 to 100.")
    concurrency = body.get("MaxConcurrentTransforms") or min(os.cpu_count() or 1, MAX_TRANSFORM_MB // payload)
    if concurrency * payload > MAX_TRANSFORM_MB:
        raise AwsError("ValidationException",
                       f"MaxConcurrentTransforms ({concurrency}) x MaxPayloadInMB ({payload}) must not exceed "
                       f"{MAX_TRANSFORM_MB} MB.")
    split = body["TransformInput"].get("SplitType") or "None"
    strategy = body.get("BatchStrategy") or "SingleRecord"
    if strategy == "MultiRecord" and split == "None":
        raise AwsError("ValidationException",
                       "BatchStrategy MultiRecord requires a SplitType (Line, RecordIO or TFRecord) to split "
                       "the input into records.")
    processing = body.get("DataProcessing") or {}
    if (processing.get("InputFilter", "$"), processing.get("OutputFilter", "$"),
            processing.get("JoinSource", "None")) != ("$", "$", "None"):
        raise AwsError("ValidationException", "The local backend does not support DataProcessing filters or "
                                              "JoinSource: leave InputFilter and OutputFilter at $ and JoinSource "
                                              "at None.")
    return {"MaxPayloadInMB": payload, "MaxConcurrentTransforms": concurrency, "BatchStrategy": strategy}


def _page(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    return {key: items, **({"NextToken": token} if token else {})}
