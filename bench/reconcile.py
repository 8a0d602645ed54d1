"""Benchmark: one reconcile pass over N tracked endpoints against a naive one-Describe-per-resource pass.

Both go through moto's server on 127.0.0.1 behind a proxy that adds 50 ms to every call (about what an
AWS API call costs from outside the region) and counts the calls the server receives. Prints API calls
and wall time of each pass and the ratios. Targets: at least 20 times fewer calls and 10 times less time.

    python bench/reconcile.py [--n 1000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobman.backends.sagemaker import AwsBackend  # noqa: E402
from jobman.clock import SystemClock  # noqa: E402
from jobman.kinds import Kind  # noqa: E402
from jobman.ledger.db import open_engine  # noqa: E402
from jobman.ledger.store import Ledger, Observation, Resource  # noqa: E402
from jobman.reconciler import Reconciler  # noqa: E402
from tests.fault_proxy import FaultProxy  # noqa: E402

CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def start_moto() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def create_endpoints(url: str, n: int) -> None:
    """Straight to moto, not through the proxy: setting up is not what is measured."""
    sm = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1", **CREDENTIALS)
    sm.create_model(ModelName="bench-m", ExecutionRoleArn="arn:aws:iam::123456789012:role/R",
                    PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://b/m.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="bench-c", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "bench-m", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    for i in range(n):
        sm.create_endpoint(EndpointName=f"bench-e{i:05d}", EndpointConfigName="bench-c")


async def track(ledger: Ledger, n: int) -> list[Resource]:
    clock = SystemClock()
    exp = await ledger.experiment("bench", create_at=clock.now())
    assert exp is not None
    run = await ledger.start_run(exp.id, digest="bench", backend="sagemaker", region="us-east-1",
                                 config_path="-", at=clock.now())
    rows = []
    created = clock.now() - timedelta(minutes=5)
    for i in range(n):
        row = await ledger.add_resource(run.id, Kind.ENDPOINT, f"bench-e{i:05d}", {}, at=created)
        # As a run leaves them: status and ARN recorded from the Create response and the last observation.
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{row.name}"
        rows.append(await ledger.record(row.id, Observation(status="InService", arn=arn), at=clock.now()))
    return rows


async def naive_pass(backend: AwsBackend, rows: list[Resource]) -> None:
    """What a script without a controller does: Describe each resource, one after another."""
    for r in rows:
        await backend.describe(Kind.ENDPOINT, r.name)


async def measure(proxy: FaultProxy, n: int) -> dict[str, tuple[int, float]]:
    with tempfile.TemporaryDirectory() as home:
        os.environ["JOBMAN_HOME"] = home
        async with open_engine() as engine:
            ledger = Ledger(engine)
            rows = await track(ledger, n)
            backend = AwsBackend(name="sagemaker", region="us-east-1", endpoint_url=proxy.url,
                                 credentials=CREDENTIALS)
            results = {}
            try:
                proxy.reset_counts()
                start = time.perf_counter()
                result = await Reconciler(ledger, backend, SystemClock()).reconcile(rows)
                results["reconcile pass"] = (proxy.total(), time.perf_counter() - start)
                assert not result.errors, result.errors[:3]
                assert all(result.get(r).status == "InService" for r in rows)
                proxy.reset_counts()
                start = time.perf_counter()
                await naive_pass(backend, rows)
                results["naive pass"] = (proxy.total(), time.perf_counter() - start)
            finally:
                await backend.aclose()
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="tracked endpoints (default 1000)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added to every API call (default 50)")
    args = parser.parse_args()

    server, url = start_moto()
    try:
        print(f"creating {args.n} endpoints on moto ...", flush=True)
        create_endpoints(url, args.n)
        with FaultProxy(url) as proxy:
            proxy.faults.latency_s = args.latency_ms / 1000
            results = asyncio.run(measure(proxy, args.n))
    finally:
        server.stop()  # type: ignore[attr-defined]

    print(f"\n{args.n} tracked endpoints, {args.latency_ms:.0f} ms per API call\n")
    print(f"{'pass':<16}{'API calls':>10}{'wall s':>10}")
    for name, (calls, seconds) in results.items():
        print(f"{name:<16}{calls:>10}{seconds:>10.2f}")
    (smart_calls, smart_s), (naive_calls, naive_s) = results["reconcile pass"], results["naive pass"]
    call_ratio, time_ratio = naive_calls / max(smart_calls, 1), naive_s / smart_s
    print(f"\nratio naive/reconcile: {call_ratio:.1f}x fewer calls, {time_ratio:.1f}x less time")
    print(f"targets: calls >= 20x {'PASS' if call_ratio >= 20 else 'MISS'}; "
          f"time >= 10x {'PASS' if time_ratio >= 10 else 'MISS'}")


if __name__ == "__main__":
    main()
