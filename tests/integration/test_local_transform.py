"""Batch Transform jobs on a real local server: detached workers scoring S3 objects like the endpoint does.

The SageMaker Python SDK is not a test dependency (it would replace the boto3/botocore that aioboto3
pins), so `Transformer(...).transform(...)` and `wait()` are reproduced call for call (sagemaker 2.x:
DescribeModel for the image, CreateTransformJob as `Session._get_transform_request` builds it, then
`logs_for_transform_job`: DescribeLogStreams / GetLogEvents on /aws/sagemaker/TransformJobs while
polling DescribeTransformJob, and the final status check).
"""

from __future__ import annotations

import io
import signal
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from jobman.backends.local import supervisor
from jobman.backends.local.daemon import ensure_running, stop_server
from jobman.backends.local.scoring import Model
from jobman.backends.local.store import read_json
from tests.integration import local_fixtures
from tests.integration.local_fixtures import IMAGE, ROLE_ARN, LocalServer, deploy, tiny_model_artifact, wait_for

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

pytestmark = pytest.mark.slow
GROUP = "/aws/sagemaker/TransformJobs"
BUCKET = "batch"


@pytest.fixture
def server(local_server: LocalServer) -> Iterator[LocalServer]:
    """The shared fixture, plus a safety net for transform workers, which its teardown does not know."""
    try:
        yield local_server
    finally:
        for path in local_server.root.glob("transforms/*/*/worker.json"):
            ref = supervisor.ProcessRef.from_json(read_json(path))
            if ref is not None and supervisor.is_alive(ref):
                supervisor.send_signal(ref, signal.SIGKILL)


def _rows(count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    values = rng.random((count, 13)) * 10
    return "".join(",".join(f"{v:.5f}" for v in row) + "\n" for row in values).encode()


def _setup(server: LocalServer, model: str, *, endpoint: bool = False, artifact: bytes | None = None) -> None:
    """A model named `model` (and its endpoint, with `endpoint`), and the bucket for inputs and outputs."""
    s3, sm = server.client("s3"), server.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    if endpoint:
        deploy(server, model, artifact)
        return
    if artifact is not None:
        s3.put_object(Bucket=BUCKET, Key=f"models/{model}/model.tar.gz", Body=artifact)
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/{model}/model.tar.gz"})


def _transform(server: LocalServer, name: str, model: str, prefix: str, **extra: Any) -> None:
    server.client("sagemaker").create_transform_job(
        TransformJobName=name, ModelName=model,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/out/{name}", "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **extra,
    )


def _settled(server: LocalServer, name: str, timeout_s: float = 60) -> dict[str, Any]:
    sm = server.client("sagemaker")
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": int(timeout_s / 0.2)})
    return dict(sm.describe_transform_job(TransformJobName=name))


def _settled_any(server: LocalServer, name: str, timeout_s: float = 60) -> dict[str, Any]:
    """Like `_settled`, for a job that may fail (the waiter raises on Failed)."""
    sm = server.client("sagemaker")
    return dict(wait_for(lambda: (d := sm.describe_transform_job(TransformJobName=name))["TransformJobStatus"]
                         in ("Completed", "Failed", "Stopped") and d, timeout_s))


def _object(server: LocalServer, key: str) -> bytes:
    return bytes(server.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _endpoint_predictions(server: LocalServer, endpoint: str, rows: bytes, chunk: int = 2000) -> list[str]:
    runtime = server.client("sagemaker-runtime")
    lines = rows.splitlines()
    answers: list[str] = []
    for start in range(0, len(lines), chunk):
        body = b"\n".join(lines[start:start + chunk])
        answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=body)
        answers.extend(answer["Body"].read().decode().split("\n"))
    return answers


def test_transform_predicts_what_the_endpoint_answers(server: LocalServer) -> None:
    _setup(server, "same", endpoint=True)
    s3 = server.client("s3")
    big, small = _rows(20_000, 1), _rows(7, 2)
    s3.put_object(Bucket=BUCKET, Key="in/part-1.csv", Body=big)
    s3.put_object(Bucket=BUCKET, Key="in/more/part-2.csv", Body=small)
    _transform(server, "same-batch", "same", "in/", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
               MaxConcurrentTransforms=2, Tags=[{"Key": "jobman:managed", "Value": "true"}])
    described = _settled(server, "same-batch")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["TransformEndTime"] >= described["TransformStartTime"] >= described["CreationTime"]
    for key, rows in (("part-1.csv", big), ("more/part-2.csv", small)):
        out = _object(server, f"out/same-batch/{key}.out").decode()
        assert out.endswith("\n") and out.count("\n") == rows.count(b"\n")  # one prediction per input line
        assert out.rstrip("\n").split("\n") == _endpoint_predictions(server, "same", rows)
    tags = server.client("sagemaker").list_tags(ResourceArn=described["TransformJobArn"])["Tags"]
    assert tags == [{"Key": "jobman:managed", "Value": "true"}]
    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix="same-batch/")["logStreams"]
    assert streams and streams[0]["logStreamName"].startswith("same-batch/i-")
    events = logs.get_log_events(logGroupName=GROUP, logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    assert any("s3://batch/in/part-1.csv: 20000 records" in e["message"] for e in events)


def test_a_header_line_fails_the_job_naming_object_and_line(server: LocalServer) -> None:
    _setup(server, "strict", artifact=tiny_model_artifact())
    s3 = server.client("s3")
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=_rows(10, 1))
    s3.put_object(Bucket=BUCKET, Key="in/b.csv", Body=b"CRIM,ZN,INDUS,CHAS,NOX,RM,AGE,DIS,RAD,TAX,PTRATIO,B,LSTAT\n"
                  + _rows(10, 2))
    _transform(server, "strict-batch", "strict", "in/")
    described = _settled_any(server, "strict-batch")
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: s3://batch/in/b.csv line 1: 'CRIM' is not a number")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("Contents", [])]
    assert keys == ["out/strict-batch/a.csv.out"]  # b.csv.out is written whole or not at all
    listed = server.client("sagemaker").list_transform_jobs(StatusEquals="Failed")["TransformJobSummaries"]
    assert [s["TransformJobName"] for s in listed] == ["strict-batch"]


