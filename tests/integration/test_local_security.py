"""What a web page (or a process without the state folder's secret) can do to the local server: nothing.

Forged requests are sent with `http.client`, as a browser would send them (simple requests, a wrong Host,
preflights); each must be refused in the shape of its service, and must change nothing. The same operations
signed by boto3 keep working.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobman.backends.local import supervisor
from jobman.backends.local.daemon import running_url, server_status
from jobman.backends.local.store import layout, read_json
from tests.integration import local_fixtures
from tests.integration.local_fixtures import LocalServer, deploy, wait_for

local_server = local_fixtures.local_server

# Well-formed SigV4, any key: what boto3 sends, and what no web page can send cross-origin.
SIGNED = ("AWS4-HMAC-SHA256 Credential=anykey/20250101/us-east-1/{service}/aws4_request, "
          "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32)
DELETE_BODY = b'<Delete><Object><Key>model/model.tar.gz</Key></Object></Delete>'


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def code(self) -> str:
        """The AWS error code, from S3/STS XML or the JSON protocols."""
        if self.headers.get("x-amzn-ErrorType"):
            return str(self.headers["x-amzn-ErrorType"])
        text = self.body.decode("utf-8", "replace")
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


def send(url: str, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    """One raw request; `Host` is sent as given in `headers`, else as a local client would send it."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def _secret(server: LocalServer) -> str:
    return (server.root / "secret").read_text().strip()


def _still_serving(server: LocalServer) -> None:
    assert running_url(server.home) == server.url
    assert server.client("sts").get_caller_identity()["Account"] == "000000000000"


@pytest.fixture
def bucket(local_server: LocalServer) -> str:
    s3 = local_server.client("s3")
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="model/model.tar.gz", Body=b"weights")
    s3.put_object(Bucket="artifacts", Key="exp/train/train.csv", Body=b"1,2,3\n")
    return "artifacts"


def test_the_secret_is_private_to_the_owner(local_server: LocalServer) -> None:
    assert stat.S_IMODE((local_server.root / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(local_server.root.stat().st_mode) == 0o700
    assert len(_secret(local_server)) >= 32


def test_control_routes_need_the_secret(local_server: LocalServer) -> None:
    pid = read_json(layout(local_server.home).server_json)["pid"]
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "text/plain", "X-Jobman-Secret": "guess"},
                    {"Authorization": SIGNED.format(service="s3")}):
        shutdown = send(local_server.url, "POST", "/_jobman/shutdown?stop_endpoints=1", body=b"x", headers=headers)
        assert shutdown.status == 403, headers
    for route in ("/_jobman/health", "/_jobman/status"):
        assert send(local_server.url, "GET", route).status == 403
    _still_serving(local_server)
    assert supervisor.is_alive(supervisor.ref_for(pid))
    # The daemon (which reads the secret) still sees the server, and a wrong Host is refused even with it.
    assert server_status(local_server.home)["pid"] == pid  # type: ignore[index]
    rebound = send(local_server.url, "GET", "/_jobman/health", headers={
        "X-Jobman-Secret": _secret(local_server), "Host": f"attacker.example:{_port(local_server)}"})
    assert rebound.status == 403


