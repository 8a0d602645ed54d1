"""The server's AWS APIs, driven by plain boto3 (in a thread) against the app in this test's event loop.

No worker process is started: the spawners are replaced by one that returns a process that does not
exist (pid above Linux's pid_max), or this test process when a job must look alive.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import yarl
from botocore.config import Config
from botocore.exceptions import ClientError

from jobman.backends.local import supervisor
from jobman.backends.local.server import Server
from jobman.backends.local.training_state import JobFiles, finish
from jobman.images import xgboost_image_uri
from tests.unit.local_app import served

IMAGE = xgboost_image_uri("us-east-1", "1")
ROLE = "arn:aws:iam::000000000000:role/r"


class Api:
    def __init__(self, server: Server, url: str) -> None:
        self.server, self.url = server, url
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str = "us-east-1") -> Any:
        if (service, region) not in self._clients:
            self._clients[service, region] = boto3.session.Session(
                aws_access_key_id="k", aws_secret_access_key="s", region_name=region,
            ).client(service, endpoint_url=self.url, config=Config(retries={"total_max_attempts": 1}))
        return self._clients[service, region]

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def error(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, str, int]:
        with pytest.raises(ClientError) as caught:
            await self.call(fn, *args, **kwargs)
        response = caught.value.response
        return response["Error"]["Code"], response["Error"].get("Message", ""), response["ResponseMetadata"][
            "HTTPStatusCode"]


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    async with served(tmp_path / "home") as (server, url):
        yield Api(server, url)


def _model_request(name: str, **extra: Any) -> dict[str, Any]:
    container = {"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}
    return {"ModelName": name, "ExecutionRoleArn": ROLE, "PrimaryContainer": container, **extra}


def _job_request(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name, "RoleArn": ROLE, "HyperParameters": {"num_round": "5"},
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


async def _model(api: Api, name: str, **extra: Any) -> dict[str, Any]:
    return await api.call(api.client("sagemaker").create_model, **_model_request(name, **extra))


async def _job(api: Api, name: str, region: str = "us-east-1") -> dict[str, Any]:
    return await api.call(api.client("sagemaker", region).create_training_job, **_job_request(name))


# --- SageMaker ---


async def test_names_are_validated_as_sagemaker_does(api: Api) -> None:
    sm = api.client("sagemaker")
    code, message, status = await api.error(sm.create_model, ModelName="bad_name", ExecutionRoleArn=ROLE,
                                            PrimaryContainer={"Image": IMAGE})
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value 'bad_name' at 'modelName' failed to satisfy constraint: "
                       "Member must satisfy regular expression pattern: [a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?")
    code, message, _ = await api.error(sm.describe_endpoint, EndpointName="x" * 64)
    assert "length less than or equal to 63" in message
    code, message, _ = await api.error(sm.describe_training_job, TrainingJobName="../../etc")
    assert code == "ValidationException"


async def test_duplicates_and_missing_resources(api: Api) -> None:
    sm = api.client("sagemaker")
    created = await _model(api, "My-Model")
    assert created["ModelArn"] == "arn:aws:sagemaker:us-east-1:000000000000:model/my-model"
    code, message, _ = await api.error(sm.create_model, **_model_request("my-model"))  # names are case-insensitive
    assert (code, message) == ("ValidationException",
                               'Cannot create already existing model "arn:aws:sagemaker:us-east-1:000000000000:'
                               'model/my-model".')
    described = await api.call(sm.describe_model, ModelName="MY-MODEL")
    assert described["ModelName"] == "My-Model" and described["PrimaryContainer"]["Image"] == IMAGE
    assert await api.error(sm.describe_model, ModelName="nope") == (
        "ValidationException", 'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/nope".', 400)
    assert (await api.error(sm.describe_endpoint, EndpointName="nope"))[1] == (
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/nope".')
    assert (await api.error(sm.describe_endpoint_config, EndpointConfigName="nope"))[1] == (
        'Could not find endpoint configuration "arn:aws:sagemaker:us-east-1:000000000000:endpoint-config/nope".')
    assert (await api.error(sm.describe_training_job, TrainingJobName="nope"))[1] == "Requested resource not found."
    assert (await api.error(sm.delete_model, ModelName="nope"))[0] == "ValidationException"
    await _job(api, "job")
    code, message, _ = await api.error(sm.create_training_job, **_job_request("job"))
    assert code == "ResourceInUse" and "training-job/job" in message


async def test_configs_need_models_and_endpoints_need_configs(api: Api) -> None:
    sm = api.client("sagemaker")
    variants = [{"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
                 "InstanceType": "ml.m4.xlarge"}]
    assert "Could not find model" in (await api.error(sm.create_endpoint_config, EndpointConfigName="c",
                                                      ProductionVariants=variants))[1]
    assert "Could not find endpoint configuration" in (await api.error(sm.create_endpoint, EndpointName="e",
                                                                       EndpointConfigName="c"))[1]
    await _model(api, "m")
    await api.call(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=variants)
    arn = (await api.call(sm.create_endpoint, EndpointName="e", EndpointConfigName="c",
                          Tags=[{"Key": "jobman:managed", "Value": "true"}]))["EndpointArn"]
    assert "Cannot create already existing endpoint" in (await api.error(sm.create_endpoint, EndpointName="e",
                                                                         EndpointConfigName="c"))[1]
    endpoint = await api.call(sm.describe_endpoint, EndpointName="e")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("Creating", "c")
    assert (await api.call(sm.list_tags, ResourceArn=arn))["Tags"] == [{"Key": "jobman:managed", "Value": "true"}]
    await api.call(sm.delete_endpoint, EndpointName="e")  # Deleting until its process is gone: at once here
    await api.server.endpoints.drain()
    assert (await api.error(sm.describe_endpoint, EndpointName="e"))[0] == "ValidationException"


async def test_list_pagination_and_filters_through_boto3(api: Api) -> None:
    sm = api.client("sagemaker")
    for i in range(7):
        await _model(api, f"exp-{i}-model")
    await _model(api, "other")
    paginator = sm.get_paginator("list_models")
    pages = await api.call(lambda: list(paginator.paginate(NameContains="exp-", SortBy="Name", SortOrder="Ascending",
                                                           PaginationConfig={"PageSize": 3})))
    assert [len(p["Models"]) for p in pages] == [3, 3, 1]
    assert [m["ModelName"] for p in pages for m in p["Models"]] == [f"exp-{i}-model" for i in range(7)]
    assert set(pages[0]["Models"][0]) == {"ModelName", "ModelArn", "CreationTime"}
    newest = await api.call(sm.list_models, MaxResults=1)
    assert newest["Models"][0]["ModelName"] == "other" and "NextToken" in newest
    code, _, _ = await api.error(sm.list_models, SortBy="Status")
    assert code == "ValidationException"


async def test_training_job_state_comes_from_its_worker(api: Api) -> None:
    sm = api.client("sagemaker")
    await _job(api, "gone")  # its worker (NO_PROCESS) is not alive: the job is Failed, with a reason
    described = await api.call(sm.describe_training_job, TrainingJobName="gone")
    assert described["TrainingJobStatus"] == "Failed"
    assert "before the job finished" in described["FailureReason"]
    assert described["HyperParameters"] == {"num_round": "5"}
    assert described["ResourceConfig"]["VolumeSizeInGB"] == 5

    api.server.training.spawn = lambda *_: supervisor.ref_for(os.getpid())  # a worker that is alive
    await _job(api, "running")
    await _job(api, "done")
    files = JobFiles(api.server.layout.training_dir("us-east-1", "done"))
    status = files.read_status() or {}
    status["TrainingStartTime"] = status["LastModifiedTime"]
    finish(status, "Completed", "Completed", status["LastModifiedTime"] + 2.5)
    files.write_status(status)

    summaries = (await api.call(sm.list_training_jobs, SortBy="Name", SortOrder="Ascending"))["TrainingJobSummaries"]
    assert [(s["TrainingJobName"], s["TrainingJobStatus"]) for s in summaries] == [
        ("done", "Completed"), ("gone", "Failed"), ("running", "InProgress")]
    assert set(summaries[0]) >= {"TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime",
                                 "LastModifiedTime", "TrainingJobStatus"}
    in_progress = await api.call(sm.list_training_jobs, StatusEquals="InProgress")
    assert [s["TrainingJobName"] for s in in_progress["TrainingJobSummaries"]] == ["running"]
    done = await api.call(sm.describe_training_job, TrainingJobName="done")
    assert done["BillableTimeInSeconds"] == 3
    code, message, _ = await api.error(sm.stop_training_job, TrainingJobName="done")
    assert code == "ValidationException" and "Completed" in message


async def test_regions_are_separate(api: Api) -> None:
    await _job(api, "job-a", region="eu-west-1")
    eu = await api.call(api.client("sagemaker", "eu-west-1").describe_training_job, TrainingJobName="job-a")
    assert eu["TrainingJobArn"] == "arn:aws:sagemaker:eu-west-1:000000000000:training-job/job-a"
    assert (await api.error(api.client("sagemaker").describe_training_job, TrainingJobName="job-a"))[0] == (
        "ValidationException")


async def test_tags(api: Api) -> None:
    sm = api.client("sagemaker")
    arn = (await _model(api, "tagged", Tags=[{"Key": "a", "Value": "1"}]))["ModelArn"]
    await api.call(sm.add_tags, ResourceArn=arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    assert (await api.call(sm.list_tags, ResourceArn=arn))["Tags"] == [{"Key": "a", "Value": "3"},
                                                                       {"Key": "b", "Value": "2"}]
    await api.call(sm.delete_tags, ResourceArn=arn, TagKeys=["a"])
    assert (await api.call(sm.list_tags, ResourceArn=arn))["Tags"] == [{"Key": "b", "Value": "2"}]
    missing = "arn:aws:sagemaker:us-east-1:000000000000:model/none"
    assert (await api.error(sm.list_tags, ResourceArn=missing))[0] == "ValidationException"


async def test_unknown_operation(api: Api) -> None:
    code, _, status = await api.error(api.client("sagemaker").list_domains)
    assert (code, status) == ("UnknownOperationException", 400)


# --- S3 ---


async def test_list_objects_v2_pages_prefixes_and_encodes(api: Api) -> None:
    s3 = api.client("s3")
    await api.call(s3.create_bucket, Bucket="bkt")
    keys = ["a/1.csv", "a/2.csv", "b/c/d.csv", "top.csv", "with space+plus.csv", "é/x"]
    for key in keys:
        await api.call(s3.put_object, Bucket="bkt", Key=key, Body=key.encode())
    paginator = s3.get_paginator("list_objects_v2")
    pages = await api.call(lambda: list(paginator.paginate(Bucket="bkt", PaginationConfig={"PageSize": 2})))
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    assert len(pages) == 3
    tree = await api.call(s3.list_objects_v2, Bucket="bkt", Delimiter="/")
    assert [o["Key"] for o in tree["Contents"]] == ["top.csv", "with space+plus.csv"]
    assert [p["Prefix"] for p in tree["CommonPrefixes"]] == ["a/", "b/", "é/"]
    nested = await api.call(s3.list_objects_v2, Bucket="bkt", Prefix="b/", Delimiter="/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["b/c/"] and "Contents" not in nested
    after = await api.call(s3.list_objects_v2, Bucket="bkt", StartAfter="b/c/d.csv")
    assert [o["Key"] for o in after["Contents"]] == keys[3:]
    v1 = await api.call(s3.list_objects, Bucket="bkt", Prefix="a/")
    assert [o["Key"] for o in v1["Contents"]] == ["a/1.csv", "a/2.csv"]
    assert v1["Contents"][0]["ETag"] == f'"{hashlib.md5(b"a/1.csv").hexdigest()}"'


async def test_get_ranges_metadata_copy_and_delete(api: Api) -> None:
    s3 = api.client("s3")
    await api.call(s3.create_bucket, Bucket="bkt")
    await api.call(s3.put_object, Bucket="bkt", Key="k", Body=b"0123456789", ContentType="text/plain",
                   Metadata={"owner": "me"})
    got = await api.call(lambda: s3.get_object(Bucket="bkt", Key="k", Range="bytes=2-4"))
    assert (await api.call(got["Body"].read), got["ContentRange"]) == (b"234", "bytes 2-4/10")
    assert await _read(api, s3, "k", Range="bytes=-3") == b"789"
    head = await api.call(s3.head_object, Bucket="bkt", Key="k")
    assert (head["ContentType"], head["Metadata"], head["ContentLength"]) == ("text/plain", {"owner": "me"}, 10)
    assert (await api.error(s3.get_object, Bucket="bkt", Key="k", Range="bytes=20-30"))[0] == "InvalidRange"
    assert (await api.error(s3.get_object, Bucket="bkt", Key="k", IfMatch='"nope"'))[0] == "PreconditionFailed"
    await api.call(s3.copy_object, Bucket="bkt", Key="copy/k", CopySource={"Bucket": "bkt", "Key": "k"})
    assert await _read(api, s3, "copy/k") == b"0123456789"
    deleted = await api.call(s3.delete_objects, Bucket="bkt", Delete={"Objects": [{"Key": "k"}, {"Key": "copy/k"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["copy/k", "k"]
    assert (await api.call(s3.list_objects_v2, Bucket="bkt"))["KeyCount"] == 0
    await api.call(s3.delete_object, Bucket="bkt", Key="never-there")  # S3 answers 204 either way
    await api.call(s3.delete_bucket, Bucket="bkt")
    assert (await api.error(s3.head_bucket, Bucket="bkt"))[0] == "404"


async def _read(api: Api, s3: Any, key: str, **options: Any) -> bytes:
    """GET and read the body in the client's thread: the server needs this loop to send it."""
    return await api.call(lambda: s3.get_object(Bucket="bkt", Key=key, **options)["Body"].read())


