"""CloudWatch Logs' FilterLogEvents over `logstore.LogStore`: search a group's streams, page by token.

Filter patterns: space-separated terms that must all appear (case-sensitive, as CloudWatch matches
unstructured text), "quoted phrases" matched whole, `?term` alternatives (an event matches if it holds
any of them) and `-term` exclusions. JSON patterns (`{ $.x = 1 }`), space-delimited patterns
(`[ip, user, ...]`), regular expressions (`%...%`) and `*` wildcards are refused with
InvalidParameterException rather than silently matched wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from jobman.backends.local.logstore import MAX_BYTES, MAX_EVENTS, Event, LogStore
from jobman.backends.local.wire import AwsError

MAX_STREAM_NAMES = 100


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


@dataclass(frozen=True)
class Pattern:
    required: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def matches(self, message: str) -> bool:
        return (
            all(term in message for term in self.required)
            and (not self.any_of or any(term in message for term in self.any_of))
            and not any(term in message for term in self.excluded)
        )


def parse_pattern(text: str | None) -> Pattern:
    text = (text or "").strip()
    if not text or text == '""':
        return Pattern()
    if text[0] in "{[%":
        raise _invalid("The local backend supports only text filter patterns (terms, \"quoted phrases\", ?term and "
                       "-term); JSON, space-delimited and regular-expression patterns are not supported.")
    required: list[str] = []
    any_of: list[str] = []
    excluded: list[str] = []
    for sign, term, quoted in _terms(text):
        if "*" in term and not quoted:
            raise _invalid("The local backend does not support '*' wildcards in filter patterns.")
        if sign == "?" and term:
            any_of.append(term)
        elif sign == "-" and term:
            excluded.append(term)
        else:
            required.append(sign + term)
    return Pattern(tuple(required), tuple(any_of), tuple(excluded))


# One term: an optional ?/- sign, then a "quoted phrase" (backslash escapes a quote or a backslash) or a word.
_TERM = re.compile(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|([^\s"]+))(?=\s|$)')


def _terms(text: str) -> list[tuple[str, str, bool]]:
    """(sign, term, quoted) for each term of the pattern, which must consist of terms and nothing else."""
    found, at = [], 0
    while at < len(text):
        match = _TERM.match(text, at)
        if match is None:
            raise _invalid(f"Invalid filter pattern: cannot read it from character {at + 1} (an unclosed quote, "
                           "or a quote inside a term?).")
        sign, phrase, word = match.groups()
        found.append((sign, re.sub(r"\\(.)", r"\1", phrase) if phrase is not None else word, phrase is not None))
        at = match.end()
    return found


@dataclass(order=True, frozen=True)
class _Key:
    """Where an event sits in the merged, time-ordered search; a page token is the last key returned."""

    timestamp: int
    stream: str
    offset: int


@dataclass
class _Found:
    key: _Key
    event: Event = field(compare=False)


def _encode(key: _Key) -> str:
    raw = json.dumps([key.timestamp, key.stream, key.offset], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(token: Any) -> _Key:
    try:
        timestamp, stream, offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if not (isinstance(timestamp, int) and isinstance(stream, str) and isinstance(offset, int)):
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error):
        raise _invalid("The specified nextToken is invalid.") from None
    return _Key(timestamp, stream, offset)


def event_id(stream: str, event: Event) -> str:
    """A stable id of digits, as CloudWatch's are: time, stream and the event's place in it."""
    return f"{event.timestamp:016d}{zlib.crc32(stream.encode()):010d}{event.start:020d}"


def filter_log_events(store: LogStore, group: str, body: dict[str, Any]) -> dict[str, Any]:
    """The FilterLogEvents answer for `group` (already checked to exist by the caller's group rules)."""
    names, prefix = body.get("logStreamNames"), body.get("logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise _invalid("You cannot specify both LogStreamNames and LogStreamNamePrefix.")
    if names is not None and (not isinstance(names, list) or not 1 <= len(names) <= MAX_STREAM_NAMES):
        raise _invalid(f"logStreamNames must list 1 to {MAX_STREAM_NAMES} stream names.")
    limit = body.get("limit", MAX_EVENTS)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_EVENTS:
        raise _invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                       f"Member must have value less than or equal to {MAX_EVENTS}")
    start, end = body.get("startTime"), body.get("endTime")
    if start is not None and end is not None and start > end:
        raise _invalid("endTime must not be before startTime.")
    pattern = parse_pattern(body.get("filterPattern"))
    after = _decode(body["nextToken"]) if body.get("nextToken") else None
    streams = sorted(s.name for s in store.streams(group))
    if names is not None:
        streams = [s for s in streams if s in set(names)]
    elif prefix:
        streams = [s for s in streams if s.startswith(prefix)]
    found: list[_Found] = []
    for stream in streams:
        for event in store.all_events(group, stream):
            if start is not None and event.timestamp < start or end is not None and event.timestamp > end:
                continue
            key = _Key(event.timestamp, stream, event.start)
            if (after is None or key > after) and pattern.matches(event.message):
                found.append(_Found(key, event))
    found.sort(key=lambda f: f.key)
    page: list[_Found] = []
    size = 0
    for item in found:
        if len(page) >= limit or (page and size + len(item.event.message) > MAX_BYTES):
            break
        page.append(item)
        size += len(item.event.message)
    answer: dict[str, Any] = {
        "events": [
            {"logStreamName": f.key.stream, "timestamp": f.event.timestamp, "message": f.event.message,
             "ingestionTime": f.event.ingestion_time, "eventId": event_id(f.key.stream, f.event)}
            for f in page
        ],
        "searchedLogStreams": [{"logStreamName": s, "searchedCompletely": len(page) == len(found)} for s in streams],
    }
    if len(page) < len(found):
        answer["nextToken"] = _encode(page[-1].key)
    return answer