def test_a_missing_model_artifact_fails_the_job(server: LocalServer) -> None:
    _setup(server, "hollow")  # the model names an artifact nobody uploaded
    server.client("s3").put_object(Bucket=BUCKET, Key="in/a.csv", Body=_rows(3, 1))
    _transform(server, "hollow-batch", "hollow", "in/")
    described = _settled_any(server, "hollow-batch")
    assert described["TransformJobStatus"] == "Failed"
    assert "Failed to download model data" in described["FailureReason"]
    assert "s3://batch/models/hollow/model.tar.gz" in described["FailureReason"]


def test_stop_ends_the_job_as_stopped(server: LocalServer) -> None:
    _setup(server, "halt", artifact=tiny_model_artifact())
    server.client("s3").put_object(Bucket=BUCKET, Key="in/a.csv", Body=_rows(10_000, 1) * 50)  # seconds of work
    _transform(server, "halt-batch", "halt", "in/", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
               MaxConcurrentTransforms=1)
    sm = server.client("sagemaker")
    # The worker is frozen as soon as it exists (still starting Python), so it cannot finish before the stop
    # however slow this machine is; it is let go once the stop was asked for.
    worker = server.root / "transforms" / "us-east-1" / "halt-batch" / "worker.json"
    ref = wait_for(lambda: supervisor.ProcessRef.from_json(read_json(worker)), interval_s=0.001)
    supervisor.send_signal(ref, signal.SIGSTOP)
    try:
        assert sm.describe_transform_job(TransformJobName="halt-batch")["TransformJobStatus"] == "InProgress"
        sm.stop_transform_job(TransformJobName="halt-batch")
        assert sm.describe_transform_job(TransformJobName="halt-batch")["TransformJobStatus"] in ("Stopping",
                                                                                                "Stopped")
    finally:
        supervisor.send_signal(ref, signal.SIGCONT)
    described = _settled(server, "halt-batch")
    assert described["TransformJobStatus"] == "Stopped"
    assert server.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="out/").get("KeyCount") == 0
    with pytest.raises(sm.exceptions.ClientError, match="Stopped"):
        sm.stop_transform_job(TransformJobName="halt-batch")


