"""Training jobs on the local server: real XGBoost processes, and every way a job ends."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest

from jobman.backends.local import supervisor
from tests.integration import local_fixtures
from tests.integration.local_fixtures import IMAGE, ROLE_ARN, LocalServer, wait_for

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

pytestmark = pytest.mark.slow
BUCKET = "training"


def _csv(rows: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 4))
    y = x @ np.array([3.0, -2.0, 1.0, 0.5]) + rng.normal(0, 0.1, rows)
    return "\n".join(",".join(f"{v:.5f}" for v in (t, *f)) for t, f in zip(y, x, strict=True)).encode() + b"\n"


def _start(server: LocalServer, name: str, *, hyper: dict[str, str] | None = None, image: str = IMAGE,
           channels: dict[str, str] | None = None, content_type: str | None = "text/csv",
           max_runtime_s: int = 3600) -> Any:
    s3, sm = server.client("s3"), server.client("sagemaker")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="data/train/part-0.csv", Body=_csv(300, 1))
        s3.put_object(Bucket=BUCKET, Key="data/train/part-1.csv", Body=_csv(300, 2))
        s3.put_object(Bucket=BUCKET, Key="data/validation.csv", Body=_csv(100, 3))
    channels = channels if channels is not None else {"train": "data/train/", "validation": "data/validation.csv"}
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        HyperParameters=hyper if hyper is not None else {"num_round": "20", "objective": "reg:squarederror"},
        InputDataConfig=[
            {"ChannelName": channel, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                     "S3Uri": f"s3://{BUCKET}/{key}"}},
             **({"ContentType": content_type} if content_type else {})}
            for channel, key in channels.items()
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output/"},
        ResourceConfig={"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime_s},
        Tags=[{"Key": "jobman:managed", "Value": "true"}],
    )
    return sm


def _settled(sm: Any, name: str, timeout_s: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described = sm.describe_training_job(TrainingJobName=name)
        return None if described["TrainingJobStatus"] in ("InProgress", "Stopping") else described

    return wait_for(done, timeout_s=timeout_s)


def test_completes_with_prefix_and_single_object_channels(local_server: LocalServer) -> None:
    sm = _start(local_server, "ok-job")
    described = _settled(sm, "ok-job")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/output/ok-job/output/model.tar.gz"
    metrics = {m["MetricName"] for m in described["FinalMetricDataList"]}
    assert metrics == {"train:rmse", "validation:rmse"}
    assert described["HyperParameters"]["num_round"] == "20"
    head = local_server.client("s3").head_object(Bucket=BUCKET, Key="output/ok-job/output/model.tar.gz")
    assert head["ContentLength"] > 0
    summaries = sm.list_training_jobs(StatusEquals="Completed")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in summaries] == ["ok-job"]
    assert "TrainingEndTime" in summaries[0]
    tags = sm.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert tags == [{"Key": "jobman:managed", "Value": "true"}]


def test_bad_hyperparameter_fails_naming_it(local_server: LocalServer) -> None:
    sm = _start(local_server, "bad-hp", hyper={"num_round": "10", "max_depht": "5"})
    described = _settled(sm, "bad-hp")
    assert described["TrainingJobStatus"] == "Failed"
    assert "max_depht" in described["FailureReason"]
    assert described["FailureReason"].startswith("ClientError")
    assert described["SecondaryStatus"] == "Failed"


def test_invalid_value_and_missing_num_round_fail(local_server: LocalServer) -> None:
    sm = _start(local_server, "bad-eta", hyper={"num_round": "10", "eta": "fast"})
    sm2 = _start(local_server, "no-rounds", hyper={"max_depth": "3"})
    assert "eta" in _settled(sm, "bad-eta")["FailureReason"]
    assert "num_round" in _settled(sm2, "no-rounds")["FailureReason"]


def test_other_image_fails_with_a_clear_reason(local_server: LocalServer) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own-algorithm:latest"
    sm = _start(local_server, "own-image", image=image)
    described = _settled(sm, "own-image")
    assert described["TrainingJobStatus"] == "Failed"
    assert "only the built-in XGBoost" in described["FailureReason"] and image in described["FailureReason"]


def test_missing_channel_data_and_bad_csv_fail(local_server: LocalServer) -> None:
    sm = _start(local_server, "no-data", channels={"train": "nothing/here/"})
    assert "no data found under s3://training/nothing/here/" in _settled(sm, "no-data")["FailureReason"]
    local_server.client("s3").put_object(Bucket=BUCKET, Key="bad/train.csv", Body=b"1,2,3\nx,y,z\n")
    sm = _start(local_server, "bad-csv", channels={"train": "bad/"})
    assert "could not read s3://training/bad/ as CSV" in _settled(sm, "bad-csv")["FailureReason"]


def test_libsvm_is_the_default_content_type(local_server: LocalServer) -> None:
    s3 = local_server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="svm/train.libsvm", Body=b"1 1:0.5 2:1.5\n0 1:0.1 3:2\n1 2:0.7\n0 1:0.3 2:0.1\n")
    sm = _start(local_server, "svm-job", channels={"train": "svm/"}, content_type=None,
                hyper={"num_round": "3", "objective": "binary:logistic"})
    described = _settled(sm, "svm-job")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")


def test_stop_training_job(local_server: LocalServer) -> None:
    sm = _start(local_server, "long-job", hyper={"num_round": "1000000", "max_depth": "2"})
    wait_for(lambda: sm.describe_training_job(TrainingJobName="long-job")["SecondaryStatus"] == "Training")
    sm.stop_training_job(TrainingJobName="long-job")
    assert sm.describe_training_job(TrainingJobName="long-job")["TrainingJobStatus"] in ("Stopping", "Stopped")
    described = _settled(sm, "long-job")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]][-2:] == ["Stopping", "Stopped"]
    sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName="long-job", WaiterConfig={"Delay": 0.1})
    wait_for(lambda: local_server.worker_pids() == [], timeout_s=5)


def test_max_runtime_stops_the_job(local_server: LocalServer) -> None:
    sm = _start(local_server, "slow-job", hyper={"num_round": "1000000", "max_depth": "2"}, max_runtime_s=1)
    described = _settled(sm, "slow-job")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


def test_worker_that_dies_makes_the_job_failed(local_server: LocalServer) -> None:
    sm = _start(local_server, "doomed", hyper={"num_round": "1000000", "max_depth": "2"})
    wait_for(lambda: sm.describe_training_job(TrainingJobName="doomed")["SecondaryStatus"] == "Training")
    (pid,) = local_server.worker_pids()
    os.kill(pid, signal.SIGKILL)
    described = _settled(sm, "doomed")
    assert described["TrainingJobStatus"] == "Failed"
    assert "SIGKILL" in described["FailureReason"] or "exited" in described["FailureReason"]
    wait_for(lambda: not supervisor.is_alive(supervisor.ref_for(pid)), timeout_s=5)
    # Settled once, in the job's files: it stays Failed.
    assert sm.describe_training_job(TrainingJobName="doomed")["TrainingJobStatus"] == "Failed"
