"""Schedule groups and schedules on disk, and the in-memory index of when each pending schedule wakes.

    scheduler/<region>/groups/<group>.json
    scheduler/<region>/schedules/<group>/<name>.json

Every write is atomic and goes through this store, so the wake index (rebuilt from disk by `load`) stays
right without rescanning the files every second. Names are checked against the model's pattern again
here, before they name a file, and a leading dot is escaped, so `.` and `..` are names, never folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobman.backends.local import schedules
from jobman.backends.local.store import Layout, atomic_write_json, read_json
from jobman.backends.local.wire import AwsError

Key = tuple[str, str, str]  # region, group, name
_REGION = re.compile(r"^[a-z]{2,10}(-[a-z0-9]{1,12}){1,4}$")


def file_name(name: str) -> str:
    if not schedules.NAME.fullmatch(name):
        raise AwsError("ValidationException", f"Invalid name {name!r}: it must match [0-9a-zA-Z-_.]+ (1-64).")
    return "%2E" + name[1:] if name.startswith(".") else name


class ScheduleStore:
    def __init__(self, layout: Layout) -> None:
        self.root = layout.scheduler
        self._wake: dict[Key, float] = {}

    # --- paths ---

    def _region(self, region: str) -> Path:
        if not _REGION.match(region):
            raise AwsError("ValidationException", f"Invalid region {region!r}.")
        return self.root / region

    def group_path(self, region: str, group: str) -> Path:
        return self._region(region) / "groups" / f"{file_name(group)}.json"

    def group_folder(self, region: str, group: str) -> Path:
        return self._region(region) / "schedules" / file_name(group)

    def schedule_path(self, region: str, group: str, name: str) -> Path:
        return self.group_folder(region, group) / f"{file_name(name)}.json"

    # --- groups ---

    def get_group(self, region: str, group: str) -> dict[str, Any] | None:
        return _record(self.group_path(region, group))

    def put_group(self, region: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.group_path(region, record["Name"]), record)

    def delete_group(self, region: str, group: str) -> None:
        """The group and every schedule in it."""
        for record in list(self.schedules(region, group)):
            self.delete_schedule(region, group, record["Name"])
        self.group_path(region, group).unlink(missing_ok=True)
        try:
            self.group_folder(region, group).rmdir()
        except OSError:  # missing, or a temporary file of a write in flight
            pass

    def groups(self, region: str) -> Iterator[dict[str, Any]]:
        yield from _records(self._region(region) / "groups")

    # --- schedules ---

    def get_schedule(self, region: str, group: str, name: str) -> dict[str, Any] | None:
        return _record(self.schedule_path(region, group, name))

    def put_schedule(self, region: str, record: dict[str, Any]) -> None:
        group, name = record["GroupName"], record["Name"]
        atomic_write_json(self.schedule_path(region, group, name), record)
        self.track((region, group, name), record)

    def delete_schedule(self, region: str, group: str, name: str) -> bool:
        self._wake.pop((region, group, name), None)
        try:
            self.schedule_path(region, group, name).unlink()
        except FileNotFoundError:
            return False
        return True

    def schedules(self, region: str, group: str | None = None) -> Iterator[dict[str, Any]]:
        if group is not None:
            yield from _records(self.group_folder(region, group))
            return
        base = self._region(region) / "schedules"
        if base.is_dir():
            for folder in sorted(base.iterdir()):
                yield from _records(folder)

    # --- the wake index ---

    def load(self) -> None:
        """Rebuild the wake index from disk (at server start)."""
        self._wake.clear()
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and _REGION.match(folder.name):
                for record in self.schedules(folder.name):
                    if isinstance(record.get("GroupName"), str):
                        self.track((folder.name, record["GroupName"], record["Name"]), record)

    def due(self, now: float) -> list[Key]:
        """Pending schedules whose wake time has come, earliest first."""
        return sorted((key for key, wake in self._wake.items() if wake <= now), key=lambda k: self._wake[k])

    def pending(self) -> int:
        """ENABLED schedules that have not finally fired yet."""
        return len(self._wake)

    def next_wake(self) -> float | None:
        return min(self._wake.values(), default=None)

    def snooze(self, key: Key, until: float) -> None:
        """Look at a pending schedule again only at `until` (after a firing that failed unexpectedly)."""
        if key in self._wake:
            self._wake[key] = until

    def track(self, key: Key, record: dict[str, Any]) -> None:
        wake = schedules.wake_at(record)
        if wake is None:
            self._wake.pop(key, None)
        else:
            self._wake[key] = wake


def _record(path: Path) -> dict[str, Any] | None:
    value = read_json(path)
    return value if isinstance(value, dict) else None


def _records(folder: Path) -> Iterator[dict[str, Any]]:
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        if not path.name.startswith("."):  # .tmp-* files are writes in flight
            record = _record(path)
            if record is not None and isinstance(record.get("Name"), str):
                yield record
