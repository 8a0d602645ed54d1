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
import io
import os
import signal
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from jobman.backends.local import guard, shared_secret, supervisor
from jobman.backends.local.artifacts import MODEL_FILE
from jobman.backends.local.logstore import LogStore
from jobman.backends.local.objects import ObjectError, ObjectStore, parse_s3_uri
from jobman.backends.local.store import Layout, atomic_write_json, read_json

MAX_PAYLOAD = 6 * 1024 * 1024  # 6,291,456 bytes: SageMaker's InvokeEndpoint limit


class BadRequest(Exception):
    """The payload cannot be scored; answered with `status` and the message (the caller sees a ModelError)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Model:
    """The loaded booster and how to score CSV with it."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.num_features = booster.num_features()
        best = booster.attr("best_iteration")
        # Like the container, score with the trees up to the best round when early stopping found one.
        self.iteration_range = (0, int(best) + 1) if best is not None else (0, 0)

    def predict_csv(self, body: bytes) -> bytes:
        import numpy as np
        import pandas as pd

        if not body.strip():
            raise BadRequest("The request body is empty: expected CSV rows of features.")
        try:
            frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float32, engine="c")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Unable to parse the payload as CSV of numbers: {str(exc).splitlines()[0]}") from exc
        features = frame.to_numpy()
        if features.shape[1] != self.num_features:
            raise BadRequest(
                f"Feature size mismatch: the model expects {self.num_features} columns per row, "
                f"the payload has {features.shape[1]} (send features only, no target, no header)."
            )
        predictions = self.booster.inplace_predict(features, iteration_range=self.iteration_range)
        return format_predictions(predictions)


def format_predictions(predictions: Any) -> bytes:
    """One line per row; 9 significant digits give a float32 back exactly, at twice the speed of repr."""
    rows = predictions.tolist()
    if predictions.ndim == 1:
        return "\n".join([f"{value:.9g}" for value in rows]).encode()
    return "\n".join(",".join([f"{value:.9g}" for value in row]) for row in rows).encode()


def load_model(objects: ObjectStore, model_data_url: str) -> Model:
    """Read `xgboost-model` out of the model.tar.gz in the emulated S3 (never extracting to disk)."""
    import xgboost as xgb

    failure = (
        f'Failed to download model data for container "container_1" from URL: "{model_data_url}". Please ensure '
        "that there is an object located at the URL and that the role passed to CreateModel has permissions "
        "to download the model."
    )
    try:
        bucket, key = parse_s3_uri(model_data_url)
        path = objects.object_path(bucket, key)
        objects.head(bucket, key)
    except ObjectError as exc:
        raise RuntimeError(failure) from exc
    try:
        with tarfile.open(path, "r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            chosen = next((m for m in members if Path(m.name).name == MODEL_FILE), members[0] if members else None)
            if chosen is None:
                raise RuntimeError(f"The model artifact {model_data_url} holds no file.")
            handle = archive.extractfile(chosen)
            raw = handle.read() if handle else b""
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
    except (tarfile.TarError, OSError, EOFError, xgb.core.XGBoostError) as exc:
        raise RuntimeError(f"Could not load the model from {model_data_url}: {str(exc).splitlines()[0]}") from exc
    return Model(booster)


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
        from jobman.images import is_builtin_xgboost

        image = self.spec.get("Image", "")
        if not is_builtin_xgboost(image):
            raise RuntimeError(
                f"the local backend serves only the built-in XGBoost algorithm images; got {image or 'no Image'!r}"
            )
        url = self.spec.get("ModelDataUrl")
        if not url:
            raise RuntimeError("The model has no ModelDataUrl: the built-in XGBoost container needs a model artifact.")
        self.model = load_model(self.objects, url)
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
    if guard.is_preflight(request) or "Origin" in request.headers:
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
