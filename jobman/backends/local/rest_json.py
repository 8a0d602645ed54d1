"""REST-JSON requests by the service model: which operation a method and path are, and its input members.

Members come from where the model says: URI labels (matched on the raw path, then percent-decoded, so
an encoded `/` stays inside its label), the query string, headers, and the JSON body. Query and header
values arrive as text and are converted by their shape's type; a value that does not convert stays text,
so the validator reports it. Responses and errors are JSON with `Content-Type: application/json`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.model import ListShape, OperationModel, ServiceModel, Shape

from jobman.backends.local import wire
from jobman.backends.local.wire import AwsError

CONTENT_TYPE = "application/json"
MAX_BODY = 1 << 20
_LABEL = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")
_INTEGER = re.compile(r"^-?[0-9]{1,19}$")


@dataclass(frozen=True)
class Route:
    operation: OperationModel
    method: str
    path: re.Pattern[str]


class Router:
    """The operations of one REST-JSON service model, matched by method and raw path."""

    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.routes = [_route(model.operation_model(name)) for name in model.operation_names]

    def match(self, method: str, raw_path: str) -> tuple[OperationModel, dict[str, str]]:
        path = raw_path.split("?", 1)[0]
        for route in self.routes:
            found = route.path.match(path)
            if found and route.method == method:
                return route.operation, {k: unquote(v) for k, v in found.groupdict().items()}
        raise AwsError("UnknownOperationException",
                       f"The local {self.model.service_name} service has no operation for {method} {path}.", 404)

    async def members(self, request: web.Request, operation: OperationModel,
                      labels: Mapping[str, str]) -> dict[str, Any]:
        """The request's input members, keyed by member name, from wherever the model puts each."""
        shape = operation.input_shape
        if shape is None:
            return {}
        params: dict[str, Any] = {}
        body: dict[str, Any] | None = None
        query = request.rel_url.query
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire_name = member.serialization.get("name", name)
            if location == "uri":
                if wire_name in labels:
                    params[name] = labels[wire_name]
            elif location == "querystring":
                if isinstance(member, ListShape):
                    values = query.getall(wire_name, [])
                    if values:
                        params[name] = [_convert(member.member, v) for v in values]
                elif wire_name in query:
                    params[name] = _convert(member, query[wire_name])
            elif location == "header":
                if wire_name in request.headers:
                    params[name] = _convert(member, request.headers[wire_name])
            elif location is None:
                if body is None:
                    body = await wire.read_json_body(request, MAX_BODY)
                if wire_name in body:
                    params[name] = body[wire_name]
        return params


def response(payload: Mapping[str, Any]) -> web.Response:
    return wire.json_response(payload, content_type=CONTENT_TYPE)


def error(exc: AwsError) -> web.Response:
    return wire.json_error(exc, content_type=CONTENT_TYPE)


def _route(operation: OperationModel) -> Route:
    template = operation.http["requestUri"].split("?", 1)[0]
    pattern, position = "", 0
    for label in _LABEL.finditer(template):
        pattern += re.escape(template[position:label.start()])
        pattern += f"(?P<{label[1]}>{'.+' if label[2] else '[^/]+'})"
        position = label.end()
    pattern += re.escape(template[position:])
    return Route(operation, operation.http["method"], re.compile(f"^{pattern}$"))


def _convert(shape: Shape, text: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long") and _INTEGER.match(text):
        return int(text)
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text
