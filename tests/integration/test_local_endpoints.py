"""Endpoints on the local server: detached processes that survive the server, and are replaced when they crash."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from botocore.exceptions import ClientError, WaiterError

from jobman.backends.local import supervisor
from jobman.backends.local.daemon import ensure_running, server_status, stop_server
from tests.integration import local_fixtures
from tests.integration.local_fixtures import (
    IMAGE,
    ROLE_ARN,
    LocalServer,
    deploy,
    tiny_model_artifact,
    wait_for,
)

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

pytestmark = pytest.mark.slow
ROWS = "\n".join(",".join(["0.5"] * 13) for _ in range(5)).encode()


def _invoke(server: LocalServer, name: str) -> list[float]:
    answer = server.client("sagemaker-runtime").invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=ROWS)
    return [float(v) for v in answer["Body"].read().decode().split("\n")]


def test_endpoint_keeps_serving_across_a_server_restart(local_server: LocalServer) -> None:
    deploy(local_server, "survivor")
    before = _invoke(local_server, "survivor")
    pid = local_server.endpoint_pid("survivor")
    assert stop_server(local_server.home) is True
    assert server_status(local_server.home) is None
    assert pid is not None and supervisor.is_alive(supervisor.ref_for(pid))  # endpoints outlive the server

    url = ensure_running(local_server.home, idle_timeout_s=120)
    restarted = LocalServer(local_server.home, url)
    assert restarted.client("sagemaker").describe_endpoint(EndpointName="survivor")["EndpointStatus"] == "InService"
    assert _invoke(restarted, "survivor") == before
    assert restarted.endpoint_pid("survivor") == pid  # adopted, not started again
    status = server_status(local_server.home)
    assert status is not None
    processes = status["endpoint_processes"]
    assert [(p["name"], p["pid"], p["status"]) for p in processes] == [("survivor", pid, "InService")]


def test_crashed_endpoint_process_is_replaced_and_logged(local_server: LocalServer) -> None:
    deploy(local_server, "fragile")
    pid = local_server.endpoint_pid("fragile")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # An invocation during the replacement waits for the new instance rather than failing.
    assert len(_invoke(local_server, "fragile")) == 5
    new_pid = wait_for(lambda: local_server.endpoint_pid("fragile"))
    assert new_pid != pid
    sm = local_server.client("sagemaker")
    assert sm.describe_endpoint(EndpointName="fragile")["EndpointStatus"] == "InService"

    logs = local_server.client("logs")
    group = "/aws/sagemaker/Endpoints/fragile"
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert len(streams) == 2 and all(s["logStreamName"].startswith("AllTraffic/i-") for s in streams)
    messages = [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]]
    assert any("SIGKILL" in m and "replacing it" in m for m in messages)
    assert "replacing it" in (local_server.root / "server.log").read_text()


def test_endpoint_with_a_missing_artifact_fails(local_server: LocalServer) -> None:
    sm = local_server.client("sagemaker")
    sm.create_model(ModelName="broken", ExecutionRoleArn=ROLE_ARN,
                    PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://models/nothing/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="broken", ProductionVariants=[
        {"VariantName": "v", "ModelName": "broken", "InitialInstanceCount": 1, "InstanceType": "ml.m4.xlarge"}])
    sm.create_endpoint(EndpointName="broken", EndpointConfigName="broken")
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="broken",
                                                  WaiterConfig={"Delay": 0.1, "MaxAttempts": 300})
    described = sm.describe_endpoint(EndpointName="broken")
    assert described["EndpointStatus"] == "Failed"
    assert "Failed to download model data" in described["FailureReason"]
    assert "s3://models/nothing/model.tar.gz" in described["FailureReason"]
    with pytest.raises(ClientError) as error:
        local_server.client("sagemaker-runtime").invoke_endpoint(EndpointName="broken", Body=ROWS)
    assert error.value.response["Error"]["Code"] == "ValidationError"
    sm.delete_endpoint(EndpointName="broken")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="broken", WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})


def test_model_with_another_image_fails_the_endpoint(local_server: LocalServer) -> None:
    sm, s3 = local_server.client("sagemaker"), local_server.client("s3")
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="m/model.tar.gz", Body=tiny_model_artifact())
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-server:1"
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE_ARN,
                    PrimaryContainer={"Image": image, "ModelDataUrl": "s3://models/m/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="m", ProductionVariants=[
        {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m4.xlarge"}])
    sm.create_endpoint(EndpointName="m", EndpointConfigName="m")
    described = wait_for(lambda: (d := sm.describe_endpoint(EndpointName="m"))["EndpointStatus"] == "Failed" and d)
    assert "only the built-in XGBoost" in described["FailureReason"] and image in described["FailureReason"]


def test_stop_with_endpoints_leaves_no_process(local_server: LocalServer) -> None:
    deploy(local_server, "short-lived")
    pid = local_server.endpoint_pid("short-lived")
    assert stop_server(local_server.home, stop_endpoints=True) is True
    assert pid is not None and not supervisor.is_alive(supervisor.ref_for(pid))
    assert local_server.worker_pids() == []
    url = ensure_running(local_server.home, idle_timeout_s=120)
    sm = LocalServer(local_server.home, url).client("sagemaker")
    assert sm.describe_endpoint(EndpointName="short-lived")["EndpointStatus"] == "OutOfService"
    assert local_server.worker_pids() == []  # an OutOfService endpoint is not started again


def test_large_invocation_round_trip(local_server: LocalServer) -> None:
    deploy(local_server, "bulk")
    rows = 50_000
    body = "\n".join(",".join(["0.25"] * 13) for _ in range(rows)).encode()
    assert len(body) < 6 * 1024 * 1024
    answer = local_server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName="bulk", ContentType="text/csv", Body=body)
    predictions = np.array(answer["Body"].read().split(b"\n"), dtype=float)
    assert predictions.shape == (rows,) and np.all(predictions == predictions[0])
