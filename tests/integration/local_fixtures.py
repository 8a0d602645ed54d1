"""The `local_server` fixture: jobman's local server on a temporary JOBMAN_HOME, and plain boto3 clients for it.

Teardown stops the server with its endpoint and training processes, then kills anything a worker file
still names, so no test leaves a process behind.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from jobman.backends.local import supervisor
from jobman.backends.local.artifacts import pack_model
from jobman.backends.local.daemon import ensure_running, stop_server
from jobman.backends.local.store import layout, read_json
from jobman.images import xgboost_image_uri

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::000000000000:role/jobman-local"
IMAGE = xgboost_image_uri(REGION, "1")


@dataclass
class LocalServer:
    home: Path
    url: str
    region: str = REGION

    def client(self, service: str, **config: Any) -> Any:
        session = boto3.session.Session(
            aws_access_key_id="jobman-local", aws_secret_access_key="jobman-local", region_name=self.region
        )
        options = {"retries": {"mode": "standard", "total_max_attempts": 3}, **config}
        return session.client(service, endpoint_url=self.url, config=Config(**options))

    @property
    def root(self) -> Path:
        return layout(self.home).root

    def worker_pids(self) -> list[int]:
        """Live processes the server's worker files name (training jobs and endpoints)."""
        return [ref.pid for ref in _recorded_processes(self.root, "endpoints/*/*", "training/*/*")]

    def endpoint_pid(self, name: str) -> int | None:
        ref = supervisor.ProcessRef.from_json(read_json(self.root / "endpoints" / self.region / name.lower() /
                                                        "worker.json"))
        return ref.pid if ref is not None and supervisor.is_alive(ref) else None


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; returns its value, fails the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def _recorded_processes(root: Path, *folders: str) -> Iterator[supervisor.ProcessRef]:
    """Live processes named by `worker.json` files in `folders` (globs under `root`)."""
    for folder in folders:
        for path in sorted(root.glob(f"{folder}/worker.json")):
            ref = supervisor.ProcessRef.from_json(read_json(path))
            if ref is not None and ref.pid != os.getpid() and supervisor.is_alive(ref):
                yield ref


def kill_leftovers(home: Path) -> None:
    """The safety net after `stop_server`: SIGKILL any server or worker process still alive."""
    root = layout(home).root
    server = supervisor.ProcessRef.from_json(read_json(root / "server.json"))
    workers = _recorded_processes(root, "endpoints/*/*", "training/*/*", "transforms/*/*")
    for ref in [*([server] if server else []), *workers]:
        if ref.pid != os.getpid() and supervisor.is_alive(ref):
            supervisor.send_signal(ref, signal.SIGKILL)


@pytest.fixture
def local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    home = tmp_path / "jobman-home"
    monkeypatch.setenv("JOBMAN_HOME", str(home))
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                     "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    url = ensure_running(home, idle_timeout_s=120)
    try:
        yield LocalServer(home, url)
    finally:
        try:
            stop_server(home, stop_endpoints=True)
        finally:
            kill_leftovers(home)


def tiny_model_artifact(rows: int = 200, features: int = 13, seed: int = 0) -> bytes:
    """A model.tar.gz holding `xgboost-model`, as a training job would upload it (no training job needed)."""
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.random((rows, features))
    y = x @ rng.random(features) * 10
    booster = xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=y), num_boost_round=20)
    return pack_model(booster)


def deploy(server: LocalServer, name: str, artifact: bytes | None = None, *, wait: bool = True) -> dict[str, Any]:
    """Model, endpoint config and endpoint `name` serving `artifact` (a tiny model by default)."""
    s3, sm = server.client("s3"), server.client("sagemaker")
    bucket = "models"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=f"{name}/model.tar.gz", Body=artifact or tiny_model_artifact())
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE_ARN,
                    PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{name}/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m4.xlarge",
    }])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 200})
    return sm.describe_endpoint(EndpointName=name)