def test_a_killed_worker_reads_failed_and_a_restart_loses_nothing(server: LocalServer) -> None:
    _setup(server, "fragile", artifact=tiny_model_artifact())
    server.client("s3").put_object(Bucket=BUCKET, Key="in/a.csv", Body=_rows(200, 1))
    _transform(server, "done-batch", "fragile", "in/")
    assert _settled(server, "done-batch")["TransformJobStatus"] == "Completed"
    server.client("s3").put_object(Bucket=BUCKET, Key="big/a.csv", Body=_rows(10_000, 3) * 50)  # seconds of work
    _transform(server, "killed-batch", "fragile", "big/", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
               MaxConcurrentTransforms=1)
    worker = server.root / "transforms" / "us-east-1" / "killed-batch" / "worker.json"
    ref = wait_for(lambda: supervisor.ProcessRef.from_json(read_json(worker)))
    supervisor.send_signal(ref, signal.SIGKILL)
    described = _settled_any(server, "killed-batch")
    assert described["TransformJobStatus"] == "Failed" and "before the job finished" in described["FailureReason"]

    assert stop_server(server.home) is True
    url = ensure_running(server.home, idle_timeout_s=120)
    restarted = LocalServer(server.home, url)
    sm = restarted.client("sagemaker")
    assert sm.describe_transform_job(TransformJobName="done-batch")["TransformJobStatus"] == "Completed"
    assert sm.describe_transform_job(TransformJobName="killed-batch")["TransformJobStatus"] == "Failed"
    names = [s["TransformJobName"] for s in sm.list_transform_jobs(SortBy="Name")["TransformJobSummaries"]]
    assert names == ["killed-batch", "done-batch"]


# --- the SageMaker Python SDK's Transformer, call for call ---


def _sdk_transform(server: LocalServer, model_name: str, data: str, output_path: str, job_name: str) -> None:
    """`Transformer(model_name, 1, "ml.m5.large", output_path=..., strategy="MultiRecord", assemble_with="Line",
    accept="text/csv").transform(data=data, split_type="Line", content_type="text/csv", job_name=job_name)`."""
    sm = server.client("sagemaker")
    model = sm.describe_model(ModelName=model_name)  # Transformer._retrieve_image_uri
    assert model["PrimaryContainer"]["Image"] == IMAGE
    sm.create_transform_job(  # Session._get_transform_request
        TransformJobName=job_name, ModelName=model_name,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": data}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": output_path, "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        BatchStrategy="MultiRecord",
    )


def _sdk_wait(server: LocalServer, job_name: str, timeout_s: float = 60) -> list[str]:
    """`Transformer.wait()` = `Session.logs_for_transform_job(job_name, wait=True)`; returns the printed log."""
    sm, logs = server.client("sagemaker"), server.client("logs")
    description = sm.describe_transform_job(TransformJobName=job_name)
    instance_count = description["TransformResources"]["InstanceCount"]
    streams: list[str] = []
    positions: dict[str, int] = {}
    printed: list[str] = []
    complete = description["TransformJobStatus"] in ("Completed", "Failed", "Stopped")
    deadline = time.monotonic() + timeout_s
    while True:
        if len(streams) < instance_count:
            try:
                found = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=job_name + "/",
                                                  orderBy="LogStreamName", limit=min(instance_count, 50))
                streams = [s["logStreamName"] for s in found["logStreams"]]
            except logs.exceptions.ResourceNotFoundException:  # no log yet: the SDK tries again later
                pass
        for stream in streams:
            events = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)["events"]
            printed.extend(e["message"] for e in events[positions.get(stream, 0):])
            positions[stream] = len(events)
        if complete:
            break
        assert time.monotonic() < deadline, "the transform job did not finish"
        time.sleep(0.2)
        description = sm.describe_transform_job(TransformJobName=job_name)
        complete = description["TransformJobStatus"] in ("Completed", "Failed", "Stopped")
    status = description["TransformJobStatus"]  # Session._check_job_status
    assert status in ("Completed", "Stopped"), f"Error for Transform job {job_name}: {status}. Reason: " + (
        description.get("FailureReason", "(No reason provided)"))
    return printed


def test_sagemaker_sdk_transformer_flow(server: LocalServer) -> None:
    artifact = tiny_model_artifact(seed=4)
    _setup(server, "sdk-model", artifact=artifact)
    rows = _rows(500, 9)
    server.client("s3").put_object(Bucket=BUCKET, Key="sdk/input.csv", Body=rows)
    _sdk_transform(server, "sdk-model", f"s3://{BUCKET}/sdk", f"s3://{BUCKET}/sdk-out",
                   "sdk-model-2026-11-30-04-00-00-000")
    printed = _sdk_wait(server, "sdk-model-2026-11-30-04-00-00-000")
    assert any("Transform job completed" in line for line in printed)
    out = _object(server, "sdk-out/input.csv.out").decode().splitlines()
    assert len(out) == 500

    booster = xgb.Booster()
    with tarfile.open(fileobj=io.BytesIO(artifact)) as archive:
        handle = archive.extractfile("xgboost-model")
        assert handle is not None
        booster.load_model(bytearray(handle.read()))
    assert out == Model(booster).predict_csv(rows).decode().split("\n")