async def test_multipart_rules(api: Api) -> None:
    s3 = api.client("s3")
    await api.call(s3.create_bucket, Bucket="bkt")
    upload = (await api.call(s3.create_multipart_upload, Bucket="bkt", Key="mp"))["UploadId"]
    one = await api.call(s3.upload_part, Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=b"a" * 10)
    two = await api.call(s3.upload_part, Bucket="bkt", Key="mp", UploadId=upload, PartNumber=2, Body=b"b" * 10)
    parts = [{"PartNumber": 1, "ETag": one["ETag"]}, {"PartNumber": 2, "ETag": two["ETag"]}]
    assert (await api.error(s3.complete_multipart_upload, Bucket="bkt", Key="mp", UploadId=upload,
                            MultipartUpload={"Parts": parts}))[0] == "EntityTooSmall"
    wrong = [{"PartNumber": 1, "ETag": '"0000"'}]
    assert (await api.error(s3.complete_multipart_upload, Bucket="bkt", Key="mp", UploadId=upload,
                            MultipartUpload={"Parts": wrong}))[0] == "InvalidPart"
    assert (await api.error(s3.complete_multipart_upload, Bucket="bkt", Key="mp", UploadId=upload,
                            MultipartUpload={"Parts": parts[::-1]}))[0] == "InvalidPartOrder"
    done = await api.call(s3.complete_multipart_upload, Bucket="bkt", Key="mp", UploadId=upload,
                          MultipartUpload={"Parts": parts[:1]})
    assert done["ETag"].endswith('-1"')
    assert await _read(api, s3, "mp") == b"a" * 10
    assert (await api.error(s3.abort_multipart_upload, Bucket="bkt", Key="mp", UploadId=upload))[0] == "NoSuchUpload"
    assert (await api.error(s3.upload_part, Bucket="bkt", Key="mp", UploadId="../../x", PartNumber=1,
                            Body=b"x"))[0] == "NoSuchUpload"


