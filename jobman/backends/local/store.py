"""Where the local backend keeps its state under `$JOBMAN_HOME/local/`, and how it writes it safely.

Every JSON state file is written atomically (temporary file, then `os.replace`), so a reader, or the
server after a crash, sees either the old or the new version and never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Layout:
    """The folders and files of one local backend; `root` is `$JOBMAN_HOME/local`."""

    root: Path

    @property
    def s3(self) -> Path:  # s3/<bucket>/<key>: the objects themselves
        return self.root / "s3"

    @property
    def s3_meta(self) -> Path:  # s3-meta/<bucket>/: ETag, content type, user metadata
        return self.root / "s3-meta"

    @property
    def uploads(self) -> Path:  # s3-uploads/<upload id>/: multipart uploads in progress
        return self.root / "s3-uploads"

    @property
    def tmp(self) -> Path:  # same file system as s3/, so finished objects move in with os.replace
        return self.root / "tmp"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scheduler(self) -> Path:  # scheduler/<region>/: EventBridge Scheduler's groups and schedules
        return self.root / "scheduler"

    @property
    def server_json(self) -> Path:
        return self.root / "server.json"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    @property
    def server_lock(self) -> Path:  # held by the running server for its whole life
        return self.root / "server.lock"

    @property
    def secret_file(self) -> Path:  # mode 0600: whoever reads it may drive the server (see shared_secret.py)
        return self.root / "secret"

    @property
    def start_lock(self) -> Path:  # held by whoever is checking for, or starting, a server
        return self.root / "start.lock"

    def resources(self, region: str, rtype: str) -> Path:
        """JSON records of one SageMaker resource type, one file per (lower-cased) name."""
        return self.root / "sagemaker" / region / rtype

    def training_dir(self, region: str, name: str) -> Path:
        """A training job's process state: status.json (the worker's), worker.json, stop.json, log."""
        return self.root / "training" / region / _one_segment(name).lower()

    def transform_dir(self, region: str, name: str) -> Path:
        """A transform job's process state: status.json (the worker's), worker.json, stop.json, log."""
        return self.root / "transforms" / region / _one_segment(name).lower()

    def endpoint_dir(self, region: str, name: str) -> Path:
        """An endpoint's process state: spec.json, worker.json, port.json, failed.json, model files."""
        return self.root / "endpoints" / region / _one_segment(name).lower()

    def regions(self) -> list[str]:
        base = self.root / "sagemaker"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def ensure(self) -> None:
        self.ensure_root()
        for path in (self.s3, self.s3_meta, self.uploads, self.tmp, self.logs):
            path.mkdir(parents=True, exist_ok=True)

    def ensure_root(self) -> None:
        """The state folder, private to its owner (0700): it holds the secret and every object."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            os.chmod(self.root, 0o700)


def _one_segment(name: str) -> str:
    """The last line of defence: callers validate names first, but no name may ever leave its folder."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"{name!r} cannot name a file")
    return name


def layout(jobman_home: Path) -> Layout:
    return Layout(Path(jobman_home).expanduser().absolute() / "local")


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.name[:40])
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode())


def read_json(path: Path) -> Any | None:
    """The file's JSON value, or None when it does not exist (or is not JSON: never half-written)."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return None


class RecordStore:
    """SageMaker resource records of one type in one region.

    Names are case-insensitive in SageMaker (ARNs carry them lower-cased), so files are keyed by the
    lower-cased name and the record keeps the name as given. Names are validated before they get here.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{_one_segment(name).lower()}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        value = read_json(self.path(name))
        return value if isinstance(value, dict) else None

    def put(self, name: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.path(name), record)

    def delete(self, name: str) -> bool:
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json") if not p.name.startswith("."))

    def all(self) -> Iterator[dict[str, Any]]:
        for name in self.names():
            record = self.get(name)
            if record is not None:
                yield record
