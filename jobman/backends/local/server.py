"""The local backend's server: one port on 127.0.0.1 for S3, SageMaker, SageMaker Runtime, Logs, STS and
EventBridge Scheduler.

Each request says which service it is for: SageMaker and Logs by `X-Amz-Target`; InvokeEndpoint by
its path; Scheduler, STS and S3 by the service in the SigV4 credential scope. Before that, `guard` refuses
what a web page could send (wrong Host, CORS, no SigV4 signature: its form is checked, never its value).
Due one-time schedules are fired from the supervision loop, once a second and once at start.
`/_jobman/...` routes serve the daemon (health, status, shutdown) to holders of the state folder's secret;
no bucket name can start with `_`.

Run: `python -m jobman.backends.local.server --home DIR [--port 0] [--idle-timeout 300]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiohttp import web

from jobman.backends.local import guard, runtime, shared_secret, sts, supervisor, wire
from jobman.backends.local.endpoints import SERVING, EndpointManager
from jobman.backends.local.logs import LogsApi
from jobman.backends.local.objects import ObjectStore
from jobman.backends.local.runtime import RuntimeApi
from jobman.backends.local.s3 import S3Api
from jobman.backends.local.sagemaker_api import SageMakerApi
from jobman.backends.local.schedule_store import ScheduleStore
from jobman.backends.local.scheduler import Scheduler
from jobman.backends.local.scheduler_api import SchedulerApi
from jobman.backends.local.store import Layout, atomic_write_json, layout, read_json
from jobman.backends.local.training import TrainingManager
from jobman.backends.local.transforms import TransformManager
from jobman.backends.local.wire import AwsError
from jobman.errors import ConfigError

log = logging.getLogger("jobman.local.server")

HOST = "127.0.0.1"
DEFAULT_IDLE_S = 300.0
TICK_S = 0.25
IDLE_CHECK_S = 1.0
SCHEDULE_CHECK_S = 1.0


class AlreadyRunning(RuntimeError):
    """Another server holds this home's lock."""


def default_idle_timeout_s() -> float:
    try:
        return float(os.environ.get("JOBMAN_LOCAL_IDLE_S", DEFAULT_IDLE_S))
    except ValueError:
        return DEFAULT_IDLE_S


