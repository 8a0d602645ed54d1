"""The local server as a daemon, and the AWS-shaped errors it gives plain boto3."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from jobman.backends.local import supervisor
from jobman.backends.local.daemon import ensure_running, server_status, stop_server
from jobman.backends.local.store import layout, read_json
from jobman.cli.local import app
from tests.integration import local_fixtures
from tests.integration.local_fixtures import LocalServer, kill_leftovers, wait_for

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)


_SIGNED = ("AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, "
           "Signature=" + "0" * 64)


def _health(url: str, home: Path) -> dict[str, object]:
    """`/_jobman/health`, with the secret only processes that can read the state folder know."""
    secret = (layout(home).root / "secret").read_text().strip()
    request = urllib.request.Request(f"{url}/_jobman/health", headers={"X-Jobman-Secret": secret})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _error(call: object) -> dict[str, object]:
    with pytest.raises(ClientError) as error:
        call()  # type: ignore[operator]
    return {"code": error.value.response["Error"]["Code"],
            "status": error.value.response["ResponseMetadata"]["HTTPStatusCode"],
            "message": error.value.response["Error"].get("Message", "")}


def test_path_traversal_is_refused(local_server: LocalServer) -> None:
    s3 = local_server.client("s3")
    s3.create_bucket(Bucket="safe")
    for key in ("../escape.txt", "a/../../escape.txt", "/etc/passwd", "a//b", "nul\0byte"):
        error = _error(lambda key=key: s3.put_object(Bucket="safe", Key=key, Body=b"x"))
        assert (error["code"], error["status"]) == ("InvalidArgument", 400), key
        assert _error(lambda key=key: s3.get_object(Bucket="safe", Key=key))["code"] == "InvalidArgument"
    assert not list(local_server.root.rglob("escape.txt"))
    assert _error(lambda: s3.create_bucket(Bucket="Not_Valid"))["code"] == "InvalidBucketName"
    # Raw HTTP, which no SDK would send: an encoded traversal in the bucket segment (signed in form, as the server
    # demands of every request; the signature's value is never checked).
    request = urllib.request.Request(f"{local_server.url}/..%2F..%2Fetc/passwd", method="GET",
                                     headers={"Authorization": _SIGNED})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=5)
    assert raw.value.code == 400 and b"<Code>InvalidBucketName</Code>" in raw.value.read()


def test_s3_errors_are_s3_shaped(local_server: LocalServer) -> None:
    s3 = local_server.client("s3")
    assert _error(lambda: s3.get_object(Bucket="nobucket", Key="k"))["code"] == "NoSuchBucket"
    s3.create_bucket(Bucket="b-one")
    missing = _error(lambda: s3.get_object(Bucket="b-one", Key="missing"))
    assert (missing["code"], missing["status"]) == ("NoSuchKey", 404)
    assert _error(lambda: s3.head_object(Bucket="b-one", Key="missing"))["code"] == "404"
    assert _error(lambda: s3.create_bucket(Bucket="ab"))["code"] == "InvalidBucketName"


def test_oversized_invocation_is_refused(local_server: LocalServer) -> None:
    runtime = local_server.client("sagemaker-runtime", retries={"total_max_attempts": 1})
    error = _error(lambda: runtime.invoke_endpoint(EndpointName="any", ContentType="text/csv",
                                                   Body=b"1" * (6 * 1024 * 1024 + 1)))
    assert (error["code"], error["status"]) == ("ValidationError", 413)
    missing = _error(lambda: runtime.invoke_endpoint(EndpointName="nowhere", ContentType="text/csv", Body=b"1"))
    assert (missing["code"], missing["status"]) == ("ValidationError", 400)
    assert missing["message"] == "Endpoint nowhere of account 000000000000 not found."


def test_sts_and_unknown_operations(local_server: LocalServer) -> None:
    assert local_server.client("sts").get_caller_identity()["Account"] == "000000000000"
    sm = local_server.client("sagemaker")
    assert _error(lambda: sm.list_notebook_instances())["code"] == "UnknownOperationException"


def test_ensure_running_is_safe_to_race(tmp_path: Path) -> None:
    home = tmp_path / "race-home"
    urls: list[str] = []
    threads = [threading.Thread(target=lambda: urls.append(ensure_running(home, idle_timeout_s=60))) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(urls) == 4 and len(set(urls)) == 1
        pid = _server_pid(home)
        assert _health(urls[0], home)["pid"] == pid
        assert ensure_running(home) == urls[0]
    finally:
        stop_server(home, stop_endpoints=True)
        kill_leftovers(home)
    assert not supervisor.is_alive(supervisor.ref_for(pid))
    assert server_status(home) is None


def test_idle_server_stops_itself(tmp_path: Path) -> None:
    home = tmp_path / "idle-home"
    try:
        ensure_running(home, idle_timeout_s=0.5)
        pid = _server_pid(home)
        wait_for(lambda: not supervisor.is_alive(supervisor.ref_for(pid)), timeout_s=10)
        assert not layout(home).server_json.exists()
    finally:
        kill_leftovers(home)


def test_cli_status_and_stop(local_server: LocalServer) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)
    assert status["running"] is True and status["url"] == local_server.url
    table = runner.invoke(app, ["status"])
    assert table.exit_code == 0 and local_server.url in table.output
    stopped = runner.invoke(app, ["stop", "--endpoints"])
    assert stopped.exit_code == 0 and "Stopped the local server" in stopped.output
    assert json.loads(runner.invoke(app, ["status", "--json"]).output)["running"] is False


def test_cli_serve_in_the_foreground(tmp_path: Path) -> None:
    env = {**os.environ, "JOBMAN_HOME": str(tmp_path / "fg-home"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", "from jobman.cli.local import app; app()", "serve"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline())
        assert url is not None
        assert _health(url.group(), tmp_path / "fg-home")["pid"] == server.pid
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 4
        assert second.stderr.startswith("Error: a local server is already running") and "Traceback" not in second.stderr
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        kill_leftovers(tmp_path / "fg-home")


def _server_pid(home: Path) -> int:
    info = read_json(layout(home).server_json)
    assert isinstance(info, dict)
    return int(info["pid"])
