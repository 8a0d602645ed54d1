"""Fuzz every SageMaker and CloudWatch Logs operation the local server implements from botocore's input shapes.

CloudWatch metrics (Query and JSON 1.0) and S3 (odd query strings, keys, headers and XML bodies) are fuzzed by
their own tests at the end of the file.

For each operation: a minimal request built from the model (required members only) and one with every member
filled (valid where that is easy; the handler may refuse the rest with a 4xx), then mutations of the minimal one:
each required member left out, and each member (recursively, a few levels deep, optional ones included)
replaced by a value of the wrong type, null, a huge string or deeply nested JSON. Every answer must be an
AWS error (4xx with `x-amzn-ErrorType` and `__type`) or a success, never a 5xx or a dropped connection; a
wrongly typed value must be refused by the model check itself.

Requests are raw JSON 1.1 signed with botocore's SigV4 signer: boto3 cannot serialize a string where a
structure belongs. Nothing starts work: CreateEndpoint names a config that never exists, and the one valid
CreateTrainingJob starts a job on empty input whose worker fails at once (the fixture kills it regardless);
every later CreateTrainingJob reuses its name, so it is refused before anything starts.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ListShape, MapShape, Shape, StructureShape

from jobman.backends.local import validation
from jobman.backends.local.logs import LogsApi
from jobman.backends.local.server import Server
from tests.integration.local_fixtures import LocalServer

SEED = 20261130
MAX_PATH_DEPTH = 3  # members this many structure levels down are mutated
MAX_PER_OPERATION = 160  # mutations sent per operation, sampled with SEED when there are more
HUGE = "x" * 100_000
FORGED_TOKEN = base64.urlsafe_b64encode(json.dumps([{"a": 1}, None]).encode()).decode()  # decodes, never compares
DEEP_PARSED, DEEP_UNPARSABLE = 64, 5000  # nesting the server parses, and nesting its JSON parser refuses
OVERRIDES = {"CreateEndpoint": {"EndpointConfigName": "fuzz-no-such-config"}}
_STRINGS = ("fuzz-1", "arn:aws:iam::000000000000:role/fuzz", "arn:aws:sagemaker:us-east-1:000000000000:model/fuzz-1",
            "s3://fuzz-bucket/fuzz/", "ml.m5.large", "/aws/sagemaker/fuzz", "1", "a")
_WRONG_TYPES: dict[str, list[Any]] = {
    "structure": ["fuzz", 7, ["a"], True],
    "list": ["fuzz", {"a": 1}, 7, False],
    "map": [["a"], "fuzz", 7, True],
    "string": [7, {"a": "b"}, ["a"], True, 1.5],
    "integer": ["7", 1.5, {}, [], True],
    "long": ["7", 1.5, {}, [], True],
    "float": ["1.5", {}, [], True],
    "double": ["1.5", {}, [], True],
    "boolean": ["true", 1, {}, []],
    "timestamp": ["yesterday", {}, [], True],
    "blob": [7, {}, []],
}
Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Case:
    operation: str
    body: str  # JSON text, so nesting deeper than json.dumps allows can be sent
    wrong_type: bool  # the model check itself must refuse it
    label: str


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


_MARKERS = {f"__deep_{n}__": _deep(n) for n in (DEEP_PARSED, DEEP_UNPARSABLE)}


def _dump(request: dict[str, Any]) -> str:
    text = json.dumps(request)
    for marker, nested in _MARKERS.items():
        text = text.replace(json.dumps(marker), nested)
    return text


def _string(shape: Shape) -> str:
    if shape.enum:
        return str(shape.enum[0])
    low, high = shape.metadata.get("min", 0), shape.metadata.get("max", 1 << 20)
    pattern = shape.metadata.get("pattern")
    for candidate in _STRINGS:
        if low <= len(candidate) <= high and (pattern is None or _matches(pattern, candidate)):
            return candidate
    return "x" * max(low, 1)  # may fail the pattern: then the server refuses it with a 4xx, which is fine too


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:  # a Java-only pattern the server does not check either
        return True


def minimal(shape: Shape, depth: int = 0) -> Any:
    """A value of `shape` with only its required members, each valid where that is easy."""
    kind = shape.type_name
    if shape.metadata.get("document"):
        return {}
    if isinstance(shape, StructureShape):
        return {} if depth > 8 else {n: minimal(shape.members[n], depth + 1) for n in shape.required_members}
    if isinstance(shape, ListShape):
        return [minimal(shape.member, depth + 1) for _ in range(shape.metadata.get("min", 0))]
    if isinstance(shape, MapShape):
        return {"fuzz-1": minimal(shape.value, depth + 1)} if shape.metadata.get("min", 0) else {}
    if kind == "string":
        return _string(shape)
    if kind in ("integer", "long", "float", "double"):
        low = shape.metadata.get("min", 1)
        number = min(max(low, 1), shape.metadata.get("max", low if low > 1 else 1))
        return int(number) if kind in ("integer", "long") else float(number)
    return {"boolean": False, "timestamp": 1700000000, "blob": "Zm9v"}.get(kind, "fuzz-1")


def full(shape: Shape, depth: int = 0) -> Any:
    """A value of `shape` with every member, list and map filled, MAX_PATH_DEPTH levels down."""
    if depth >= MAX_PATH_DEPTH or shape.metadata.get("document"):
        return minimal(shape)
    if isinstance(shape, StructureShape):
        return {n: full(m, depth + 1) for n, m in shape.members.items()}
    if isinstance(shape, ListShape):
        return [full(shape.member, depth)]
    if isinstance(shape, MapShape):
        return {"fuzz-1": full(shape.value, depth)}
    return minimal(shape)


def member_paths(shape: Shape, prefix: Path_ = (), depth: int = 0) -> Iterator[tuple[Path_, Shape]]:
    """Every member, list element and map value down to MAX_PATH_DEPTH structure levels."""
    if depth >= MAX_PATH_DEPTH or shape.metadata.get("document"):
        return
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            yield prefix + (name,), member
            yield from member_paths(member, prefix + (name,), depth + 1)
    elif isinstance(shape, ListShape):
        yield prefix + (0,), shape.member
        yield from member_paths(shape.member, prefix + (0,), depth)
    elif isinstance(shape, MapShape):
        yield prefix + ("fuzz-1",), shape.value
        yield from member_paths(shape.value, prefix + ("fuzz-1",), depth)


def _child(shape: Shape, step: str | int) -> Shape:
    if isinstance(shape, StructureShape):
        return shape.members[str(step)]
    return shape.member if isinstance(shape, ListShape) else shape.value  # type: ignore[attr-defined,no-any-return]


def with_value(base: dict[str, Any], shape: Shape, path: Path_, value: Any) -> dict[str, Any]:
    """A copy of `base` with `value` at `path`, making minimal parents on the way."""
    request = copy.deepcopy(base)
    node: Any = request
    for step in path[:-1]:
        shape = _child(shape, step)
        if isinstance(step, int):
            if not node:
                node.append(minimal(shape))
        elif step not in node:
            node[step] = minimal(shape) if not isinstance(shape, ListShape) else [minimal(shape.member)]
        node = node[step]
    if isinstance(path[-1], int):
        node[:1] = [value]
    else:
        node[path[-1]] = value
    return request


def _present(request: Any, path: Path_) -> bool:
    node = request
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, dict) and path[-1] in node


def cases(service: str, operation: str) -> list[Case]:
    shape = validation.service_model(service).operation_model(operation).input_shape
    base = {**minimal(shape), **OVERRIDES.get(operation, {})}
    everything = {**full(shape), **OVERRIDES.get(operation, {}), **{n: base[n] for n in shape.required_members}}
    found = [Case(operation, _dump(base), False, "minimal"), Case(operation, _dump(everything), False, "full")]
    mutations: list[Case] = []
    for path, member in member_paths(shape):
        label = ".".join(map(str, path))
        parent = shape
        for step in path[:-1]:
            parent = _child(parent, step)
        if isinstance(parent, StructureShape) and path[-1] in parent.required_members and _present(base, path):
            trimmed = copy.deepcopy(base)
            node: Any = trimmed
            for step in path[:-1]:
                node = node[step]
            del node[path[-1]]
            mutations.append(Case(operation, _dump(trimmed), False, f"{label} missing"))
        for wrong in _WRONG_TYPES.get(member.type_name, []):
            if not member.metadata.get("document"):
                mutations.append(Case(operation, _dump(with_value(base, shape, path, wrong)), True,
                                      f"{label}={wrong!r}"))
        for edge in (None, HUGE, *_MARKERS, *([FORGED_TOKEN] if member.type_name == "string" else [])):
            mutations.append(Case(operation, _dump(with_value(base, shape, path, edge)), False,
                                  f"{label}={edge!r:.20}"))
    rng = random.Random(f"{SEED}/{operation}")
    if len(mutations) > MAX_PER_OPERATION:
        mutations = rng.sample(mutations, MAX_PER_OPERATION)
    whole = ["[]", '"x"', "null", "{", '{"a": ' + _deep(DEEP_UNPARSABLE) + "}"]
    return found + mutations + [Case(operation, text, False, f"body {text[:10]}") for text in whole]


class Sender:
    """Raw JSON 1.1 requests over one keep-alive connection, signed as botocore signs them."""

    def __init__(self, url: str, region: str) -> None:
        self.url, self.region = url, region
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.credentials = Credentials("fuzz", "fuzz")

    def send(self, service: str, target: str, body: str) -> tuple[int, dict[str, str], bytes]:
        request = AWSRequest(method="POST", url=self.url + "/", data=body.encode(), headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
        SigV4Auth(self.credentials, service, self.region).add_auth(request)
        prepared = request.prepare()
        self.connection.request("POST", "/", body=prepared.body, headers=dict(prepared.headers))
        response = self.connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()

    def close(self) -> None:
        self.connection.close()


def _operations(tmp_path: Path) -> dict[str, list[str]]:
    server = Server(tmp_path / "operations-only", idle_timeout_s=0)  # never started: only its tables are read
    return {"sagemaker": sorted(server.sagemaker.operations), "logs": sorted(LogsApi(tmp_path)._operations())}


def test_no_request_gets_a_5xx(local_server: LocalServer, tmp_path: Path) -> None:
    sender = Sender(local_server.url, local_server.region)
    failures: list[str] = []
    sent = 0
    try:
        for service, operations in _operations(tmp_path).items():
            prefix = validation.service_model(service).metadata["targetPrefix"]
            refusal = "ValidationException" if service == "sagemaker" else "InvalidParameterException"
            for operation in operations:
                for case in cases(service, operation):
                    status, headers, raw = sender.send(service, f"{prefix}.{operation}", case.body)
                    sent += 1
                    problem = _judge(status, headers, raw, refusal if case.wrong_type else None)
                    if problem:
                        failures.append(f"{service} {operation} [{case.label}]: {problem}")
    finally:
        sender.close()
    assert sent > 500
    assert not failures, f"{len(failures)} of {sent} requests answered wrongly:\n" + "\n".join(failures[:40])


def _judge(status: int, headers: dict[str, str], raw: bytes, refusal: str | None) -> str | None:
    """What is wrong with one answer, or None."""
    if status >= 500:
        return f"{status} {raw[:300]!r}"
    if status < 400:
        return None if refusal is None else f"{status}: a wrongly typed member was accepted"
    code = headers.get("x-amzn-errortype")
    try:
        body = json.loads(raw)
    except ValueError:
        return f"{status} with a body that is not JSON: {raw[:200]!r}"
    if not code or body.get("__type") != code:
        return f"{status} without an AWS error code: {headers} {raw[:200]!r}"
    if refusal is not None and (status, code) != (400, refusal):
        return f"a wrongly typed member got {status} {code}, not 400 {refusal}: {body.get('message', '')[:200]}"
    return None


# --- CloudWatch metrics: the Query protocol (form-encoded) and AWS JSON 1.0 ---

CLOUDWATCH_TARGET = "GraniteServiceVersion20100801"
_QUERY_BASE = {
    "GetMetricStatistics": {"Namespace": "/aws/sagemaker/TrainingJobs", "MetricName": "train:loss",
                            "StartTime": "2023-11-14T22:00:00Z", "EndTime": "2023-11-14T23:00:00Z", "Period": "60",
                            "Statistics.member.1": "Average", "Dimensions.member.1.Name": "TrainingJobName",
                            "Dimensions.member.1.Value": "fuzz-1"},
    "ListMetrics": {"Namespace": "/aws/sagemaker/TrainingJobs"},
}
_QUERY_EDGES: dict[str, list[str]] = {
    "Period": ["abc", "1.5", "-60", "0", "9" * 5000, " 60", "", "7"],
    "StartTime": ["yesterday", "", "1700000000", "9" * 400, "2023-13-45T99:99:99Z"],
    "EndTime": ["yesterday", "1e400"],
    "Unit": ["Parsecs", "", "None"],
    "Namespace": ["", ":colon", HUGE],
    "MetricName": ["", HUGE],
    "Statistics.member.1": ["Median", "", HUGE],
    "Statistics.member.x": ["Average"],
    "ExtendedStatistics.member.1": ["p101", "pabc", "p50"],
    "Dimensions.member.1.Name": ["", HUGE],
    "Dimensions.member.1.Value": ["", HUGE],
    "Dimensions.member.99999999999999999999.Name": ["a"],
    "IncludeLinkedAccounts": ["maybe", "true"],
    "RecentlyActive": ["PT4H"],
    "NextToken": [FORGED_TOKEN, HUGE],
}
_QUERY_REFUSED = {("Period", "abc"), ("Period", "1.5"), ("Period", "-60"), ("Period", "0"), ("Period", "9" * 5000),
                  ("Period", ""), ("StartTime", "yesterday"), ("EndTime", "yesterday"), ("Unit", "Parsecs"),
                  ("Namespace", ":colon"), ("Namespace", HUGE), ("MetricName", HUGE), ("Statistics.member.1", HUGE),
                  ("Dimensions.member.1.Name", HUGE), ("IncludeLinkedAccounts", "maybe"), ("RecentlyActive", "PT4H")}


def query_cases(operation: str) -> list[tuple[str, dict[str, str], bool]]:
    """(label, form, must be refused) for one CloudWatch operation: the valid base, each member missing, odd values."""
    base = {"Action": operation, "Version": "2010-08-01", **_QUERY_BASE[operation]}
    found: list[tuple[str, dict[str, str], bool]] = [("base", base, False)]
    shape = validation.service_model("cloudwatch").operation_model(operation).input_shape
    required = shape.required_members
    for name in _QUERY_BASE[operation]:
        trimmed = {k: v for k, v in base.items() if k != name}
        found.append((f"{name} missing", trimmed, name in required))
    for name, values in _QUERY_EDGES.items():
        modelled = name.partition(".")[0] in shape.members  # members of other operations are ignored
        found.extend((f"{name}={value!r:.20}", {**base, name: value}, modelled and (name, value) in _QUERY_REFUSED)
                     for value in values)
    many = {f"Dimensions.member.{i}.{part}": f"d{i}" for i in range(1, 40) for part in ("Name", "Value")}
    found.append(("40 dimensions", {**base, **many}, True))
    found.extend((f"Action={action!r}", {**base, "Action": action}, True) for action in ("", "PutMetricData", HUGE))
    return found


def _signed(url: str, region: str, service: str, body: bytes, headers: dict[str, str],
            path: str = "/") -> tuple[str, bytes, dict[str, str]]:
    request = AWSRequest(method="POST", url=url + path, data=body, headers=headers)
    SigV4Auth(Credentials("fuzz", "fuzz"), service, region).add_auth(request)
    prepared = request.prepare()
    return path, prepared.body, dict(prepared.headers)


def test_no_cloudwatch_request_gets_a_5xx(local_server: LocalServer) -> None:
    host, port = local_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    failures: list[str] = []
    sent = 0

    def send(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        path, data, signed = _signed(local_server.url, local_server.region, "monitoring", body, headers)
        connection.request("POST", path, body=data, headers=signed)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()

    try:
        form_type = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        bodies = [(f"query {op} [{label}]", urlencode(form).encode(), must)
                  for op in _QUERY_BASE for label, form, must in query_cases(op)]
        bodies += [("query non-UTF-8", b"Action=ListMetrics&Namespace=\xff\xfe", False),
                   ("query no Action", b"", True), ("query garbage", b"%%%&&&===", True)]
        for label, body, must in bodies:
            status, _, raw = send(body, form_type)
            sent += 1
            if status >= 500 or (must and status != 400):
                failures.append(f"{label}: {status} {raw[:200]!r}")
            elif status >= 400:
                try:
                    code = ElementTree.fromstring(raw).findtext("{*}Error/{*}Code")
                except ElementTree.ParseError:
                    code = None
                if not code:
                    failures.append(f"{label}: {status} without an ErrorResponse: {raw[:200]!r}")
        for operation in _QUERY_BASE:
            target = {"Content-Type": "application/x-amz-json-1.0",
                      "X-Amz-Target": f"{CLOUDWATCH_TARGET}.{operation}"}
            for case in cases("cloudwatch", operation):
                status, headers, raw = send(case.body.encode(), target)
                sent += 1
                problem = _judge_json10(status, headers, raw, case.wrong_type)
                if problem:
                    failures.append(f"json {operation} [{case.label}]: {problem}")
    finally:
        connection.close()
    assert sent > 100
    assert not failures, f"{len(failures)} of {sent} requests answered wrongly:\n" + "\n".join(failures[:40])


def _judge_json10(status: int, headers: dict[str, str], raw: bytes, wrong_type: bool) -> str | None:
    if status >= 500:
        return f"{status} {raw[:300]!r}"
    if status < 400:
        return "a wrongly typed member was accepted" if wrong_type else None
    try:
        kind = json.loads(raw).get("__type", "")
    except ValueError:
        return f"{status} with a body that is not JSON: {raw[:200]!r}"
    if not kind.startswith("com.amazonaws.cloudwatch#") or "x-amzn-query-error" not in headers:
        return f"{status} without an AWS error code: {raw[:200]!r}"
    if wrong_type and kind != "com.amazonaws.cloudwatch#InvalidParameterValueException":
        return f"a wrongly typed member got {kind}: {raw[:200]!r}"
    return None


# --- S3 (rest-xml): odd query strings, keys, headers and XML bodies ---

S3_BUCKET = "fuzz-bucket"
_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
           '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
           '<Delete><Object><Key>&d;</Key></Object></Delete>')
_BAD_XML = ["", "<", "not xml", "<Delete><Object></Object></Delete>", "<a>" * 5000, _LAUGHS,
            "<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>" + "9" * 400 + "</PartNumber><ETag>e</ETag></Part>"
            "</CompleteMultipartUpload>", "<CompleteMultipartUpload/>", "\xff\xfe<x/>"]


@dataclass(frozen=True)
class S3Case:
    method: str
    path: str  # already percent-encoded, with any query string
    label: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    refused: str | None = None  # the S3 error code the answer must carry


def s3_cases(upload_id: str) -> list[S3Case]:
    b, k = f"/{S3_BUCKET}", f"/{S3_BUCKET}/fuzz-key"
    up = f"uploadId={upload_id}"
    found = [S3Case("GET", f"{b}?max-keys={v}", f"max-keys={v:.20}", refused="InvalidArgument")
             for v in ("abc", "", "1.5", "9" * 30, "99999999999", "%00")]
    found += [S3Case("GET", f"{b}?list-type=2&max-keys=-1", "max-keys=-1", refused="InvalidArgument"),
              S3Case("GET", f"{b}?encoding-type=bogus", "encoding-type=bogus", refused="InvalidArgument"),
              S3Case("GET", f"{b}?list-type=2&fetch-owner=maybe", "fetch-owner=maybe", refused="InvalidArgument"),
              S3Case("GET", f"{b}?list-type=2&continuation-token=%25%25%25", "bad token"),
              S3Case("GET", f"{b}?list-type=2&continuation-token=" + "A" * 5000, "huge token"),
              S3Case("GET", f"{b}?prefix=" + "p" * 5000 + "&delimiter=%00", "huge prefix"),
              S3Case("GET", f"{b}?marker=%ff%fe", "non-UTF-8 marker")]
    found += [S3Case("PUT", f"{k}?partNumber={v}&{up}", f"partNumber={v:.20}", body=b"x", refused="InvalidArgument")
              for v in ("abc", "0", "10001", "-1", "9" * 30, "")]
    found += [S3Case("PUT", f"{k}?partNumber=1&uploadId=nope", "unknown upload", body=b"x", refused="NoSuchUpload"),
              S3Case("PUT", f"{k}?partNumber=1&uploadId=" + "f" * 5000, "huge upload id", body=b"x"),
              S3Case("HEAD", f"{k}?versionId=" + "v" * 5000, "head huge versionId")]
    for key in ("k" * 1100, "%00", "..", "a/../../b", "%ff%fe", "%2e%2e/%2e%2e/x", "a//b", "%0a"):
        found += [S3Case("PUT", f"{b}/{key}", f"put key {key:.12}", body=b"x"),
                  S3Case("GET", f"{b}/{key}", f"get key {key:.12}"),
                  S3Case("POST", f"{b}/{key}?uploads", f"create upload key {key:.12}")]
    for name, value, code in (("x-amz-storage-class", "BOGUS", "InvalidArgument"),
                              ("x-amz-acl", "everyone", "InvalidArgument"),
                              ("x-amz-decoded-content-length", "abc", "InvalidArgument"),
                              ("x-amz-decoded-content-length", "9" * 40, "InvalidArgument"),
                              ("x-amz-server-side-encryption-bucket-key-enabled", "maybe", "InvalidArgument"),
                              ("x-amz-write-offset-bytes", "x", "InvalidArgument"),
                              ("Content-MD5", "not-base64", "BadDigest"), ("x-amz-checksum-crc32", "zz", "BadDigest"),
                              ("x-amz-meta-big", "m" * 6000, None), ("Content-Encoding", "aws-chunked", None),
                              ("Expires", "not a date", None)):
        found.append(S3Case("PUT", k, f"put header {name}", ((name, value),), b"x", code))
    for name, value in (("Range", "bytes=abc"), ("Range", "bytes=99999999999999999999-"), ("Range", "bytes=5-1"),
                        ("If-Match", "x" * 6000), ("If-None-Match", "*"), ("If-Modified-Since", "yesterday"),
                        ("x-amz-checksum-mode", "MAYBE")):
        found.append(S3Case("GET", k, f"get header {name}={value:.12}", ((name, value),)))
    for text in _BAD_XML:
        body = text.encode("latin-1") if text.startswith("\xff") else text.encode()
        found += [S3Case("POST", f"{b}?delete", f"delete body {text[:12]!r}", body=body),
                  S3Case("POST", f"{k}?{up}", f"complete body {text[:12]!r}", body=body)]
    return found


def test_no_s3_request_gets_a_5xx(local_server: LocalServer) -> None:
    host, port = local_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def send(method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes = b"") -> tuple[int, bytes]:
        request = AWSRequest(method=method, url=local_server.url + path, data=body, headers=headers or {})
        S3SigV4Auth(Credentials("fuzz", "fuzz"), "s3", local_server.region).add_auth(request)
        prepared = request.prepare()
        signed = {k: v for k, v in prepared.headers.items()}
        connection.putrequest(method, path, skip_host="Host" in signed, skip_accept_encoding=True)
        for name, value in signed.items():
            connection.putheader(name, value)
        if "Content-Length" not in signed and (body or method in ("PUT", "POST")):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()

    failures: list[str] = []
    try:
        created = send("PUT", f"/{S3_BUCKET}")
        assert created[0] == 200, created
        assert send("PUT", f"/{S3_BUCKET}/fuzz-key", body=b"fuzz")[0] == 200
        status, raw = send("POST", f"/{S3_BUCKET}/fuzz-key?uploads")
        upload_id = ElementTree.fromstring(raw).findtext("{*}UploadId") or ""
        assert status == 200 and upload_id
        cases_ = s3_cases(upload_id)
        for case in cases_:
            status, raw = send(case.method, case.path, dict(case.headers), case.body)
            if status >= 500:
                failures.append(f"{case.label}: {status} {raw[:200]!r}")
            elif case.method != "HEAD" and (status >= 400 or case.refused):
                try:
                    code = ElementTree.fromstring(raw).findtext("Code")
                except ElementTree.ParseError:
                    code = None
                if not code or (case.refused and (status, code) != (404 if code == "NoSuchUpload" else 400,
                                                                    case.refused)):
                    failures.append(f"{case.label}: {status} {code}, wanted {case.refused}: {raw[:200]!r}")
        assert send("GET", f"/{S3_BUCKET}/fuzz-key")[0] == 200  # the server still serves valid requests
    finally:
        connection.close()
    assert len(cases_) > 80
    assert not failures, f"{len(failures)} of {len(cases_)} requests answered wrongly:\n" + "\n".join(failures)
