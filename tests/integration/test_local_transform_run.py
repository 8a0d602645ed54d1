"""Batch Transform on the local backend as a user runs it: `jobman run` with mode = "transform", `jobman transform`,
and kill -9 in the middle of a transform job. Real training, real transform jobs, real endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import jobman, write_experiment
from tests.integration.local_fixtures import LocalServer
from tests.integration.test_local_run import kill_9_run_when, ledger_statuses

pytestmark = pytest.mark.slow
TRANSFORM = {'name = "boston-xgboost"': 'name = "boston-transform"', "concurrency = 8": 'mode = "transform"'}


def status_of(cwd: Path, experiment: str) -> dict[str, Any]:
    shown = jobman("status", experiment, "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    [exp] = json.loads(shown.stdout)["experiments"]
    return exp  # type: ignore[no-any-return]


def test_transform_mode_equals_endpoint_mode_and_jobman_transform_equals_invoke(
    local_server: LocalServer, tmp_path: Path
) -> None:
    by_endpoint = write_experiment(tmp_path / "endpoint.toml", {"keep = false": "keep = true"})
    done = jobman("run", str(by_endpoint), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    by_transform = write_experiment(tmp_path / "transform.toml", TRANSFORM)
    done = jobman("run", str(by_transform), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout

    # The same model on the same split: the same predictions, to float precision.
    outputs = tmp_path / "jobman-output"
    endpoint_rows = (outputs / "boston-xgboost-r1" / "predictions.csv").read_text().splitlines()
    transform_rows = (outputs / "boston-transform-r1" / "predictions.csv").read_text().splitlines()
    assert len(transform_rows) == 168
    for a, b in zip(endpoint_rows[1:], transform_rows[1:], strict=True):
        assert [float(v) for v in a.split(",")] == pytest.approx([float(v) for v in b.split(",")], rel=1e-6)
    exp = status_of(tmp_path, "boston-transform")
    assert exp["metrics"]["rmse"] == pytest.approx(status_of(tmp_path, "boston-xgboost")["metrics"]["rmse"], rel=1e-6)
    kinds = {r["kind"]: r for r in exp["resources"]}
    assert set(kinds) == {"training_job", "model", "transform_job", "schedule"}
    assert kinds["transform_job"]["status"] == "Completed" and kinds["transform_job"]["billed_s"] > 0
    assert kinds["transform_job"]["cost_usd"] == 0.0  # the local backend is free; on AWS, price x time
    # On the server, the transform experiment never had an endpoint or an endpoint config.
    sm = local_server.client("sagemaker")
    assert sm.list_endpoints(NameContains="boston-transform")["Endpoints"] == []
    assert sm.list_endpoint_configs(NameContains="boston-transform")["EndpointConfigs"] == []
    [job] = sm.list_transform_jobs(NameContains="boston-transform")["TransformJobSummaries"]
    assert job["TransformJobStatus"] == "Completed"

    # 200,000 rows through the kept endpoint and through a transform job of the same model: the same lines.
    features = (outputs / "boston-xgboost-r1" / "data" / "test_features.csv").read_bytes()
    big = tmp_path / "big.csv"
    lines = features.splitlines(keepends=True)
    big.write_bytes(b"".join((lines * (200_000 // len(lines) + 1))[:200_000]))
    invoked = jobman("invoke", "boston-xgboost-r1-endpoint", str(big), "-o", str(tmp_path / "invoked.csv"),
                     cwd=tmp_path)
    assert invoked.returncode == 0, invoked.stderr
    transformed = jobman("transform", "boston-xgboost/r1", str(big), "-o", str(tmp_path / "transformed.csv"),
                         cwd=tmp_path)
    assert transformed.returncode == 0, transformed.stderr + transformed.stdout
    assert "200,000 predictions from transform job boston-xgboost-r1-b1-transform" in transformed.stderr
    invoked_lines = (tmp_path / "invoked.csv").read_bytes().splitlines()
    transformed_lines = (tmp_path / "transformed.csv").read_bytes().splitlines()
    assert len(transformed_lines) == 200_000
    assert [float(v) for v in transformed_lines] == [float(v) for v in invoked_lines]
    # Its model is gone again, and so are its S3 objects.
    assert sm.list_models(NameContains="-b1-")["Models"] == []
    s3 = local_server.client("s3")
    [bucket] = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="boston-xgboost-deploy-ll/r1/batch-1/")
    assert listed.get("KeyCount", 0) == 0
    assert jobman("stop", "boston-xgboost", cwd=tmp_path).returncode == 0


def test_kill_9_during_the_transform_then_rerun(local_server: LocalServer, tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "exp.toml", TRANSFORM)
    kill_9_run_when(path, lambda: ledger_statuses(local_server.home).get("boston-transform-r1-transform")
                    in ("Pending", "InProgress"), interval_s=0.01)
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "resuming boston-transform run 1" in done.stdout
    sm = local_server.client("sagemaker")
    jobs = sm.list_transform_jobs(NameContains="boston-transform")["TransformJobSummaries"]
    assert [(j["TransformJobName"], j["TransformJobStatus"]) for j in jobs] == [
        ("boston-transform-r1-transform", "Completed")]
    exp = status_of(tmp_path, "boston-transform")
    assert exp["status"] == "succeeded" and exp["metrics"]["rows"] == 167
    assert sm.list_models(NameContains="boston-transform")["Models"] == []
