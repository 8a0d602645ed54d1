"""SageMaker Runtime's InvokeEndpoint (`POST /endpoints/{name}/invocations`, REST-JSON errors).

The body goes to the endpoint's process over a pooled keep-alive connection and its answer comes
back as is. A 4xx/5xx from the model becomes SageMaker's ModelError (HTTP 424); a body over
6,291,456 bytes is refused with HTTP 413 before it is sent anywhere.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from jobman.backends.local import arns, wire
from jobman.backends.local.endpoints import EndpointManager, log_group
from jobman.backends.local.wire import ACCOUNT_ID, AwsError

MAX_PAYLOAD = 6 * 1024 * 1024  # 6,291,456 bytes
INVOKE_TIMEOUT_S = 60.0  # the container must answer within 60 s
RESTART_WAIT_S = 20.0  # how long an invocation waits for a replaced instance to come up
PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_CONTENT_TYPE = "application/json"
_FORWARDED = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")


def endpoint_name(raw_path: str) -> str | None:
    match = PATH.match(raw_path.split("?", 1)[0])
    return unquote(match["name"]) if match else None


def check_endpoint_name(name: str) -> str:
    """The name from the path (`%2F` decoded) is SageMaker's kind of name before it names any file."""
    try:
        return arns.check_name(name, "endpointName")
    except AwsError as exc:
        exc.code = "ValidationError"  # SageMaker Runtime's code for the same message
        raise


class RuntimeApi:
    def __init__(self, endpoints: EndpointManager) -> None:
        self.endpoints = endpoints

    async def handle(self, request: web.Request, scope: wire.Scope, name: str) -> web.Response:
        try:
            return await self._invoke(request, wire.check_region(scope.region), check_endpoint_name(name))
        except AwsError as exc:
            return wire.json_error(exc, content_type=_CONTENT_TYPE)

    async def _invoke(self, request: web.Request, region: str, name: str) -> web.Response:
        if request.method != "POST":
            raise AwsError("ValidationError", "InvokeEndpoint takes POST.", 405)
        body = await wire.read_body(request, MAX_PAYLOAD, AwsError(
            "ValidationError", f"Request body for endpoint {name} exceeds the maximum of {MAX_PAYLOAD} bytes.", 413))
        headers = {h: request.headers[h] for h in _FORWARDED if h in request.headers}
        headers.setdefault("Content-Type", "text/csv")  # workers need it; a signed caller that omits it meant CSV
        headers.update(self.endpoints.worker_headers())
        for attempt in range(2):
            instance, variant = await self.endpoints.serving_instance(region, name, RESTART_WAIT_S)
            try:
                status, payload, content_type = await self._forward(instance.port, body, headers)
            except (aiohttp.ClientConnectionError, ConnectionError) as exc:
                self.endpoints.unreachable(region, name, instance)
                if attempt == 0:
                    continue  # the instance died: wait for its replacement and send once more
                raise AwsError("ServiceUnavailable", f"Endpoint {name}'s instance is not reachable: {exc}",
                               503) from exc
            except TimeoutError as exc:
                raise _model_error(region, name, 0, "Your invocation timed out while waiting for a response "
                                   f"from container primary ({INVOKE_TIMEOUT_S:.0f} s).") from exc
            if status >= 400:
                raise _model_error(region, name, status, payload.decode("utf-8", "replace")[:1000])
            return web.Response(body=payload, headers={
                "Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": variant,
                "x-amzn-RequestId": wire.request_id(),
            })
        raise AssertionError("unreachable")

    async def _forward(self, port: int | None, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        assert self.endpoints.session is not None
        async with self.endpoints.session.post(
            f"http://127.0.0.1:{port}/invocations", data=body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=INVOKE_TIMEOUT_S),
        ) as response:
            payload = await response.read()
            return response.status, payload, response.headers.get("Content-Type", "application/octet-stream")


def _model_error(region: str, name: str, status: int, message: str) -> AwsError:
    kind = "client" if 400 <= status < 500 else "server"
    logs_url = (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
                f"group={log_group(name)}")
    return AwsError(
        "ModelError",
        f'Received {kind} error ({status}) from primary with message "{message}". See {logs_url} in account '
        f"{ACCOUNT_ID} for more information.",
        424,
        fields={
            "OriginalStatusCode": status,
            "OriginalMessage": message,
            "LogStreamArn": f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{log_group(name)}",
        },
    )
