"""AWS wire-protocol helpers: which service and region a request is for, error shapes, XML, timestamps.

Signatures are never verified; the SigV4 credential scope is only read to route and to learn the region.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from xml.etree import ElementTree

from aiohttp import web

ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"

_SCOPE = re.compile(r"Credential=[^/,\s]*/\d{8}/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/aws4_request")
# Characters XML 1.0 cannot carry (a key may hold them): written as \xNN so the document stays parseable.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Regions name files and ARNs, so only well-formed ones are accepted (never a path).
_REGION = re.compile(r"^[a-z]{2,10}(-[a-z0-9]{1,12}){1,4}$")


@dataclass(frozen=True)
class Scope:
    """What the SigV4 credential scope says: `service` is None for unsigned requests."""

    service: str | None
    region: str


class AwsError(Exception):
    """An error answered in the shape of the service that was called."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields: dict[str, Any] = dict(fields or {})


@dataclass
class XmlNode:
    """A tiny XML tree for responses: children are (tag, value) pairs so tags can repeat."""

    children: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, tag: str, value: Any) -> XmlNode:
        if value is not None:
            self.children.append((tag, value))
        return self


def parse_scope(headers: Mapping[str, str], query: Mapping[str, str]) -> Scope:
    """Service and region from `Authorization` (or a presigned URL's `X-Amz-Credential`)."""
    text = headers.get("Authorization", "")
    if not text and "X-Amz-Credential" in query:
        text = "Credential=" + query["X-Amz-Credential"]
    match = _SCOPE.search(text)
    if match is None:
        return Scope(None, DEFAULT_REGION)
    return Scope(match["service"], match["region"])


def check_region(region: str) -> str:
    if not _REGION.match(region):
        raise AwsError("InvalidClientTokenId", f"The region {region!r} in the credential scope is not valid.")
    return region


def request_id() -> str:
    return str(uuid.uuid4())


def now() -> float:
    """Epoch seconds with millisecond precision, as the JSON protocols carry timestamps."""
    return round(time.time(), 3)


def iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def parse_timestamp(value: Any, name: str) -> float:
    """A request timestamp: botocore sends epoch seconds; ISO 8601 strings are accepted too."""
    if isinstance(value, bool):
        raise AwsError("ValidationException", f"Value {value!r} at '{name}' is not a timestamp.")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise AwsError("ValidationException", f"Value {value!r} at '{name}' is not a timestamp.")


# --- JSON protocols (SageMaker and CloudWatch Logs: JSON 1.1; SageMaker Runtime: REST-JSON) ---


def json_response(payload: Mapping[str, Any], *, content_type: str = JSON_CONTENT_TYPE) -> web.Response:
    return web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode(),
        headers={"Content-Type": content_type, "x-amzn-RequestId": request_id()},
    )


def json_error(error: AwsError, *, content_type: str = JSON_CONTENT_TYPE) -> web.Response:
    """botocore reads the code from `x-amzn-ErrorType` or the body's `__type`; send both."""
    body = {"__type": error.code, "message": error.message, **error.fields}
    if content_type != JSON_CONTENT_TYPE:  # REST-JSON also knows `Message` as the modelled member
        body["Message"] = error.message
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        headers={
            "Content-Type": content_type,
            "x-amzn-RequestId": request_id(),
            "x-amzn-ErrorType": error.code,
        },
    )


async def read_json_body(request: web.Request, limit: int = 1 << 20) -> dict[str, Any]:
    raw = await read_body(request, limit, AwsError("SerializationException", "Request body is too large.", 413))
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise AwsError("SerializationException", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise AwsError("SerializationException", "The request body must be a JSON object.")
    return body


async def read_body(request: web.Request, limit: int, too_large: AwsError) -> bytes:
    """Read the whole body, refusing more than `limit` bytes without buffering the excess."""
    declared = request.content_length
    if declared is not None and declared > limit:
        await drain(request, 64 << 20)
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            await drain(request, 64 << 20)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def drain(request: web.Request, limit: int) -> None:
    """Discard an unwanted body so the client reads our error instead of a reset connection."""
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return


# --- XML (S3, STS) ---


def to_xml(root_tag: str, node: XmlNode, *, xmlns: str | None = None) -> bytes:
    root = ElementTree.Element(root_tag, {"xmlns": xmlns} if xmlns else {})
    _fill(root, node)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="utf-8")


def _fill(element: ElementTree.Element, node: XmlNode) -> None:
    for tag, value in node.children:
        child = ElementTree.SubElement(element, tag)
        if isinstance(value, XmlNode):
            _fill(child, value)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        else:
            child.text = _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def xml_response(body: bytes, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=body,
        headers={"Content-Type": "application/xml", "x-amz-request-id": request_id(), **(headers or {})},
    )


def parse_xml(raw: bytes, code: str = "MalformedXML") -> ElementTree.Element:
    """Parse a small request document and drop namespaces, so lookups can use bare tags."""
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        raise AwsError(code, "The XML you provided was not well-formed or did not validate.") from exc
    for element in root.iter():
        if "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def s3_error(error: AwsError, *, resource: str, head: bool = False) -> web.Response:
    rid = request_id()
    if head:  # HEAD responses carry no body; botocore then reports the status code as the error code
        return web.Response(status=error.status, headers={"x-amz-request-id": rid})
    node = XmlNode().add("Code", error.code).add("Message", error.message)
    for tag, value in error.fields.items():
        node.add(tag, value)
    node.add("Resource", resource).add("RequestId", rid)
    return xml_response(to_xml("Error", node), status=error.status)


def query_error(error: AwsError, *, xmlns: str) -> web.Response:
    """The Query protocol's error document (STS)."""
    node = XmlNode().add(
        "Error",
        XmlNode()
        .add("Type", "Sender" if error.status < 500 else "Receiver")
        .add("Code", error.code)
        .add("Message", error.message),
    )
    node.add("RequestId", request_id())
    return xml_response(to_xml("ErrorResponse", node, xmlns=xmlns), status=error.status)