class Server:
    def __init__(self, home: Path, *, port: int = 0, idle_timeout_s: float | None = None) -> None:
        self.layout: Layout = layout(home)
        self.port = port
        self.idle_timeout_s = default_idle_timeout_s() if idle_timeout_s is None else idle_timeout_s
        self.objects = ObjectStore(self.layout)
        self.training = TrainingManager(self.layout)
        self.endpoints = EndpointManager(self.layout)
        self.transforms = TransformManager(self.layout)
        self.s3 = S3Api(self.layout, self.objects)
        self.sagemaker = SageMakerApi(self.layout, self.training, self.endpoints, self.transforms)
        self.logs = LogsApi(self.layout.logs)
        self.runtime = RuntimeApi(self.endpoints)
        self.schedules = ScheduleStore(self.layout)
        self.scheduler_api = SchedulerApi(self.schedules, self.sagemaker.operations)
        self.scheduler = Scheduler(self.schedules, self.sagemaker.operations, self.layout.logs)
        self.url = ""
        self.secret = ""  # set at start: see shared_secret.py
        self.started_at = time.time()
        self.stopping = asyncio.Event()
        self.stop_workers = False  # on shutdown, also stop endpoints and training jobs
        self._active = 0
        self._quiet_since = time.monotonic()  # last moment with a request or any work in progress

    # --- HTTP ---

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)  # bodies are read by the services, with their own limits
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.dispatch)  # [\s\S]: S3 keys may hold a newline
        app.on_response_prepare.append(_no_cors)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self._active += 1
        try:
            refusal = guard.check(request, self.secret)
            if refusal is not None:
                return refusal
            return await self.route(request)
        except Exception:  # a bug, not the caller's fault: log it, answer as the service would
            log.exception("%s %s failed", request.method, request.raw_path)
            return _internal_error(request)
        finally:
            self._active -= 1
            self._quiet_since = time.monotonic()

    async def route(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path
        if path.startswith("/_jobman/"):
            return await self._internal(request, path.split("?", 1)[0])
        scope = wire.parse_scope(request.headers, request.rel_url.query)
        target = request.headers.get("X-Amz-Target", "")
        if scope.service == "monitoring":  # CloudWatch metrics (Query, JSON 1.0 or RPC v2 CBOR); stateless
            from jobman.backends.local.metrics_api import MetricsApi

            return await MetricsApi(self.layout).handle(request, scope)
        if target.startswith("SageMaker."):
            return await self.sagemaker.handle(request, scope)
        if target.startswith("Logs_20140328."):
            return await self.logs.handle(request, scope)
        if target:
            return wire.json_error(AwsError("UnknownOperationException", f"No service here answers {target}."))
        if scope.service == "scheduler":
            return await self.scheduler_api.handle(request, scope)
        name = runtime.endpoint_name(path)
        if name is not None and scope.service in (None, "sagemaker"):
            return await self.runtime.handle(request, scope, name)
        if scope.service == "sts" or (scope.service is None and guard.is_sts_form(request)):
            return await sts.handle(request, scope)
        if scope.service in (None, "s3"):
            return await self.s3.handle(request, scope)
        return wire.json_error(AwsError("UnknownOperationException",
                                        f"The local backend does not serve {scope.service} {request.method} {path}."))

    async def _internal(self, request: web.Request, path: str) -> web.Response:
        if path == "/_jobman/health" and request.method == "GET":
            return web.json_response({"pid": os.getpid(), "url": self.url, "home": str(self.layout.root.parent)})
        if path == "/_jobman/status" and request.method == "GET":
            return web.json_response(self.status())
        if path == "/_jobman/shutdown" and request.method == "POST":
            self.stop_workers = request.rel_url.query.get("stop_endpoints") in ("1", "true")
            asyncio.get_running_loop().call_soon(self.stopping.set)  # after this answer is sent
            return web.json_response({"stopping": True, "pid": os.getpid()})
        return web.json_response({"error": f"no route {request.method} {path}"}, status=404)

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "pid": os.getpid(),
            "home": str(self.layout.root.parent),
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "idle_timeout_s": self.idle_timeout_s,
            "training_jobs": dict(self.training.counts()),
            "endpoints": dict(self.endpoints.counts()),
            "endpoint_processes": self.endpoints.processes(),
            "training_processes": [{"name": n, "region": r} for r, n in self.training.running()],
            "transform_jobs": dict(self.transforms.counts()),
            "transform_processes": [{"name": n, "region": r} for r, n in self.transforms.running()],
            "schedules_pending": self.schedules.pending(),
        }

    # --- lifecycle ---

    async def serve(self, on_ready: Callable[[str], None] | None = None) -> None:
        self.layout.ensure()
        lock = _lock_or_fail(self.layout)
        self.secret = self.endpoints.secret = shared_secret.ensure(self.layout)  # before any worker starts
        self.schedules.load()
        runner: web.AppRunner | None = None
        try:
            self.endpoints.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False
            )
            runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, HOST, self.port, backlog=1024).start()
            self.port = runner.addresses[0][1]
            self.url = f"http://{HOST}:{self.port}"
            await self.endpoints.start()
            await self._fire_due_schedules()  # those that fell due while no server was running
            atomic_write_json(self.layout.server_json, {
                "pid": os.getpid(), **supervisor.ref_for(os.getpid()).to_json(), "port": self.port, "url": self.url,
                "started_at": self.started_at, "home": str(self.layout.root.parent),
            })
            log.info("serving %s for %s (pid %d, idle timeout %s)", self.url, self.layout.root, os.getpid(),
                     f"{self.idle_timeout_s:g} s" if self.idle_timeout_s > 0 else "off")
            if on_ready:
                on_ready(self.url)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(RuntimeError, NotImplementedError):  # not the main thread
                    loop.add_signal_handler(sig, self.stopping.set)
            watcher = asyncio.create_task(self._supervise(), name="jobman-local-supervisor")
            await self.stopping.wait()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._shutdown()
        finally:
            if runner is not None:
                await runner.cleanup()
            if self.endpoints.session is not None:
                await self.endpoints.session.close()
            server_file = read_json(self.layout.server_json)
            if isinstance(server_file, dict) and server_file.get("pid") == os.getpid():
                self.layout.server_json.unlink(missing_ok=True)
            lock.close()
            log.info("stopped")

    async def _shutdown(self) -> None:
        if self.stop_workers:
            log.info("stopping endpoint processes, training and transform jobs")
            await self.endpoints.stop_all()
            await self.training.stop_all()
            await self.transforms.stop_all()
        await self.endpoints.drain()

    async def _supervise(self) -> None:
        """Watch workers, fire due schedules, keep the idle timer; a failing round is logged, never fatal."""
        last_idle_check, last_schedule_check = 0.0, time.monotonic()  # schedules were checked as it started
        while True:
            try:
                self.training.tick()
                self.transforms.tick()
                await self.endpoints.tick()
                if time.monotonic() - last_schedule_check >= SCHEDULE_CHECK_S:
                    last_schedule_check = time.monotonic()
                    await self._fire_due_schedules()
                if time.monotonic() - last_idle_check >= IDLE_CHECK_S:
                    last_idle_check = time.monotonic()
                    self._check_idle()
            except Exception:
                log.exception("supervision round failed")
            await asyncio.sleep(TICK_S)

    async def _fire_due_schedules(self) -> None:
        try:
            await self.scheduler.tick()
        except Exception:
            log.exception("firing schedules failed")

    def _check_idle(self) -> None:
        if self._busy():
            self._quiet_since = time.monotonic()
            return
        if self.idle_timeout_s > 0 and time.monotonic() - self._quiet_since >= self.idle_timeout_s:
            log.info("idle for %g s with nothing running: stopping", self.idle_timeout_s)
            self.stopping.set()

    def _busy(self) -> bool:
        if self._active:
            return True
        if self.training.running() or self.transforms.running():
            return True
        if self.schedules.pending():  # a schedule must still fire: only this server can fire it
            return True
        return any(status in SERVING for status in self.endpoints.counts())


