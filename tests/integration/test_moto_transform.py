"""`[evaluation] mode = "transform"` with backend = "sagemaker" against moto's server.

moto creates, describes and lists transform jobs (Completed at once) but runs nothing and writes no output;
the test puts the output object where SageMaker would, as the job's result.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from tests.conftest import SAGEMAKER, jobman, write_experiment
from tests.moto_server import Moto

TEST_ROWS = 167
BUCKET = "sagemaker-us-east-1-123456789012"
OUTPUT_KEY = "boston-xgboost-deploy-ll/r1/transform/output/input.csv.out"


def test_transform_mode_on_moto(moto: Moto, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=OUTPUT_KEY, Body=("22.5\n" * TEST_ROWS).encode())
    path = write_experiment(tmp_path / "exp.toml", {**SAGEMAKER, "concurrency = 8": 'mode = "transform"'})
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "RMSE" in done.stdout and "transform job ml.m4.xlarge x 1" in done.stdout

    sm = boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1")
    [job] = sm.list_transform_jobs()["TransformJobSummaries"]
    assert (job["TransformJobName"], job["TransformJobStatus"]) == ("boston-xgboost-r1-transform", "Completed")
    described = sm.describe_transform_job(TransformJobName="boston-xgboost-r1-transform")
    assert described["TransformInput"]["SplitType"] == "Line" and described["BatchStrategy"] == "MultiRecord"
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []  # torn down after the job
    # What the run sent: the test features, no header, no target.
    sent = s3.get_object(Bucket=BUCKET, Key="boston-xgboost-deploy-ll/r1/transform/input/input.csv")["Body"].read()
    assert len(sent.splitlines()) == TEST_ROWS and len(sent.splitlines()[0].split(b",")) == 13

    view = json.loads(jobman("status", "--json", cwd=tmp_path).stdout)
    [exp] = view["experiments"]
    assert exp["status"] == "succeeded" and exp["metrics"]["rows"] == TEST_ROWS
    kinds = {r["kind"]: r for r in exp["resources"]}
    assert "endpoint" not in kinds and "endpoint_config" not in kinds
    assert kinds["transform_job"]["status"] == "Completed" and kinds["transform_job"]["cost_usd"] is not None
    predictions = (tmp_path / "jobman-output" / "boston-xgboost-r1" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == TEST_ROWS + 1 and predictions[1].endswith(",22.5")
