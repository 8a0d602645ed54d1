"""The classic SageMaker XGBoost notebook (Boston housing), walked with plain boto3 against the local server."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from jobman.images import xgboost_image_uri
from tests.integration import local_fixtures
from tests.integration.local_fixtures import ROLE_ARN, LocalServer, wait_for

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

pytestmark = pytest.mark.slow

BUCKET = "notebook-bucket"
PREFIX = "sagemaker/DEMO-xgboost-boston"


def _split(tmp_path: Path) -> tuple[dict[str, Path], pd.DataFrame]:
    """2/3 train and 1/3 test, then 1/3 of train for validation; CSV with the target first, no header."""
    with resources.as_file(resources.files("jobman.data").joinpath("boston_house_prices.csv")) as path:
        data = pd.read_csv(path, skiprows=1)
    data = data[["MEDV", *[c for c in data.columns if c != "MEDV"]]]
    shuffled = data.sample(frac=1.0, random_state=42)
    cut = len(shuffled) * 2 // 3
    train, test = shuffled.iloc[:cut], shuffled.iloc[cut:]
    cut = len(train) // 3
    validation, train = train.iloc[:cut], train.iloc[cut:]
    files = {}
    for name, frame in (("train", train), ("validation", validation)):
        files[name] = tmp_path / f"{name}.csv"
        frame.to_csv(files[name], header=False, index=False)
    return files, test


def test_classic_notebook(local_server: LocalServer, tmp_path: Path) -> None:
    s3, sm = local_server.client("s3"), local_server.client("sagemaker")
    runtime, logs = local_server.client("sagemaker-runtime"), local_server.client("logs")
    files, test = _split(tmp_path)
    s3.create_bucket(Bucket=BUCKET)
    for channel, path in files.items():
        s3.upload_file(str(path), BUCKET, f"{PREFIX}/{channel}/{channel}.csv")

    job = "DEMO-xgboost-regression-1"
    sm.create_training_job(
        TrainingJobName=job,
        AlgorithmSpecification={"TrainingImage": xgboost_image_uri("us-east-1", "1"), "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/{PREFIX}/single-xgboost"},
        ResourceConfig={"InstanceCount": 1, "InstanceType": "ml.m4.xlarge", "VolumeSizeInGB": 5},
        HyperParameters={
            "max_depth": "5", "eta": "0.2", "gamma": "4", "min_child_weight": "6", "subsample": "0.8",
            "objective": "reg:linear", "early_stopping_rounds": "10", "num_round": "200",
        },
        StoppingCondition={"MaxRuntimeInSeconds": 86400},
        InputDataConfig=[
            {
                "ChannelName": channel,
                "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{PREFIX}/{channel}/",
                    "S3DataDistributionType": "FullyReplicated",
                }},
                "ContentType": "csv",
                "CompressionType": "None",
            }
            for channel in ("train", "validation")
        ],
    )
    while (described := sm.describe_training_job(TrainingJobName=job))["TrainingJobStatus"] == "InProgress":
        time.sleep(0.2)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed",
    ]
    artifact = described["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{BUCKET}/{PREFIX}/single-xgboost/{job}/output/model.tar.gz"
    assert described["BillableTimeInSeconds"] >= 1
    sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=job, WaiterConfig={"Delay": 0.1})

    # The training log reads like the container's, and a tail at the end gives its token back.
    stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=job)
    stream_name = stream["logStreams"][0]["logStreamName"]
    assert stream_name.startswith(f"{job}/algo-1-")
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream_name,
                                 startFromHead=True)
    assert any(e["message"].startswith("[0]#011train-rmse:") and "validation-rmse:" in e["message"]
               for e in events["events"])
    again = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream_name,
                                nextToken=events["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == events["nextForwardToken"]

    name = "DEMO-xgboost-regression"
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE_ARN,
                    PrimaryContainer={"Image": xgboost_image_uri("us-east-1", "1"), "ModelDataUrl": artifact})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "InstanceType": "ml.m4.xlarge", "InitialInstanceCount": 1, "ModelName": name, "VariantName": "AllTraffic",
    }])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    endpoint = sm.describe_endpoint(EndpointName=name)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    pid = local_server.endpoint_pid(name)
    assert pid is not None

    features = test.drop(columns=["MEDV"]).to_csv(header=False, index=False)
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=features)
    predictions = np.array(answer["Body"].read().decode().split("\n"), dtype=float)
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert len(predictions) == len(test)
    rmse = float(np.sqrt(np.mean((predictions - test["MEDV"].to_numpy()) ** 2)))
    assert 2.5 <= rmse <= 5.5, rmse

    # A payload the model cannot read is the model's error (424), as SageMaker reports it.
    with pytest.raises(ClientError) as bad:
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=b"1,2,three\n")
    assert bad.value.response["Error"]["Code"] == "ModelError"
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424

    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    sm.delete_endpoint_config(EndpointConfigName=name)
    sm.delete_model(ModelName=name)
    wait_for(lambda: local_server.endpoint_pid(name) is None and not _alive(pid), timeout_s=10)
    assert sm.list_endpoints()["Endpoints"] == []


def test_upload_file_multipart_round_trip(local_server: LocalServer, tmp_path: Path) -> None:
    """boto3's upload_file/download_file switch to multipart uploads and ranged GETs above the threshold."""
    s3 = local_server.client("s3")
    s3.create_bucket(Bucket="big")
    source = tmp_path / "big.bin"
    source.write_bytes(np.random.default_rng(0).bytes(12 * 1024 * 1024 + 123))
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(source), "big", "data/big.bin", Config=config)
    head = s3.head_object(Bucket="big", Key="data/big.bin")
    assert head["ContentLength"] == source.stat().st_size
    assert head["ETag"].endswith('-3"')
    target = tmp_path / "copy.bin"
    s3.download_file("big", "data/big.bin", str(target), Config=config)
    assert target.read_bytes() == source.read_bytes()


def _alive(pid: int) -> bool:
    from jobman.backends.local import supervisor

    return supervisor.is_alive(supervisor.ref_for(pid))
