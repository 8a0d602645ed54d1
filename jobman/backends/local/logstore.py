"""CloudWatch Logs as files: `logs/<region>/<group>/<stream>.jsonl`, one event a line.

Writers (the server and the worker processes) append whole lines with one `write` on an O_APPEND file,
so a reader only ever has to skip a last line that is not finished yet. Forward tokens are byte
offsets, so tailing a stream reads only what is new. Group and stream names become file names by
percent-encoding (a leading dot too, so `..` stays a name), or by a hash when they are too long; the
real names are kept in small `.json` sidecars. Imports nothing heavy: the workers use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobman.backends.local.store import atomic_write_json, read_json

TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_GROUP = "/aws/sagemaker/TransformJobs"
ENDPOINT_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
MAX_EVENTS = 10_000
MAX_BYTES = 1 << 20
_GROUP_META = "_group.json"


def file_name(name: str) -> str:
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > 200:  # '%h' cannot start an encoded name, whose every '%' is an escape
        encoded = "%h" + hashlib.sha256(name.encode()).hexdigest()
    return encoded


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class StreamInfo:
    name: str
    creation_time: int
    first_event: int | None
    last_event: int | None
    last_ingestion: int | None


@dataclass(frozen=True)
class Event:
    timestamp: int
    message: str
    ingestion_time: int
    start: int  # byte offsets of this event's line in the stream file
    end: int


class LogStore:
    """The log groups of one region."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def group_dir(self, group: str) -> Path:
        return self.root / file_name(group)

    def group_exists(self, group: str) -> bool:
        return (self.group_dir(group) / _GROUP_META).is_file()

    def stream_path(self, group: str, stream: str) -> Path:
        return self.group_dir(group) / (file_name(stream) + ".jsonl")

    def create_stream(self, group: str, stream: str) -> None:
        """Create the group and stream if missing (SageMaker creates them as it starts writing)."""
        folder = self.group_dir(group)
        if not (folder / _GROUP_META).is_file():
            atomic_write_json(folder / _GROUP_META, {"logGroupName": group, "creationTime": now_ms()})
        meta = folder / (file_name(stream) + ".json")
        if not meta.is_file():
            atomic_write_json(meta, {"logStreamName": stream, "creationTime": now_ms()})
        self.stream_path(group, stream).touch()

    def append(self, group: str, stream: str, messages: list[str], timestamp_ms: int | None = None) -> None:
        if not messages:
            return
        stamp = now_ms()
        lines = "".join(
            json.dumps({"t": timestamp_ms or stamp, "i": stamp, "m": message}) + "\n" for message in messages
        )
        fd = os.open(self.stream_path(group, stream), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)

    def groups(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = []
        for folder in sorted(self.root.iterdir()):
            meta = read_json(folder / _GROUP_META)
            if isinstance(meta, dict):
                names.append(meta["logGroupName"])
        return names

    def streams(self, group: str) -> list[StreamInfo]:
        folder = self.group_dir(group)
        infos = []
        for meta_path in sorted(folder.glob("*.json")):
            if meta_path.name == _GROUP_META:
                continue
            meta = read_json(meta_path)
            if not isinstance(meta, dict):
                continue
            data = meta_path.with_suffix(".jsonl")
            first, last = _edge_events(data)
            infos.append(
                StreamInfo(
                    meta["logStreamName"], int(meta["creationTime"]),
                    first["t"] if first else None, last["t"] if last else None, last["i"] if last else None,
                )
            )
        return infos

    def stream_exists(self, group: str, stream: str) -> bool:
        return self.stream_path(group, stream).is_file()

    def read_forward(self, group: str, stream: str, offset: int, limit: int) -> list[Event]:
        """Up to `limit` whole events starting at byte `offset` (at most about 1 MB of them)."""
        events: list[Event] = []
        size = 0
        for event in self._whole_events(group, stream, offset):
            if len(events) >= limit or size >= MAX_BYTES:
                break
            events.append(event)
            size += event.end - event.start
        return events

    def all_events(self, group: str, stream: str) -> list[Event]:
        """Every whole event of the stream, with no page size cap (FilterLogEvents pages by itself)."""
        try:
            return list(self._whole_events(group, stream))
        except FileNotFoundError:
            return []

    def read_before(self, group: str, stream: str, end: int | None) -> list[Event]:
        """Every whole event that ends at or before byte `end` (None: the whole stream)."""
        events = self.all_events(group, stream)
        return events if end is None else [e for e in events if e.end <= end]

    def _whole_events(self, group: str, stream: str, offset: int = 0) -> Iterator[Event]:
        """The stream's events from byte `offset`, up to a last line still being written (not yet whole)."""
        with self.stream_path(group, stream).open("rb") as handle:
            handle.seek(offset)
            position = offset
            for line in handle:
                if not line.endswith(b"\n"):
                    return
                yield _event(line, position)
                position += len(line)


def _event(line: bytes, start: int) -> Event:
    value: dict[str, Any] = json.loads(line)
    return Event(int(value["t"]), str(value["m"]), int(value["i"]), start, start + len(line))


def _edge_events(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first and last whole events of a stream file, reading only its two ends."""
    try:
        with path.open("rb") as handle:
            first_line = handle.readline()
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            tail = handle.read()
    except FileNotFoundError:
        return None, None
    if not first_line.endswith(b"\n"):
        return None, None
    lines = [line for line in tail.split(b"\n") if line]
    complete = lines if tail.endswith(b"\n") else lines[:-1]
    try:
        return json.loads(first_line), json.loads(complete[-1]) if complete else None
    except ValueError:
        return None, None