def test_unsigned_s3_writes_are_refused(local_server: LocalServer, bucket: str) -> None:
    deleted = send(local_server.url, "POST", f"/{bucket}?delete", body=DELETE_BODY,
                   headers={"Content-Type": "text/plain"})
    assert (deleted.status, deleted.code) == (403, "AccessDenied")
    upload = send(local_server.url, "POST", f"/{bucket}/model/model.tar.gz?uploads",
                  headers={"Content-Type": "text/plain"})
    assert (upload.status, upload.code) == (403, "AccessDenied")
    put = send(local_server.url, "PUT", f"/{bucket}/model/model.tar.gz", body=b"evil")
    assert (put.status, put.code) == (403, "AccessDenied")
    # A presigned-looking query is no way round: a page's form could send it, so POST never takes one.
    forged_query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=k%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
                    "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64)
    presigned = send(local_server.url, "POST", f"/{bucket}?delete&{forged_query}", body=DELETE_BODY,
                     headers={"Content-Type": "text/plain"})
    assert (presigned.status, presigned.code) == (403, "AccessDenied")
    # A malformed signature is refused too.
    malformed = send(local_server.url, "POST", f"/{bucket}?delete", body=DELETE_BODY,
                     headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x", "Content-Type": "text/plain"})
    assert (malformed.status, malformed.code) == (403, "AccessDenied")

    s3 = local_server.client("s3")
    assert s3.get_object(Bucket=bucket, Key="model/model.tar.gz")["Body"].read() == b"weights"
    assert not list((local_server.root / "s3-uploads").iterdir())
    _still_serving(local_server)


def test_unsigned_json_and_sts_calls_are_refused_in_their_shape(local_server: LocalServer) -> None:
    target = {"X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": "application/x-amz-json-1.1"}
    missing = send(local_server.url, "POST", "/", body=b"{}", headers=target)
    assert (missing.status, missing.code) == (403, "MissingAuthenticationTokenException")
    assert json.loads(missing.body)["__type"] == "MissingAuthenticationTokenException"
    malformed = send(local_server.url, "POST", "/", body=b"{}",
                     headers={**target, "Authorization": "AWS4-HMAC-SHA256 Signature=zz"})
    assert (malformed.status, malformed.code) == (403, "IncompleteSignatureException")
    invoke = send(local_server.url, "POST", "/endpoints/any/invocations", body=b"1,2",
                  headers={"Content-Type": "text/plain"})
    assert (invoke.status, invoke.code) == (403, "MissingAuthenticationTokenException")
    identity = send(local_server.url, "POST", "/", body=b"Action=GetCallerIdentity&Version=2011-06-15",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (identity.status, identity.code) == (403, "MissingAuthenticationToken")
    _still_serving(local_server)


def test_dns_rebinding_is_refused_even_with_a_signature(local_server: LocalServer, bucket: str) -> None:
    port = _port(local_server)
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}", "127.0.0.1"):
        data = send(local_server.url, "GET", f"/{bucket}/exp/train/train.csv",
                    headers={"Host": host, "Authorization": SIGNED.format(service="s3")})
        assert (data.status, data.code) == (403, "AccessDenied"), host
        assert b"1,2,3" not in data.body
        api = send(local_server.url, "POST", "/", body=b"{}", headers={
            "Host": host, "Authorization": SIGNED.format(service="sagemaker"),
            "X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": "application/x-amz-json-1.1"})
        assert (api.status, api.code) == (403, "AccessDeniedException"), host
    # The loopback names a local client may use all work.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        data = send(local_server.url, "GET", f"/{bucket}/exp/train/train.csv",
                    headers={"Host": host, "Authorization": SIGNED.format(service="s3")})
        assert (data.status, data.body) == (200, b"1,2,3\n"), host


def test_cors_is_never_granted(local_server: LocalServer, bucket: str) -> None:
    preflight = send(local_server.url, "OPTIONS", f"/{bucket}?delete", headers={
        "Origin": "https://attacker.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-amz-date"})
    assert preflight.status == 403
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
    # A request a page sends with its Origin is refused even if signed in form (an SDK never sends Origin).
    from_page = send(local_server.url, "GET", f"/{bucket}/exp/train/train.csv",
                     headers={"Origin": "https://attacker.example", "Authorization": SIGNED.format(service="s3")})
    assert (from_page.status, from_page.code) == (403, "AccessDenied")
    assert not [h for h in from_page.headers if h.lower().startswith("access-control-")]
    assert local_server.client("s3").get_object(Bucket=bucket, Key="exp/train/train.csv")["Body"].read() == b"1,2,3\n"


def test_endpoint_names_from_the_path_are_validated(local_server: LocalServer, tmp_path: Path) -> None:
    # A record-shaped file outside the state folder, where `..%2F` segments would lead a naive server.
    bait = tmp_path / "bait.json"
    bait.write_text(json.dumps({"EndpointName": "bait", "EndpointStatus": "TOPSECRET-1234"}))
    records = local_server.root / "sagemaker" / "us-east-1" / "endpoint"
    relative = os.path.relpath(tmp_path / "bait", records)
    assert (records / (relative + ".json")).resolve() == bait.resolve()
    encoded = urllib.parse.quote(relative, safe="")
    raw = send(local_server.url, "POST", f"/endpoints/{encoded}/invocations", body=b"1,2",
               headers={"Content-Type": "text/csv", "Authorization": SIGNED.format(service="sagemaker")})
    assert (raw.status, raw.code) == (400, "ValidationError")
    assert b"TOPSECRET" not in raw.body
    assert b"failed to satisfy constraint: Member must satisfy regular expression pattern" in raw.body
    unsigned = send(local_server.url, "POST", f"/endpoints/{encoded}/invocations", body=b"1,2",
                    headers={"Content-Type": "text/plain"})
    assert unsigned.status == 403 and b"TOPSECRET" not in unsigned.body
    runtime = local_server.client("sagemaker-runtime", retries={"total_max_attempts": 1})
    from botocore.exceptions import ClientError

    for name in (relative, "a" * 64, "bad_name", "..", "-lead"):
        with pytest.raises(ClientError) as error:
            runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=b"1,2")
        assert error.value.response["Error"]["Code"] == "ValidationError", name
        assert "TOPSECRET" not in str(error.value)
    assert json.loads(bait.read_text())["EndpointStatus"] == "TOPSECRET-1234"  # untouched
    assert not list(local_server.root.rglob("bait*"))


