"""The invoker against a real local endpoint: predictions equal the model's own, row for row, whatever the
chunking and whatever faults sit between jobman and the endpoint."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from jobman.backends.factory import LOCAL_CREDENTIALS
from jobman.backends.sagemaker import AwsBackend
from jobman.errors import InvokeError
from jobman.invoker import InvokeOptions, invoke_stream
from tests.fault_proxy import FaultProxy
from tests.integration.local_fixtures import LocalServer, deploy, tiny_model_artifact

pytestmark = pytest.mark.slow
ENDPOINT = "inv-endpoint"


def booster_of(artifact: bytes) -> xgb.Booster:
    with tarfile.open(fileobj=io.BytesIO(artifact)) as tar:
        member = tar.extractfile("xgboost-model")
        assert member is not None
        raw = member.read()
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    return booster


def rows_csv(n: int, seed: int = 1) -> tuple[bytes, np.ndarray]:
    x = np.random.default_rng(seed).random((n, 13)).round(5)
    buffer = io.StringIO()
    np.savetxt(buffer, x, delimiter=",", fmt="%.5f")
    return buffer.getvalue().encode(), x


@pytest.fixture
def served(local_server: LocalServer) -> xgb.Booster:
    artifact = tiny_model_artifact()
    deploy(local_server, ENDPOINT, artifact)
    return booster_of(artifact)


@pytest.fixture
async def backend(local_server: LocalServer) -> AsyncIterator[AwsBackend]:
    b = AwsBackend(name="local", region="us-east-1", endpoint_url=local_server.url, credentials=LOCAL_CREDENTIALS)
    yield b
    await b.aclose()


async def predict(backend: AwsBackend, body: bytes, options: InvokeOptions) -> tuple[np.ndarray, int]:
    sink = io.BytesIO()

    async def send(chunk: bytes) -> bytes:
        return await backend.invoke_endpoint(ENDPOINT, chunk)

    summary = await invoke_stream(send, io.BytesIO(body), sink, options)
    return np.array([float(v) for v in sink.getvalue().split()]), summary.chunks


def expected(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(x))  # type: ignore[no-any-return]


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
async def test_every_chunk_boundary(served: xgb.Booster, backend: AwsBackend, n: int) -> None:
    body, x = rows_csv(n)
    lines = body.splitlines(keepends=True)
    want = expected(served, x)
    # Row caps of 1..3 cut at every boundary of the small inputs; the large one is cut at every 1..3 rows once
    # by the byte caps below (every request a round trip, so not every combination is worth its time).
    row_caps = (1, 2, 3, n) if n <= 7 else (3, 7, n)
    caps: list[InvokeOptions] = [InvokeOptions(max_rows_per_chunk=k, concurrency=4) for k in row_caps]
    # Exactly k rows fit a body, then one byte too few for k.
    for k in sorted({1, 2, 3, max(1, n // 2)} if n <= 7 else {3, n // 2}):
        fit = sum(len(line) for line in lines[:k])
        caps += [InvokeOptions(max_payload_bytes=fit, concurrency=4)]
        if fit - 1 >= max(len(line) for line in lines):
            caps += [InvokeOptions(max_payload_bytes=fit - 1, concurrency=4)]
    for options in caps:
        got, chunks = await predict(backend, body, options)
        assert got.shape == want.shape, options
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=str(options))


async def test_faults_change_and_lose_nothing(served: xgb.Booster, local_server: LocalServer) -> None:
    body, x = rows_csv(5000)
    with FaultProxy(local_server.url) as proxy:
        backend = AwsBackend(name="local", region="us-east-1", endpoint_url=proxy.url,
                             credentials=LOCAL_CREDENTIALS)
        try:
            proxy.faults.throttle["InvokeEndpoint"] = 6
            proxy.faults.errors_500["InvokeEndpoint"] = 3
            proxy.faults.drops["InvokeEndpoint"] = 2
            proxy.faults.slow["InvokeEndpoint"] = 0.5
            options = InvokeOptions(max_rows_per_chunk=250, concurrency=8, backoff_base_s=0.01)
            got, chunks = await predict(backend, body, options)
        finally:
            await backend.aclose()
    np.testing.assert_allclose(got, expected(served, x), rtol=1e-6)
    assert chunks == 20
    assert proxy.count("InvokeEndpoint") == 20 + 6 + 3 + 2


async def test_model_error_names_the_rows(served: xgb.Booster, backend: AwsBackend) -> None:
    body, _ = rows_csv(300)
    lines = body.splitlines(keepends=True)
    lines[150] = b"not,a,number\n"
    with pytest.raises(InvokeError, match="rows 101–200: ModelError"):
        await predict(backend, b"".join(lines), InvokeOptions(max_rows_per_chunk=100, concurrency=2))


def test_cli_a_million_rows_and_stdio(served: xgb.Booster, local_server: LocalServer, tmp_path: Path) -> None:
    body, x = rows_csv(1_000_000)
    source = tmp_path / "in.csv"
    source.write_bytes(b"f" + b",f" * 12 + b"\n" + body)  # with a header line
    out = tmp_path / "out.csv"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "jobman", "invoke", ENDPOINT, str(source), "-o", str(out), "--header",
         "--concurrency", "4", "--max-rows-per-chunk", "40000"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "1,000,000 predictions" in done.stderr
    got = np.loadtxt(out)
    np.testing.assert_allclose(got, expected(served, x), rtol=1e-6)

    small = body.split(b"\n", 3)
    piped = subprocess.run([sys.executable, "-m", "jobman", "invoke", ENDPOINT, "-"],
                           input=b"\n".join(small[:3]) + b"\n", capture_output=True, env=env, timeout=120)
    assert piped.returncode == 0, piped.stderr
    np.testing.assert_allclose(np.array(piped.stdout.split(), dtype=float), expected(served, x[:3]), rtol=1e-6)

    bad = subprocess.run([sys.executable, "-m", "jobman", "invoke", ENDPOINT, "-", "--max-payload-bytes", "7000000"],
                         input="1\n", capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("Error: ") and "max_payload_bytes" in bad.stderr
