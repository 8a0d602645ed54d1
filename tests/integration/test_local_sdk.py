"""What the SageMaker Python SDK (v2) reads from the local server, reproduced with boto3.

The SDK itself is not a test dependency (it would replace the boto3/botocore that aioboto3 pins), so
these tests send the calls it sends: `Estimator.attach` (DescribeTrainingJob read without `.get`),
`TrainingJobAnalytics` (GetMetricStatistics per MetricDefinitions name) and log tools'
FilterLogEvents, against a real training job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta
from typing import Any

import pytest

from tests.integration import local_fixtures
from tests.integration.local_fixtures import LocalServer
from tests.integration.test_local_training import _settled, _start

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

pytestmark = pytest.mark.slow
GROUP = "/aws/sagemaker/TrainingJobs"
ROUND = re.compile(r"^\[(\d+)\]#011(.*)$")


def _trained(server: LocalServer, name: str, rounds: int = 12) -> tuple[Any, dict[str, Any]]:
    sm = _start(server, name, hyper={"num_round": str(rounds), "objective": "reg:squarederror"})
    described = _settled(sm, name, timeout_s=60)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    return sm, described


def _logged_rounds(server: LocalServer, name: str) -> list[dict[str, float]]:
    """Each round's metrics as the log lines say them (`[3]#011train-rmse:0.12#011validation-rmse:0.2`)."""
    logs = server.client("logs")
    events = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix=f"{name}/")["events"]
    rounds = []
    for event in events:
        match = ROUND.match(event["message"])
        if match:
            pairs = (part.split(":") for part in match[2].split("#011"))
            rounds.append({metric.replace("-", ":", 1): float(value) for metric, value in pairs})
    return rounds


def _attach_init_params(job: dict[str, Any]) -> dict[str, Any]:
    """The members `Estimator._prepare_init_params_from_job_description` reads with `[...]` (sagemaker 2.x)."""
    return {
        "role": job["RoleArn"],
        "instance_count": job["ResourceConfig"]["InstanceCount"],
        "instance_type": job["ResourceConfig"]["InstanceType"],
        "volume_size": job["ResourceConfig"]["VolumeSizeInGB"],
        "max_run": job["StoppingCondition"]["MaxRuntimeInSeconds"],
        "input_mode": job["AlgorithmSpecification"]["TrainingInputMode"],
        "output_path": job["OutputDataConfig"]["S3OutputPath"],
        "output_kms_key": job["OutputDataConfig"]["KmsKeyId"],
        "image_uri": job["AlgorithmSpecification"]["TrainingImage"],
        "hyperparameters": job["HyperParameters"],
        "model_data": job["ModelArtifacts"]["S3ModelArtifacts"],
        "metric_names": [d["Name"] for d in job["AlgorithmSpecification"]["MetricDefinitions"]],
    }


def test_describe_has_what_attach_and_analytics_read(local_server: LocalServer) -> None:
    sm, described = _trained(local_server, "sdk-attach")
    params = _attach_init_params(described)
    assert params["output_kms_key"] == "" and params["input_mode"] == "File"
    assert {"train:rmse", "validation:rmse"} <= set(params["metric_names"])
    assert described["EnableNetworkIsolation"] is False
    assert described["EnableInterContainerTrafficEncryption"] is False
    assert described["EnableManagedSpotTraining"] is False
    assert described["AlgorithmSpecification"]["EnableSageMakerMetricsTimeSeries"] is False
    channel = described["InputDataConfig"][0]
    assert channel["CompressionType"] == "None" and channel["RecordWrapperType"] == "None"
    assert channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    # FinalMetricDataList holds the last logged round's values, as SageMaker scrapes them from the log.
    last = _logged_rounds(local_server, "sdk-attach")[-1]
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final == last and set(final) == {"train:rmse", "validation:rmse"}
    stamps = {m["Timestamp"] for m in described["FinalMetricDataList"]}
    assert all(described["TrainingStartTime"] <= t <= described["TrainingEndTime"] for t in stamps)
    model = _describe_model_after_create(local_server, described)
    assert model["PrimaryContainer"]["Mode"] == "SingleModel" and model["EnableNetworkIsolation"] is False


