"""Who may drive the local server: the checks every request passes before it reaches a service.

The server listens on 127.0.0.1, yet any web page open in a browser on this machine can send it requests.
So (the README's threat model):

- `Host` must be a loopback name for this port, which defeats DNS rebinding (a page whose own name
  resolves to 127.0.0.1 would otherwise be same-origin with the server);
- no browser request is served: a CORS preflight is refused, never granted, and so is any request that
  carries an `Origin` (which browsers add to cross-origin requests, and SDKs never send);
- AWS requests must carry a SigV4 signature, in `Authorization` (a header a page cannot send cross-origin
  without the preflight it is refused) or in a presigned URL's query. Any key is accepted, so only the
  signature's presence and form are checked, not its value; hence a presigned URL (SigV4, or the SigV2
  form boto3 still makes for S3 by default) is accepted only for GET, HEAD, PUT and DELETE: a page's form
  can only GET, whose answer the page cannot read, or POST;
- jobman's own routes (`/_jobman/*`) need the secret of `shared_secret.py`, which only processes that can read
  the state folder know.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web

from jobman.backends.local import runtime, shared_secret, sts, wire
from jobman.backends.local.wire import AwsError

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=[^/,\s]+/\d{8}/[^/,\s]+/[^/,\s]+/aws4_request,\s*"
    r"SignedHeaders=[a-z0-9-]+(;[a-z0-9-]+)*,\s*Signature=[0-9a-f]{64}$"
)
_CREDENTIAL = re.compile(r"^[^/,\s]+/\d{8}/[^/,\s]+/[^/,\s]+/aws4_request$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_V2_SIGNATURE = re.compile(r"^[A-Za-z0-9+/]{27}=$|^[A-Za-z0-9+/]{43}=$")  # base64 of HMAC-SHA1 or -SHA256
_PRESIGNED_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})  # never POST, which a page's form can send


def loopback_hosts(port: int) -> frozenset[str]:
    """The `Host` values a local client sends for this port (no port only if it is HTTP's default)."""
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset([f"{name}:{port}" for name in names] + (list(names) if port == 80 else []))


def host_allowed(host: str | None, port: int) -> bool:
    return host is not None and host.lower() in loopback_hosts(port)


def local_port(request: web.BaseRequest) -> int:
    """The port the request came in on (what its Host must name); 0 if the connection is gone."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if isinstance(sockname, tuple) and len(sockname) >= 2 else 0


def is_preflight(request: web.BaseRequest) -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def refuse_browser(request: web.BaseRequest) -> web.Response | None:
    """A refusal for a request that could come from a web page (wrong Host, CORS), else None."""
    if is_preflight(request):
        return web.Response(status=403, text="Cross-origin requests are not allowed.\n")
    if not host_allowed(request.headers.get("Host"), local_port(request)):
        return _denied(request, "host")
    if "Origin" in request.headers:
        return _denied(request, "origin")
    return None


def check(request: web.Request, expected_secret: str) -> web.Response | None:
    """The refusal for a request the server must not serve, or None if it may go on to its service."""
    refusal = refuse_browser(request)
    if refusal is not None:
        return refusal
    if request.raw_path.startswith("/_jobman/"):
        if shared_secret.matches(expected_secret, request.headers.get(shared_secret.HEADER)):
            return None
        return web.json_response({"error": f"the {shared_secret.HEADER} header is missing or wrong"}, status=403)
    problem = signature_problem(request.method, request.headers, request.rel_url.query)
    return None if problem is None else _denied(request, problem)


def signature_problem(method: str, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """None for a well-formed SigV4 request; else "missing" (no signature at all) or "malformed"."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        return None if _AUTHORIZATION.match(authorization.strip()) else "malformed"
    presigned = [query.get(k) for k in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")]
    if any(presigned):
        algorithm, credential, signature = presigned
        well_formed = (algorithm == "AWS4-HMAC-SHA256" and bool(_CREDENTIAL.match(credential or ""))
                       and bool(_SIGNATURE.match(signature or "")))
        return None if well_formed and method in _PRESIGNED_METHODS else "malformed"
    v2 = [query.get(k) for k in ("AWSAccessKeyId", "Signature", "Expires")]
    if any(v2):
        key, signature, expires = v2
        well_formed = bool(key) and bool(_V2_SIGNATURE.match(signature or "")) and (expires or "").isdigit()
        return None if well_formed and method in _PRESIGNED_METHODS else "malformed"
    return "missing"


# --- refusals in the shape of the service the request was for ---

_JSON_CODES = {"missing": "MissingAuthenticationTokenException", "malformed": "IncompleteSignatureException"}
_STS_CODES = {"missing": "MissingAuthenticationToken", "malformed": "IncompleteSignature"}
_MESSAGES = {
    "missing": "Missing Authentication Token: the request must be signed with AWS Signature Version 4 "
               "(any access key works with the local backend).",
    "malformed": "The request's AWS Signature Version 4 is incomplete or malformed.",
    "host": "The Host header must name this server on a loopback address (127.0.0.1, localhost or [::1]).",
    "origin": "Requests from web pages (with an Origin header) are not served.",
}


def _denied(request: web.BaseRequest, problem: str) -> web.Response:
    message = _MESSAGES[problem]
    if request.raw_path.startswith("/_jobman/"):
        return web.json_response({"error": message}, status=403)
    scope = wire.parse_scope(request.headers, request.rel_url.query)
    json_code = _JSON_CODES.get(problem, "AccessDeniedException")
    if request.headers.get("X-Amz-Target"):
        return wire.json_error(AwsError(json_code, message, 403))
    if scope.service == "scheduler" or runtime.endpoint_name(request.raw_path) is not None:
        return wire.json_error(AwsError(json_code, message, 403), content_type="application/json")
    if scope.service == "sts" or (scope.service is None and is_sts_form(request)):
        return wire.query_error(AwsError(_STS_CODES.get(problem, "AccessDenied"), message, 403), xmlns=sts.STS_XMLNS)
    return wire.s3_error(AwsError("AccessDenied", message, 403), resource=request.raw_path.split("?", 1)[0],
                         head=request.method == "HEAD")


def is_sts_form(request: web.BaseRequest) -> bool:
    return request.method == "POST" and request.raw_path.split("?", 1)[0] == "/" and request.content_type.startswith(
        "application/x-www-form-urlencoded")