def test_signed_calls_still_work(local_server: LocalServer, bucket: str) -> None:
    s3 = local_server.client("s3")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")
    s3.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload["UploadId"])
    v4 = local_server.client("s3", signature_version="s3v4")
    for client in (s3, v4):  # boto3's default presigned URLs are SigV2-shaped for S3, so both forms pass
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "exp/train/train.csv"})
        path_and_query = url.removeprefix(local_server.url)
        # Past the guard (the S3 emulation itself does not serve presigned URLs yet: NotImplemented).
        assert send(local_server.url, "GET", path_and_query).code != "AccessDenied"
        forged = send(local_server.url, "POST", path_and_query.replace("/exp/train/train.csv?", "?delete&"),
                      body=DELETE_BODY, headers={"Content-Type": "text/plain"})
        assert (forged.status, forged.code) == (403, "AccessDenied")  # never for a POST, which a page's form can send
    assert s3.get_object(Bucket=bucket, Key="exp/train/train.csv")["Body"].read() == b"1,2,3\n"
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "model/model.tar.gz"}]})
    assert [d["Key"] for d in deleted["Deleted"]] == ["model/model.tar.gz"]
    assert local_server.client("sagemaker").list_endpoints()["Endpoints"] == []


@pytest.mark.slow
def test_endpoints_cannot_be_driven_by_a_page(local_server: LocalServer) -> None:
    deploy(local_server, "guarded")
    sm, runtime = local_server.client("sagemaker"), local_server.client("sagemaker-runtime")
    worker_pid = local_server.endpoint_pid("guarded")
    assert worker_pid is not None
    worker_port = read_json(local_server.root / "endpoints" / "us-east-1" / "guarded" / "port.json")["port"]
    worker = f"http://127.0.0.1:{worker_port}"
    row = ",".join(["0.5"] * 13).encode()
    secret = _secret(local_server)
    assert secret.encode() not in Path(f"/proc/{worker_pid}/cmdline").read_bytes()  # never visible in `ps`

    # The worker's own port: no secret, no service; and no guessing the content type.
    assert send(worker, "POST", "/invocations", body=row).status == 403
    assert send(worker, "POST", "/invocations", body=row, headers={"Content-Type": "text/csv"}).status == 403
    assert send(worker, "GET", "/ping").status == 403
    assert send(worker, "POST", "/invocations", body=row, headers={"X-Jobman-Secret": "wrong"}).status == 403
    untyped = send(worker, "POST", "/invocations", body=row, headers={"X-Jobman-Secret": secret})
    assert untyped.status == 415
    plain = send(worker, "POST", "/invocations", body=row,
                 headers={"X-Jobman-Secret": secret, "Content-Type": "text/plain"})
    assert plain.status == 415
    rebound = send(worker, "POST", "/invocations", body=row, headers={
        "X-Jobman-Secret": secret, "Content-Type": "text/csv", "Host": f"attacker.example:{worker_port}"})
    assert rebound.status == 403
    assert send(worker, "OPTIONS", "/invocations", headers={
        "Origin": "https://attacker.example", "Access-Control-Request-Method": "POST"}).status == 403
    scored = send(worker, "POST", "/invocations", body=row,
                  headers={"X-Jobman-Secret": secret, "Content-Type": "text/csv"})
    assert scored.status == 200 and float(scored.body)  # the secret is what the server's proxy sends

    # Through the server: a page's simple request neither invokes nor stops anything.
    invoke = send(local_server.url, "POST", "/endpoints/guarded/invocations", body=row,
                  headers={"Content-Type": "text/plain"})
    assert (invoke.status, invoke.code) == (403, "MissingAuthenticationTokenException")
    shutdown = send(local_server.url, "POST", "/_jobman/shutdown?stop_endpoints=1", body=b"",
                    headers={"Content-Type": "text/plain"})
    assert shutdown.status == 403
    _still_serving(local_server)
    assert sm.describe_endpoint(EndpointName="guarded")["EndpointStatus"] == "InService"
    assert local_server.endpoint_pid("guarded") == worker_pid

    # Signed, it all works: with and without an explicit content type (CSV, as before), and pings keep it healthy.
    answer = runtime.invoke_endpoint(EndpointName="guarded", ContentType="text/csv", Body=row)
    assert float(answer["Body"].read())
    assert float(runtime.invoke_endpoint(EndpointName="guarded", Body=row)["Body"].read())
    wait_for(lambda: (server_status(local_server.home) or {}).get("endpoints") == {"InService": 1}, timeout_s=10)


def _port(server: LocalServer) -> int:
    return int(server.url.rsplit(":", 1)[1])
