"""One endpoint instance, run as a detached process: `python -m jobman.backends.local.endpoint_worker ...`.

It honours the SageMaker inference container contract on 127.0.0.1 (a port picked at start and
reported in `port.json`): `GET /ping` answers 200 once the model is loaded; `POST /invocations` takes
`text/csv` rows without a header and answers one prediction per row, newline-separated, in order.
Parsing (pandas' C parser), prediction (xgboost, which releases the GIL) and formatting run in a
thread pool, never on the event loop. If the model cannot be loaded, it writes `failed.json` with the
reason and exits, and the endpoint becomes Failed.

Only the local server may call it: every request must carry the state folder's secret (read from its file
at start, so it never shows in `ps`) and `/invocations` must say `Content-Type: text/csv`, so neither a web
page nor another user's process can score the model directly (see shared_secret.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from jobman.backends.local import guard, shared_secret, supervisor
from jobman.backends.local.logstore import LogStore
from jobman.backends.local.objects import ObjectStore
from jobman.backends.local.scoring import BadRequest, Model, load_container_model
from jobman.backends.local.store import Layout, atomic_write_json, read_json

MAX_PAYLOAD = 6 * 1024 * 1024  # 6,291,456 bytes: SageMaker's InvokeEndpoint limit


class Instance:
    def __init__(self, folder: Path, layout: Layout, instance_id: str) -> None:
        self.folder = folder
        self.spec: dict[str, Any] = read_json(folder / "spec.json") or {}
        self.instance_id = instance_id
        self.logs = LogStore(layout.logs / self.spec.get("Region", "us-east-1"))
        self.group = self.spec.get("LogGroup", "")
        self.stream = f"{self.spec.get('VariantName', 'AllTraffic')}/{instance_id}"
        self.objects = ObjectStore(layout)
        self.executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="score")
        self.model: Model | None = None
        self.secret = shared_secret.read(layout) or ""

    def log(self, message: str) -> None:
        print(message, flush=True)
        if self.group:
            self.logs.append(self.group, self.stream, [message])

    def load(self) -> None:
        url = self.spec.get("ModelDataUrl")
        self.model = load_container_model(self.objects, self.spec.get("Image", ""), url)
        self.log(f"Loaded model from {url} ({self.model.num_features} features)")

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.model is not None else 503)

    async def invocations(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_PAYLOAD:
            return web.Response(status=413, text=f"Payload exceeds {MAX_PAYLOAD} bytes.")
        body = await request.read()
        if len(body) > MAX_PAYLOAD:
            return web.Response(status=413, text=f"Payload exceeds {MAX_PAYLOAD} bytes.")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in ("text/csv", "csv"):  # never guessed: a page's form can only send text/plain
            message = f"Content type {content_type or '(none)'} is not supported by this model; use text/csv."
            self.log(message)
            return web.Response(status=415, text=message)
        assert self.model is not None
        try:
            answer = await asyncio.get_running_loop().run_in_executor(self.executor, self.model.predict_csv, body)
        except BadRequest as exc:
            self.log(f"Bad request: {exc}")
            return web.Response(status=exc.status, text=str(exc))
        return web.Response(body=answer, content_type="text/csv")


_INSTANCE = web.AppKey("instance", Instance)


@web.middleware
async def _only_the_server(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse anyone without the secret, before a body is read; and any browser, which has no business here."""
    instance = request.app[_INSTANCE]
    if "Origin" in request.headers:  # a web page's request, a CORS preflight among them
        return web.Response(status=403, text="Cross-origin requests are not allowed.\n")
    if not guard.host_allowed(request.headers.get("Host"), guard.local_port(request)):
        return web.Response(status=403, text="The Host header must name this port on a loopback address.\n")
    if not shared_secret.matches(instance.secret, request.headers.get(shared_secret.HEADER)):
        return web.Response(status=403, text=f"The {shared_secret.HEADER} header is missing or wrong.\n")
    return await handler(request)


async def serve(instance: Instance) -> None:
    app = web.Application(client_max_size=MAX_PAYLOAD + 1, middlewares=[_only_the_server])
    app[_INSTANCE] = instance
    app.router.add_get("/ping", instance.ping)
    app.router.add_post("/invocations", instance.invocations)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
    await site.start()
    port = runner.addresses[0][1]
    reported = {"pid": os.getpid(), "port": port, "instance": instance.instance_id}
    atomic_write_json(instance.folder / "port.json", reported)
    instance.log(f"Serving on 127.0.0.1:{port} (pid {os.getpid()})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    instance.log("Received a stop signal: shutting down")
    await runner.cleanup()
    instance.executor.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, type=Path, help="the local backend's folder")
    parser.add_argument("--dir", required=True, type=Path, help="this endpoint's folder (spec.json)")
    parser.add_argument("--instance", required=True, help="the instance id, which names the log stream")
    args = parser.parse_args(argv)
    supervisor.keep_out_sklearn()
    instance = Instance(args.dir, Layout(args.root), args.instance)
    try:
        if not instance.secret:
            raise RuntimeError(f"cannot read the local backend's secret {Layout(args.root).secret_file}")
        instance.load()
    except Exception as exc:  # any reason the model cannot be served makes the endpoint Failed
        reason = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        instance.log(reason)
        atomic_write_json(args.dir / "failed.json", {"reason": reason, "instance": args.instance})
        return 1
    asyncio.run(serve(instance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
