"""moto's server on 127.0.0.1 (a real HTTP server in this process), and handles on its records."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

ACCOUNT = "123456789012"
REGION = "us-east-1"


class Moto:
    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, payload: dict[str, Any] | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    def reset(self) -> None:
        self.post("/moto-api/reset")

    def queue_invoke_results(self, bodies: list[str]) -> None:
        """Each distinct InvokeEndpoint request takes the next queued body (moto answers b'body' otherwise)."""
        results = [{"Body": b, "ContentType": "text/csv", "InvokedProductionVariant": "AllTraffic",
                    "CustomAttributes": ""} for b in bodies]
        self.post("/moto-api/static/sagemaker/endpoint-results", {"results": results})

    @property
    def sagemaker(self) -> Any:
        # Looked up on every use: a reset replaces the backend object.
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][REGION]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line a request drowns the report

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield Moto(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> Moto:
    """A clean moto, and an environment in which aioboto3 (and a jobman subprocess) talk to it."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("JOBMAN_POLL_S", "0.05")
    return moto_server