async def test_raw_requests_no_sdk_sends(api: Api) -> None:
    signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/s3/aws4_request, "
                               "SignedHeaders=host, Signature=" + "0" * 64}  # its form is checked, not its value
    async with aiohttp.ClientSession(headers=signed) as session:
        async with session.put(f"{api.url}/bkt") as created:
            assert created.status == 200
        wrong_md5 = {"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}
        async with session.put(f"{api.url}/bkt/k", data=b"hello", headers=wrong_md5) as r:
            assert r.status == 400 and "<Code>BadDigest</Code>" in await r.text()
        chunked = b"5;chunk-signature=abc\r\nhello\r\n0;chunk-signature=def\r\n\r\n"
        async with session.put(f"{api.url}/bkt/streamed", data=chunked, headers={
                "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5"}) as r:
            assert r.status == 200
        async with session.get(f"{api.url}/bkt/streamed") as r:
            assert await r.read() == b"hello"
        async with session.get(yarl.URL(f"{api.url}/bkt/%2E%2E/%2E%2E/etc/passwd", encoded=True)) as r:
            assert r.status == 400 and "<Code>InvalidArgument</Code>" in await r.text()
        async with session.get(f"{api.url}/bkt?policy") as r:
            assert r.status == 501 and "<Code>NotImplemented</Code>" in await r.text()


# --- STS and Logs ---


async def test_sts_and_logs(api: Api) -> None:
    identity = await api.call(api.client("sts").get_caller_identity)
    assert identity["Account"] == "000000000000"
    logs = api.client("logs")
    code, message, _ = await api.error(logs.describe_log_streams, logGroupName="/aws/sagemaker/TrainingJobs")
    assert (code, message) == ("ResourceNotFoundException", "The specified log group does not exist.")
