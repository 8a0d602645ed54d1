"""invoke_stream over real HTTP: a scoring endpoint on 127.0.0.1 that throttles, fails and drops.

The endpoint sums each CSV row's fields and answers one prediction a line, as the SageMaker
container contract asks. Faults are planned per request (by arrival number, or by chunk and
attempt), so each test knows exactly how many retries it caused. `invoke` maps HTTP outcomes to
InvokeError the way the sagemaker backend maps botocore's, in miniature.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from jobman.errors import InvokeError
from jobman.invoker import InvokeFn, InvokeOptions, invoke_stream

pytestmark = pytest.mark.timeout(30)

RETRYABLE_CODES = {"ThrottlingException", "ServiceUnavailable", "InternalFailure", "ModelNotReadyException"}
CLIENT_TIMEOUT_S = 0.5
SLOW_S = 0.1  # a slow chunk: well under the client timeout
HANG_S = 1.0  # a hung chunk: over it

# (request number from 1, first row id of the chunk, attempt for that chunk from 0) -> fault or None
Plan = Callable[[int, int, int], str | None]


def score(line: bytes) -> bytes:
    return repr(sum(float(v) for v in line.split(b","))).encode()


def make_csv(n: int, seed: int = 0) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    features = [b",".join(b"%.3f" % rng.uniform(-50, 50) for _ in range(13)) for _ in range(n)]
    lines = [b"%d,%s" % (i, f) for i, f in enumerate(features, 1)]
    return b"".join(line + b"\n" for line in lines), b"".join(score(line) + b"\n" for line in lines)


@dataclass
class Endpoint:
    plan: Plan = lambda n, first, attempt: None  # noqa: E731
    requests: int = 0
    attempts: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    url: str = ""

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests += 1
        lines = body.splitlines()
        first = int(lines[0].split(b",", 1)[0])
        attempt = self.attempts[first]
        self.attempts[first] += 1
        fault = self.plan(self.requests, first, attempt)
        if fault:
            self.faults[fault] += 1
        match fault:
            case "throttle":
                return json_error(400, "ThrottlingException", "Rate exceeded")
            case "500":
                return json_error(500, "InternalFailure", "An internal error occurred")
            case "model-error":
                return json_error(424, "ModelError", "Received client error (400) from primary")
            case "drop":  # close without a response
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            case "reset":  # RST instead of FIN
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            case "slow":
                await asyncio.sleep(SLOW_S)
            case "hang":
                await asyncio.sleep(HANG_S)
        return web.Response(body=b"\n".join(score(line) for line in lines) + b"\n", content_type="text/csv")


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        headers={"x-amzn-ErrorType": code, "Content-Type": "application/x-amz-json-1.1"},
    )


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/invocations", ep.invocations)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    ep.url = f"http://{host}:{port}/invocations"
    yield ep
    await runner.cleanup()


@pytest.fixture
async def invoke(endpoint: Endpoint) -> AsyncIterator[InvokeFn]:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), timeout=timeout) as session:

        async def invoke(body: bytes) -> bytes:
            try:
                async with session.post(endpoint.url, data=body, headers={"Content-Type": "text/csv"}) as r:
                    payload = await r.read()
            except TimeoutError as e:
                raise InvokeError("read timed out", code="ReadTimeout", retryable=True) from e
            except aiohttp.ClientConnectionError as e:
                raise InvokeError(f"connection failed: {e}", code="ConnectionError", retryable=True) from e
            if r.status == 200:
                return payload
            code = r.headers.get("x-amzn-ErrorType", "").split(":")[0] or f"HTTP{r.status}"
            message = json.loads(payload).get("message", "") if payload else ""
            raise InvokeError(message, code=code, retryable=code in RETRYABLE_CODES or r.status >= 500)

        yield invoke


def options(**kw: object) -> InvokeOptions:
    base: dict[str, object] = {
        "max_rows_per_chunk": 100,
        "concurrency": 8,
        "backoff_base_s": 0.001,
        "backoff_cap_s": 0.01,
    }
    return InvokeOptions(**{**base, **kw})  # type: ignore[arg-type]


async def test_faults_change_or_lose_no_prediction(endpoint: Endpoint, invoke: InvokeFn) -> None:
    by_chunk = {
        (801, 0): "slow",  # finishes long after its successors: they wait in the reorder buffer
        (1501, 0): "500",
        (1501, 1): "500",
        (2001, 0): "hang",  # over the client timeout: retried as a timeout
        (2501, 0): "drop",
        (3001, 0): "reset",
        (3001, 1): "drop",
    }

    def plan(n: int, first: int, attempt: int) -> str | None:
        if (first, attempt) in by_chunk:
            return by_chunk[first, attempt]
        if 3 <= n < 15 and first not in {f for f, _ in by_chunk}:
            return "throttle"  # a burst, across whichever chunks arrive
        return None

    endpoint.plan = plan
    data, expected = make_csv(5000)
    dst = io.BytesIO()
    progress: list[int] = []
    summary = await invoke_stream(invoke, io.BytesIO(data), dst, options(), on_progress=progress.append)
    assert dst.getvalue() == expected
    assert endpoint.faults["throttle"] >= 6
    assert endpoint.faults - Counter(throttle=endpoint.faults["throttle"]) == Counter(by_chunk.values())
    # Every fault but "slow" cost one retry (more only if a loaded machine timed out a normal call),
    # and every attempt reached the server.
    assert summary.retries >= endpoint.faults.total() - 1
    assert endpoint.requests == summary.chunks + summary.retries
    assert summary.rows == 5000 and summary.chunks == 50 and sum(progress) == 5000
    assert summary.latency_max_s >= SLOW_S
    assert summary.bytes_sent > len(data)


async def test_model_error_stops_it_naming_the_rows(endpoint: Endpoint, invoke: InvokeFn) -> None:
    endpoint.plan = lambda n, first, attempt: "model-error" if first == 1001 else None
    dst = io.BytesIO()
    with pytest.raises(InvokeError) as err:
        await invoke_stream(invoke, io.BytesIO(make_csv(5000)[0]), dst, options(concurrency=4))
    assert str(err.value) == "rows 1001–1100: ModelError: Received client error (400) from primary"
    assert err.value.code == "ModelError" and not err.value.retryable
    assert endpoint.attempts[1001] == 1
    assert endpoint.requests < 50  # it stopped: most chunks were never sent
    assert len(dst.getvalue().splitlines()) <= 1000  # only rows before the failed chunk were written


async def test_endless_throttling_gives_up_naming_the_rows(endpoint: Endpoint, invoke: InvokeFn) -> None:
    endpoint.plan = lambda n, first, attempt: "throttle" if first == 301 else None
    with pytest.raises(InvokeError) as err:
        await invoke_stream(invoke, io.BytesIO(make_csv(1000)[0]), io.BytesIO(), options(max_attempts=4))
    assert str(err.value) == "rows 301–400: ThrottlingException: Rate exceeded (gave up after 4 attempts)"
    assert err.value.retryable and endpoint.attempts[301] == 4
