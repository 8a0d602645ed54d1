"""STS (Query protocol, XML): GetCallerIdentity, so `aws sts get-caller-identity` and account lookups work."""

from __future__ import annotations

from urllib.parse import parse_qs

from aiohttp import web

from jobman.backends.local import wire
from jobman.backends.local.wire import ACCOUNT_ID, AwsError, XmlNode

STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
USER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/jobman-local"


async def handle(request: web.Request, scope: wire.Scope) -> web.Response:
    try:
        raw = await wire.read_body(request, 64 << 10, AwsError("RequestEntityTooLarge", "Request is too large.", 413))
        params = {**request.rel_url.query, **{k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}}
        action = params.get("Action", "")
        if action != "GetCallerIdentity":
            raise AwsError("InvalidAction", f"Could not find operation {action or '(none)'} for version 2011-06-15")
        result = XmlNode().add("Arn", USER_ARN).add("UserId", "AIDAJOBMANLOCAL000000").add("Account", ACCOUNT_ID)
        node = XmlNode().add("GetCallerIdentityResult", result)
        node.add("ResponseMetadata", XmlNode().add("RequestId", wire.request_id()))
        return wire.xml_response(wire.to_xml("GetCallerIdentityResponse", node, xmlns=STS_XMLNS))
    except AwsError as exc:
        return wire.query_error(exc, xmlns=STS_XMLNS)