def _internal_error(request: web.Request) -> web.Response:
    error = AwsError("InternalFailure", "The local server failed to process the request; see its log.", 500)
    if wire.parse_scope(request.headers, request.rel_url.query).service == "scheduler":
        error.code = "InternalServerException"
        return wire.json_error(error, content_type="application/json")
    if request.headers.get("X-Amz-Target") or runtime.endpoint_name(request.raw_path):
        return wire.json_error(error)
    error.code = "InternalError"
    return wire.s3_error(error, resource=request.raw_path, head=request.method == "HEAD")


async def _no_cors(request: web.Request, response: web.StreamResponse) -> None:
    """No answer ever lets a web page read it or send more: CORS grants are dropped, whoever set them."""
    for header in [h for h in response.headers if h.lower().startswith("access-control-")]:
        del response.headers[header]


def _lock_or_fail(where: Layout) -> IO[bytes]:
    """Hold the home's server lock for the server's whole life: two servers never share a home."""
    handle = where.server_lock.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        info = read_json(where.server_json) or {}
        raise AlreadyRunning(
            f"a local server is already running for {where.root.parent}"
            + (f" at {info['url']} (pid {info['pid']})" if "url" in info else "")
        ) from None
    return handle


def run(home: Path, *, port: int = 0, idle_timeout_s: float | None = None,
        on_ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until SIGINT/SIGTERM or the idle timeout."""
    asyncio.run(Server(home, port=port, idle_timeout_s=idle_timeout_s).serve(on_ready))


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jobman's local AWS server")
    parser.add_argument("--home", required=True, type=Path, help="JOBMAN_HOME; state goes to HOME/local")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help=f"stop after this many idle seconds (default $JOBMAN_LOCAL_IDLE_S or {DEFAULT_IDLE_S:g}; "
                             "0 never stops)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        run(args.home, port=args.port, idle_timeout_s=args.idle_timeout)
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 3
    except ConfigError as exc:  # e.g. JOBMAN_LOCAL_MAX_TRAINING is not a positive integer: one line, no traceback
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot serve on %s:%d: %s", HOST, args.port, exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
