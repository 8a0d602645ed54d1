"""Check a request against a botocore input shape, as AWS's front end does, and word failures the way AWS does.

Generic over services: give it the operation's input `Shape` and the request as a dict keyed by member
names (whatever the wire protocol was). It checks types, required members, string and list lengths,
patterns, enums, numeric ranges, and nested structures, lists and maps, and raises one
`ValidationException` listing every problem: "2 validation errors detected: Value 'x' at 'name' failed
to satisfy constraint: Member must ...; Value ...". Member paths are lowerCamel, list elements
`tags.1.member.key`, as AWS writes them. Members the model does not know are ignored, as AWS ignores them.
`checked(service, operation, request)` does it all for one call: the model (loaded once, on first use), the
check, and the request reduced to the members the model defines.

botocore's patterns are Java regular expressions. The few Java-only constructs (a UTF-16 surrogate pair
range, `\\p{L}` classes) are translated where Python's `re` can express them; a pattern `re` still cannot
compile is not checked (its other constraints still are), so a valid request is never refused for it.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape

from jobman.backends.local.wire import AwsError, parse_timestamp

MAX_DEPTH = 32  # nesting deeper than any model needs is refused before recursion gets expensive
MAX_VALUE_CHARS = 200  # a value quoted in a message is cut here, so a huge value makes no huge message
MAX_PROBLEMS = 50  # reported at most: a list of a thousand bad items makes a readable message, not a huge one
_SURROGATE_RANGE = re.compile(r"\\uD800\\uDC00-\\uDBFF\\uDFFF", re.IGNORECASE)
_MAX_TIMESTAMP = 253402300800.0  # year 10000: beyond it no timestamp format can carry the value


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of `service`, loaded on first use and kept: loading SageMaker's takes a fifth of a second."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def checked(service: str, operation: str, request: Mapping[str, Any],
            code: str = "ValidationException") -> dict[str, Any]:
    """`request` validated against the operation's input shape, keeping only the members the model defines.

    Unknown members are dropped, not refused: AWS's JSON services ignore members they do not model.
    """
    shape = service_model(service).operation_model(operation).input_shape
    if shape is None:  # an operation without input takes nothing from the request
        return {}
    validate(shape, request, code)
    return dict(known(shape, request))


def validate(shape: Shape, request: Mapping[str, Any], code: str = "ValidationException") -> None:
    """Raise AWS's ValidationException (or the service's own `code` for it) if `request` fails `shape`."""
    found = problems(shape, request)
    if found:
        count = len(found)
        raise AwsError(code, f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(found))


def problems(shape: Shape, request: Mapping[str, Any]) -> list[str]:
    """Every constraint `request` fails, worded as AWS words it (empty when it is valid)."""
    found: list[str] = []
    if not isinstance(request, Mapping):
        return [_failed(request, "request", "Member must be of type structure")]
    if isinstance(shape, StructureShape):
        _structure(shape, request, "", found, 0)
    return found[:MAX_PROBLEMS]


def _structure(shape: StructureShape, value: Mapping[str, Any], path: str, found: list[str], depth: int) -> None:
    for name in shape.required_members:
        if value.get(name) is None:
            found.append(_failed(None, _join(path, name), "Member must not be null"))
    for name, member in shape.members.items():
        if value.get(name) is not None:
            _check(member, value[name], _join(path, name), found, depth + 1)


def _check(shape: Shape, value: Any, path: str, found: list[str], depth: int) -> None:
    if len(found) >= MAX_PROBLEMS:
        return
    if depth > MAX_DEPTH:
        found.append(_failed(value, path, "Member must not be nested this deeply"))
        return
    kind = shape.type_name
    if shape.metadata.get("document"):
        return  # a document member holds any JSON value
    if isinstance(shape, StructureShape):
        if not isinstance(value, Mapping):
            found.append(_failed(value, path, "Member must be of type structure"))
        else:
            _structure(shape, value, path, found, depth)
    elif isinstance(shape, ListShape):
        if not isinstance(value, list):
            found.append(_failed(value, path, "Member must be of type list"))
            return
        found.extend(_failed(value, path, c) for c in _length(shape, len(value)))
        for index, item in enumerate(value, 1):
            if item is None:
                found.append(_failed(None, f"{path}.{index}.member", "Member must not be null"))
            else:
                _check(shape.member, item, f"{path}.{index}.member", found, depth + 1)
    elif isinstance(shape, MapShape):
        _map(shape, value, path, found, depth)
    else:
        found.extend(_failed(value, path, c) for c in _scalar(shape, kind, value))


def _map(shape: MapShape, value: Any, path: str, found: list[str], depth: int) -> None:
    if not isinstance(value, Mapping):
        found.append(_failed(value, path, "Member must be of type map"))
        return
    found.extend(_failed(value, path, c) for c in _length(shape, len(value)))
    key_issues: list[str] = []
    value_issues: list[str] = []
    for key, item in value.items():
        _add_new(key_issues, _scalar(shape.key, shape.key.type_name, key))
        if isinstance(shape.value, StructureShape | ListShape | MapShape):
            _check(shape.value, item, f"{path}.{key}", found, depth + 1)
        else:
            _add_new(value_issues, ["Member must not be null"] if item is None else
                     _scalar(shape.value, shape.value.type_name, item))
    if key_issues:
        found.append(_failed(value, path, f"Map keys must satisfy constraint: [{', '.join(key_issues)}]"))
    if value_issues:
        found.append(_failed(value, path, f"Map value must satisfy constraint: [{', '.join(value_issues)}]"))


def _add_new(issues: list[str], more: list[str]) -> None:
    """A map reports each failed constraint once, however many of its keys or values fail it."""
    issues.extend(c for c in more if c not in issues)


def _scalar(shape: Shape, kind: str, value: Any) -> list[str]:
    """The constraints one scalar value fails."""
    if kind == "string":
        if not isinstance(value, str):
            return ["Member must be of type string"]
        issues = _length(shape, len(value))
        if shape.enum and value not in shape.enum:
            issues.append(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            compiled = _compile(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                issues.append(f"Member must satisfy regular expression pattern: {pattern}")
        return issues
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"Member must be of type {kind}"]
        return _range(shape, value)
    if kind in ("float", "double"):
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or (isinstance(value, float) and not math.isfinite(value))):
            return [f"Member must be of type {kind}"]
        return _range(shape, value)
    if kind == "boolean":
        return [] if isinstance(value, bool) else ["Member must be of type boolean"]
    if kind == "timestamp":
        return [] if _is_timestamp(value) else ["Member must be of type timestamp"]
    if kind == "blob":
        return _length(shape, len(value)) if isinstance(value, str) else ["Member must be of type blob"]
    return []


def _length(shape: Shape, size: int) -> list[str]:
    return _bounds(shape, size, "length")


def _range(shape: Shape, value: float) -> list[str]:
    return _bounds(shape, value, "value")


def _bounds(shape: Shape, measured: float, what: str) -> list[str]:
    """The model's min/max, worded as AWS words them for a length or a value."""
    issues = []
    if "min" in shape.metadata and measured < shape.metadata["min"]:
        issues.append(f"Member must have {what} greater than or equal to {shape.metadata['min']}")
    if "max" in shape.metadata and measured > shape.metadata["max"]:
        issues.append(f"Member must have {what} less than or equal to {shape.metadata['max']}")
    return issues


def _is_timestamp(value: Any) -> bool:
    try:
        epoch = parse_timestamp(value, "")
    except (AwsError, OverflowError):  # OverflowError: an integer too large for a float
        return False
    return math.isfinite(epoch) and -_MAX_TIMESTAMP < epoch < _MAX_TIMESTAMP


@functools.cache
def _compile(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(_SURROGATE_RANGE.sub(r"\\U00010000-\\U0010FFFF", pattern))
    except re.error:
        return None


def _join(path: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{path}.{name}" if path else name


def _failed(value: Any, path: str, constraint: str) -> str:
    return f"Value {_show(value)} at '{path}' failed to satisfy constraint: {constraint}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str, separators=(",", ":"))
        except (ValueError, RecursionError):
            text = type(value).__name__
    return "'" + (text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "...") + "'"


def known(shape: Shape, value: Any) -> Any:
    """`value` with only the members the model knows, at every level (what a service would store)."""
    if shape.metadata.get("document"):
        return value
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        return {k: known(shape.members[k], v) for k, v in value.items() if k in shape.members and v is not None}
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [known(shape.member, item) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, Mapping):
        return {k: known(shape.value, v) for k, v in value.items()}
    return value