def _describe_model_after_create(server: LocalServer, job: dict[str, Any]) -> dict[str, Any]:
    sm = server.client("sagemaker")
    sm.create_model(ModelName="sdk-attach-model", ExecutionRoleArn=job["RoleArn"],
                    PrimaryContainer={"Image": job["AlgorithmSpecification"]["TrainingImage"],
                                      "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]})
    sm.create_endpoint_config(EndpointConfigName="sdk-attach-config", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "sdk-attach-model", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    config = sm.describe_endpoint_config(EndpointConfigName="sdk-attach-config")
    assert config["ProductionVariants"][0]["InitialVariantWeight"] == 1.0
    return sm.describe_model(ModelName="sdk-attach-model")


def test_metric_statistics_as_training_job_analytics_asks(local_server: LocalServer) -> None:
    _, described = _trained(local_server, "sdk-metrics", rounds=15)
    logged = _logged_rounds(local_server, "sdk-metrics")
    assert len(logged) == 15
    cloudwatch = local_server.client("cloudwatch")
    start = described["TrainingStartTime"]
    end = described["TrainingEndTime"] + timedelta(minutes=1)
    for metric in ("train:rmse", "validation:rmse"):
        values = [r[metric] for r in logged]
        request = {"Namespace": GROUP, "MetricName": metric, "StartTime": start, "EndTime": end,
                   "Dimensions": [{"Name": "TrainingJobName", "Value": "sdk-metrics"}]}
        # The SDK's default: Period 60, Average. Rounds within one minute fold into one datapoint, as on SageMaker.
        points = cloudwatch.get_metric_statistics(**request, Period=60, Statistics=["Average"])["Datapoints"]
        assert 1 <= len(points) <= 2 and all(set(p) == {"Timestamp", "Average", "Unit"} for p in points)
        # Per second, every statistic: the samples are exactly the logged rounds.
        points = cloudwatch.get_metric_statistics(
            **request, Period=1, Statistics=["SampleCount", "Sum", "Minimum", "Maximum"])["Datapoints"]
        assert sum(p["SampleCount"] for p in points) == len(values)
        assert sum(p["Sum"] for p in points) == pytest.approx(sum(values))
        assert min(p["Minimum"] for p in points) == min(values)
        assert max(p["Maximum"] for p in points) == max(values)
    host = cloudwatch.get_metric_statistics(
        Namespace=GROUP, MetricName="train:rmse", StartTime=start, EndTime=end, Period=60,
        Dimensions=[{"Name": "Host", "Value": "sdk-metrics/algo-1"}], Statistics=["SampleCount"])["Datapoints"]
    assert sum(p["SampleCount"] for p in host) == 15
    none = cloudwatch.get_metric_statistics(
        Namespace=GROUP, MetricName="validation:auc", StartTime=start, EndTime=end, Period=60,
        Dimensions=[{"Name": "TrainingJobName", "Value": "sdk-metrics"}], Statistics=["Average"])
    assert none["Datapoints"] == [] and none["Label"] == "validation:auc"
    listed = cloudwatch.list_metrics(Namespace=GROUP)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["train:rmse", "validation:rmse"]
    assert listed[0]["Dimensions"] == [{"Name": "TrainingJobName", "Value": "sdk-metrics"}]
    with pytest.raises(cloudwatch.exceptions.InvalidParameterValueException):
        cloudwatch.get_metric_statistics(Namespace=GROUP, MetricName="train:rmse", StartTime=end, EndTime=start,
                                         Period=60, Statistics=["Average"])


def test_filter_log_events(local_server: LocalServer) -> None:
    _trained(local_server, "sdk-logs-a", rounds=5)
    _trained(local_server, "sdk-logs-b", rounds=5)
    logs = local_server.client("logs")
    everything = logs.filter_log_events(logGroupName=GROUP)
    assert {e["logStreamName"].split("/")[0] for e in everything["events"]} == {"sdk-logs-a", "sdk-logs-b"}
    assert len(everything["searchedLogStreams"]) == 2 and "nextToken" not in everything
    first = everything["events"][0]
    assert set(first) == {"logStreamName", "timestamp", "message", "ingestionTime", "eventId"}
    stamps = [e["timestamp"] for e in everything["events"]]
    assert stamps == sorted(stamps)
    assert len({e["eventId"] for e in everything["events"]}) == len(everything["events"])

    rounds = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix="sdk-logs-a/",
                                    filterPattern='"#011validation-rmse" train')["events"]
    assert len(rounds) == 5 and all(e["logStreamName"].startswith("sdk-logs-a/") for e in rounds)
    not_round_0 = logs.filter_log_events(logGroupName=GROUP, filterPattern='validation-rmse -"[0]"')["events"]
    assert len(not_round_0) == 8
    either = logs.filter_log_events(logGroupName=GROUP, filterPattern="?completed ?Arguments")["events"]
    assert len(either) == 4

    # Paging: three at a time gives back every event once, in order.
    paged, token = [], None
    while True:
        page = logs.filter_log_events(logGroupName=GROUP, limit=3, **({"nextToken": token} if token else {}))
        assert len(page["events"]) <= 3
        paged += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    assert [e["eventId"] for e in paged] == [e["eventId"] for e in everything["events"]]
    streams = [e["logStreamName"] for e in rounds[:1]]
    only = logs.filter_log_events(logGroupName=GROUP, logStreamNames=streams, startTime=rounds[0]["timestamp"],
                                  endTime=rounds[-1]["timestamp"], filterPattern="train-rmse")["events"]
    assert [e["eventId"] for e in only] == [e["eventId"] for e in rounds]
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.filter_log_events(logGroupName=GROUP, filterPattern="{ $.level = 1 }")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.filter_log_events(logGroupName="/no/such/group")


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_filter_log_events(local_server: LocalServer, tmp_path: Any) -> None:
    _trained(local_server, "sdk-cli", rounds=3)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "jobman-local", "AWS_SECRET_ACCESS_KEY": "jobman-local",
           "AWS_DEFAULT_REGION": local_server.region, "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": ""}
    out = subprocess.run(
        ["aws", "logs", "filter-log-events", "--endpoint-url", local_server.url, "--log-group-name", GROUP,
         "--filter-pattern", "train-rmse", "--query", "events[].message", "--output", "text"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("train-rmse") == 3

