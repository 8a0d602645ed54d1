"""A reverse proxy on 127.0.0.1 that counts AWS calls and injects faults, for tests and benchmarks.

It runs its own event loop in a thread, so synchronous tests, async tests and jobman subprocesses can
all go through it. Calls are counted by operation (`X-Amz-Target` for JSON APIs, `invoke_endpoint`
for runtime calls, `s3:<METHOD>` otherwise). Faults are scripted per operation:
latency, throttling (HTTP 400 ThrottlingException, as AWS sends it), 500s and dropped connections.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Faults:
    latency_s: float = 0.0  # added to every call
    throttle: dict[str, int] = field(default_factory=dict)  # operation -> how many calls to throttle
    errors_500: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)  # close the connection without an answer
    slow: dict[str, float] = field(default_factory=dict)  # operation -> extra seconds, once

    def take(self, table: dict[str, int] | dict[str, float], operation: str) -> bool:
        left = table.get(operation, 0)
        if left:
            table[operation] = left - 1 if isinstance(left, int) else 0  # type: ignore[index]
            return True
        return False


def operation_of(request: web.Request) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.split(".", 1)[-1]
    if request.path.startswith("/endpoints/") and request.path.endswith("/invocations"):
        return "InvokeEndpoint"
    return f"s3:{request.method}"


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self.url = ""

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        """Forget the counts and the scripted faults."""
        with self._lock:
            self.calls.clear()
            self.faults = Faults()

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()

    def count(self, operation: str) -> int:
        with self._lock:
            return self.calls[operation]

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=120),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        for task in asyncio.all_tasks():  # handlers still sleeping on a slow fault end now
            if task is not asyncio.current_task():
                task.cancel()
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        operation = operation_of(request)
        with self._lock:
            self.calls[operation] += 1
            faults = self.faults
            throttle = faults.take(faults.throttle, operation)
            error_500 = not throttle and faults.take(faults.errors_500, operation)
            drop = not (throttle or error_500) and faults.take(faults.drops, operation)
            slow = faults.slow.pop(operation, 0.0)
        if faults.latency_s or slow:
            await asyncio.sleep(faults.latency_s + slow)
        if throttle:
            return web.json_response({"__type": "ThrottlingException", "message": "Rate exceeded"}, status=400,
                                     headers={"x-amzn-ErrorType": "ThrottlingException"})
        if error_500:
            return web.json_response({"__type": "InternalFailure", "message": "injected"}, status=500,
                                     headers={"x-amzn-ErrorType": "InternalFailure"})
        if drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers=headers) as upstream:
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
