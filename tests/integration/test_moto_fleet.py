"""Issue 4 on the AWS path: orphans and TTLs with gc, call counts read at the server, drift, stop."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobman.backends.factory import open_backend
from jobman.clock import SystemClock, utc_iso
from jobman.config import AwsConfig
from jobman.kinds import Kind
from jobman.ledger.store import Ledger, Observation
from jobman.reconciler import Reconciler
from tests.conftest import SAGEMAKER, jobman, write_experiment
from tests.fault_proxy import FaultProxy
from tests.moto_server import Moto


@pytest.fixture
def proxy(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(moto.url) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        yield p


def sm(moto: Moto) -> Any:
    return boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1")


def make_chain(client: Any, name: str, tags: list[dict[str, str]]) -> None:
    client.create_model(ModelName=f"{name}-m", ExecutionRoleArn="arn:aws:iam::123456789012:role/R",
                        PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://b/m.tar.gz"}, Tags=tags)
    client.create_endpoint_config(EndpointConfigName=f"{name}-c", Tags=tags, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": f"{name}-m", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    client.create_endpoint(EndpointName=f"{name}-e", EndpointConfigName=f"{name}-c", Tags=tags)


def jobman_tags(expires: datetime) -> list[dict[str, str]]:
    return [{"Key": "jobman:managed", "Value": "true"}, {"Key": "jobman:experiment", "Value": "lost"},
            {"Key": "jobman:expires-at", "Value": utc_iso(expires)}]


def test_gc_reaps_expired_orphans_and_never_untagged(moto: Moto, proxy: FaultProxy, tmp_path: Path) -> None:
    client = sm(moto)
    past = datetime.now(UTC) - timedelta(hours=1)
    make_chain(client, "orphan1", jobman_tags(past))
    make_chain(client, "orphan2", jobman_tags(past))
    make_chain(client, "young", jobman_tags(datetime.now(UTC) + timedelta(hours=1)))
    make_chain(client, "mine-not", [{"Key": "team", "Value": "other"}])

    dry = jobman("gc", "--dry-run", "--backend", "sagemaker", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    for name in ("orphan1-e", "orphan1-c", "orphan1-m", "orphan2-e"):
        assert name in dry.stdout
    assert "young" not in dry.stdout and "mine-not" not in dry.stdout
    assert proxy.count("DeleteEndpoint") == 0 and len(client.list_endpoints()["Endpoints"]) == 4

    # Two gc processes at once: each endpoint deleted once, both succeed.
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: jobman("gc", "--backend", "sagemaker", cwd=tmp_path), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert proxy.count("DeleteEndpoint") == 2
    assert sorted(e["EndpointName"] for e in client.list_endpoints()["Endpoints"]) == ["mine-not-e", "young-e"]
    assert sorted(m["ModelName"] for m in client.list_models()["Models"]) == ["mine-not-m", "young-m"]


async def test_reconcile_pass_cost_read_at_the_server(moto: Moto, proxy: FaultProxy, ledger: Ledger) -> None:
    """250 tracked endpoints, none changed: one List page per 100, no Describe."""
    client = sm(moto)
    clock = SystemClock()
    exp = await ledger.experiment("bulk", create_at=clock.now())
    assert exp is not None
    run = await ledger.start_run(exp.id, digest="d", backend="sagemaker", region="us-east-1", config_path="-",
                                 at=clock.now() - timedelta(seconds=5))
    make_chain(client, "bulk-base", [])
    for i in range(250):
        client.create_endpoint(EndpointName=f"bulk-{i:03d}", EndpointConfigName="bulk-base-c")
    rows = []
    for i in range(250):
        row = await ledger.add_resource(run.id, Kind.ENDPOINT, f"bulk-{i:03d}", {}, at=run.started_at)
        rows.append(await ledger.record(row.id, Observation(status="InService"), at=clock.now()))
    backend = await open_backend("sagemaker", AwsConfig())
    try:
        proxy.reset()
        result = await Reconciler(ledger, backend, clock).reconcile(rows)
        assert not result.errors
        assert dict(proxy.calls) == {"ListEndpoints": 3}
        # Two change behind jobman's back: only those two are described.
        moto.sagemaker.endpoints["bulk-007"].endpoint_status = "Failed"
        moto.sagemaker.endpoints["bulk-123"].endpoint_status = "OutOfService"
        proxy.reset()
        result = await Reconciler(ledger, backend, clock).reconcile([result.get(r) for r in rows])
        assert dict(proxy.calls) == {"ListEndpoints": 3, "DescribeEndpoint": 2}
        changed = {r.name: r.status for r in result.resources.values() if r.status != "InService"}
        assert changed == {"bulk-007": "Failed", "bulk-123": "OutOfService"}
    finally:
        await backend.aclose()


async def test_throttling_is_absorbed(moto: Moto, proxy: FaultProxy, ledger: Ledger) -> None:
    """A burst of ThrottlingException on List costs retries, not the pass."""
    clock = SystemClock()
    exp = await ledger.experiment("thr", create_at=clock.now())
    run = await ledger.start_run(exp.id, digest="d", backend="sagemaker", region="us-east-1",  # type: ignore[union-attr]
                                 config_path="-", at=clock.now())
    make_chain(sm(moto), "thr", [])
    row = await ledger.add_resource(run.id, Kind.ENDPOINT, "thr-e", {}, at=clock.now() - timedelta(minutes=1))
    proxy.faults.throttle["ListEndpoints"] = 5
    proxy.faults.errors_500["DescribeEndpoint"] = 1
    backend = await open_backend("sagemaker", AwsConfig())
    try:
        row = await ledger.record(row.id, Observation(status="Creating"), at=clock.now())
        result = await Reconciler(ledger, backend, clock).reconcile([row])
    finally:
        await backend.aclose()
    assert not result.errors
    assert result.get(row).status == "InService"
    assert proxy.count("ListEndpoints") == 6


def test_drift_seen_by_reconcile_and_stop_cleans_up(moto: Moto, tmp_path: Path) -> None:
    moto.queue_invoke_results(["\n".join(["21"] * 167)])
    path = write_experiment(tmp_path / "exp.toml", {**SAGEMAKER, "keep = false": "keep = true"})
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    client = sm(moto)
    client.delete_endpoint(EndpointName="boston-xgboost-r1-endpoint")  # behind jobman's back
    seen = jobman("reconcile", cwd=tmp_path)
    assert seen.returncode == 0, seen.stderr
    assert "boston-xgboost-r1-endpoint: InService → Absent" in seen.stdout
    status = jobman("status", "--json", cwd=tmp_path)
    assert '"status": "Absent"' in status.stdout
    stopped = jobman("stop", "boston-xgboost", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert client.list_endpoint_configs()["EndpointConfigs"] == [] and client.list_models()["Models"] == []
