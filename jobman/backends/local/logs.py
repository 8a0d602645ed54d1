"""CloudWatch Logs' JSON 1.1 API over `logstore.LogStore`: the calls that read SageMaker's logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from jobman.backends.local import log_filter, validation, wire
from jobman.backends.local.listing import paginate
from jobman.backends.local.logstore import MAX_EVENTS, Event, LogStore, StreamInfo
from jobman.backends.local.wire import ACCOUNT_ID, AwsError

_TOKEN = re.compile(r"^([fb])/(\d{1,19})$")


def _not_found(what: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"The specified log {what} does not exist.")


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


class LogsApi:
    def __init__(self, logs_root: Path) -> None:
        self.logs_root = logs_root

    def store(self, region: str) -> LogStore:
        return LogStore(self.logs_root / region)

    async def handle(self, request: web.Request, scope: wire.Scope) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").partition(".")[2]
        try:
            handler = self._operations().get(operation)
            if handler is None:
                raise AwsError("UnknownOperationException", f"The local backend does not implement Logs.{operation}.")
            body = await wire.read_json_body(request)
            store = self.store(wire.check_region(scope.region))
            # botocore's model first; CloudWatch Logs words a model violation as InvalidParameterException
            body = validation.checked("logs", operation, body, code="InvalidParameterException")
            return wire.json_response(handler(store, scope.region, body))
        except AwsError as exc:
            return wire.json_error(exc)

    def _operations(self) -> dict[str, Callable[[LogStore, str, dict[str, Any]], dict[str, Any]]]:
        return {
            "DescribeLogGroups": describe_log_groups,
            "DescribeLogStreams": describe_log_streams,
            "GetLogEvents": get_log_events,
            "FilterLogEvents": filter_log_events,
        }


def _group(body: dict[str, Any]) -> str:
    group = body.get("logGroupName") or body.get("logGroupIdentifier")
    if not isinstance(group, str) or not group:
        raise _invalid("Either logGroupName or logGroupIdentifier must be given.")
    if group.startswith("arn:"):  # an identifier may be the group's ARN
        group = group.split(":log-group:", 1)[-1].removesuffix(":*")
    return group


def _group_arn(region: str, group: str) -> str:
    return f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group}"


def describe_log_groups(store: LogStore, region: str, body: dict[str, Any]) -> dict[str, Any]:
    prefix = body.get("logGroupNamePrefix") or ""
    groups = [{"logGroupName": g, "arn": _group_arn(region, g) + ":*", "storedBytes": 0}
              for g in store.groups() if g.startswith(prefix)]
    page = paginate(groups, lambda g: (g["logGroupName"],), descending=False, limit=int(body.get("limit", 50)),
                    token=body.get("nextToken"), error_code="InvalidParameterException")
    return {"logGroups": page.items, **({"nextToken": page.next_token} if page.next_token else {})}


def describe_log_streams(store: LogStore, region: str, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(body)
    if not store.group_exists(group):
        raise _not_found("group")
    order = body.get("orderBy", "LogStreamName")
    prefix = body.get("logStreamNamePrefix")
    if order not in ("LogStreamName", "LastEventTime"):
        raise _invalid(f"1 validation error detected: Value '{order}' at 'orderBy' failed to satisfy constraint: "
                       "Member must satisfy enum value set: [LogStreamName, LastEventTime]")
    if prefix and order == "LastEventTime":
        raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    limit = body.get("limit", 50)
    if not isinstance(limit, int) or not 1 <= limit <= 50:
        raise _invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                       "Member must have value less than or equal to 50")
    streams = [_stream(region, group, s) for s in store.streams(group) if s.name.startswith(prefix or "")]

    def key(item: dict[str, Any]) -> tuple[Any, ...]:
        name = item["logStreamName"]
        return (name,) if order == "LogStreamName" else (item.get("lastEventTimestamp") or 0, name)

    page = paginate(streams, key, descending=bool(body.get("descending", False)), limit=limit,
                    token=body.get("nextToken"), error_code="InvalidParameterException")
    return {"logStreams": page.items, **({"nextToken": page.next_token} if page.next_token else {})}


def _stream(region: str, group: str, info: StreamInfo) -> dict[str, Any]:
    item: dict[str, Any] = {
        "logStreamName": info.name,
        "creationTime": info.creation_time,
        "arn": f"{_group_arn(region, group)}:log-stream:{info.name}",
        "storedBytes": 0,
    }
    if info.first_event is not None:
        item.update(firstEventTimestamp=info.first_event, lastEventTimestamp=info.last_event,
                    lastIngestionTime=info.last_ingestion)
    return item


def get_log_events(store: LogStore, region: str, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(body)
    stream = body.get("logStreamName")
    if not store.group_exists(group):
        raise _not_found("group")
    if not isinstance(stream, str) or not store.stream_exists(group, stream):
        raise _not_found("stream")
    limit = body.get("limit", MAX_EVENTS)
    if not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
        raise _invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                       "Member must have value less than or equal to 10000")
    start, end = body.get("startTime"), body.get("endTime")
    token = body.get("nextToken")
    direction, offset = _parse_token(token) if token else ("f" if body.get("startFromHead") else "tail", 0)
    if direction == "f":
        events = _filter(store.read_forward(group, stream, offset, limit), start, end)
    else:  # the default reads the stream's tail; a backward token the events before its offset
        events = _filter(store.read_before(group, stream, offset if token else None), start, end)[-limit:]
    # At the end of the stream the forward token comes back unchanged: that is how tailing stops.
    forward = events[-1].end if events else offset
    backward = events[0].start if events else offset
    return _answer(events, f"f/{forward}", f"b/{backward}")


def filter_log_events(store: LogStore, region: str, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(body)
    if not store.group_exists(group):
        raise _not_found("group")
    return log_filter.filter_log_events(store, group, body)


def _parse_token(token: str) -> tuple[str, int]:
    match = _TOKEN.match(token)
    if match is None:
        raise _invalid("The specified nextToken is invalid.")
    return match[1], int(match[2])


def _filter(events: list[Event], start: int | None, end: int | None) -> list[Event]:
    return [e for e in events if (start is None or e.timestamp >= start) and (end is None or e.timestamp < end)]


def _answer(events: list[Event], forward: str, backward: str) -> dict[str, Any]:
    return {
        "events": [{"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time} for e in events],
        "nextForwardToken": forward,
        "nextBackwardToken": backward,
    }
