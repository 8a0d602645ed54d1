"""Check an S3 request's URI labels, query string and headers against botocore's model of the operation.

S3 (rest-xml) carries most members outside the body: `Bucket`/`Key` in the path, `max-keys` or `partNumber`
in the query string, `Content-Length` or `x-amz-storage-class` in headers. Every member of the operation's
input shape with such a `location` is checked where it arrives, generically from the model: integers and
longs must parse (and fit their type), booleans must be `true`/`false`, strings must meet the model's
lengths and enums. A failure is S3's own `InvalidArgument` (400, with `ArgumentName` and `ArgumentValue`),
as S3 answers a bad `max-keys` or `partNumber`.

Timestamps (`Expires`, `If-Modified-Since`) and list-valued headers are not checked: S3 ignores an HTTP date
it cannot read, and refusing one would refuse requests S3 serves. Bodies (DeleteObjects,
CompleteMultipartUpload) are read by their handlers, which refuse malformed XML with `MalformedXML`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import Shape

from jobman.backends.local.validation import service_model
from jobman.backends.local.wire import AwsError

_LIMITS = {"integer": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}
_MAX_DIGITS = 20  # longer than any long: refused before int() parses it


def check(operation: str, labels: Mapping[str, str], query: Mapping[str, str], headers: Mapping[str, str]) -> None:
    """Raise S3's InvalidArgument for the first located member of `operation` that fails its shape."""
    shape = service_model("s3").operation_model(operation).input_shape
    if shape is None:
        return
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            value = labels.get(wire_name)
        elif location == "querystring":
            value = query.get(wire_name)
        elif location == "header":
            value = headers.get(wire_name)
        else:
            continue
        if value is not None:
            problem = _problem(member, value, wire_name)
            if problem:
                raise AwsError("InvalidArgument", problem, fields={"ArgumentName": wire_name,
                                                                    "ArgumentValue": value[:256]})


def _problem(shape: Shape, value: str, name: str) -> str | None:
    """What is wrong with one located value, worded as S3 words it, or None."""
    kind = shape.type_name
    if kind in _LIMITS:
        low, high = _LIMITS[kind]
        text = value.strip()
        digits = text.removeprefix("-").removeprefix("+")
        if not digits.isascii() or not digits.isdigit() or len(digits) > _MAX_DIGITS or not low <= int(text) <= high:
            return f"Provided {name} not an integer or within {kind} range"
        return _bounds(shape, int(text), "value")
    if kind == "boolean":
        return None if value.strip().lower() in ("true", "false") else f"Provided {name} is not a boolean"
    if kind == "string":
        enum: list[str] = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            return f"Invalid value {value[:64]!r}: it must be one of {', '.join(enum)}"
        return _bounds(shape, len(value), "length")
    return None


def _bounds(shape: Shape, measured: int, what: str) -> str | None:
    metadata: dict[str, Any] = shape.metadata
    if "min" in metadata and measured < metadata["min"]:
        return f"The {what} must be at least {metadata['min']}"
    if "max" in metadata and measured > metadata["max"]:
        return f"The {what} must be at most {metadata['max']}"
    return None
