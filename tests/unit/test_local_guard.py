"""The guard's pure checks: which signatures have the form of SigV4 (or a presigned URL), which Hosts are local."""

from __future__ import annotations

import pytest

from jobman.backends.local import guard

SIG = "ab" * 32
AUTH = ("AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, "
        f"Signature={SIG}")
V4_QUERY = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "AKID/20250101/us-east-1/s3/aws4_request",
            "X-Amz-Signature": SIG}
V2_QUERY = {"AWSAccessKeyId": "AKID", "Signature": "dpcwh808Z1lJ5hg+IA/p9s558Bw=", "Expires": "1796010741"}


@pytest.mark.parametrize(("method", "headers", "query", "problem"), [
    ("POST", {"Authorization": AUTH}, {}, None),
    ("POST", {"Authorization": AUTH.replace(", ", ",")}, {}, None),
    ("POST", {}, {}, "missing"),
    ("POST", {"Authorization": "AWS4-HMAC-SHA256 Credential=AKID"}, {}, "malformed"),
    ("POST", {"Authorization": AUTH.replace(SIG, "zz")}, {}, "malformed"),
    ("POST", {"Authorization": "Bearer token"}, {}, "malformed"),
    ("POST", {"Authorization": AUTH.replace("aws4_request", "aws4_other")}, {}, "malformed"),
    ("GET", {}, V4_QUERY, None),
    ("PUT", {}, V4_QUERY, None),
    ("POST", {}, V4_QUERY, "malformed"),  # a page's form can POST any URL
    ("GET", {}, {**V4_QUERY, "X-Amz-Signature": "x"}, "malformed"),
    ("GET", {}, {**V4_QUERY, "X-Amz-Algorithm": "AWS4-HMAC-SHA1"}, "malformed"),
    ("GET", {}, V2_QUERY, None),
    ("POST", {}, V2_QUERY, "malformed"),
    ("GET", {}, {**V2_QUERY, "Expires": "soon"}, "malformed"),
])
def test_signature_form(method: str, headers: dict[str, str], query: dict[str, str], problem: str | None) -> None:
    assert guard.signature_problem(method, headers, query) == problem


def test_loopback_hosts() -> None:
    assert guard.host_allowed("127.0.0.1:8123", 8123)
    assert guard.host_allowed("LocalHost:8123", 8123)
    assert guard.host_allowed("[::1]:8123", 8123)
    for host in (None, "", "127.0.0.1", "127.0.0.1:8124", "attacker.example:8123", "127.0.0.2:8123",
                 "localhost.attacker.example:8123", "0.0.0.0:8123"):
        assert not guard.host_allowed(host, 8123), host
    assert guard.host_allowed("localhost", 80)
