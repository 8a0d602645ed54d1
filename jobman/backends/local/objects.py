"""S3 objects as files: `s3/<bucket>/<key>`, with their ETag and headers in a sidecar JSON file.

Keys map to paths segment by segment, so a key can never leave its bucket's folder: empty, `.` and
`..` segments, NUL and over-long segments are refused (real S3 allows some of them; a folder cannot
hold them safely). For the same reason one key cannot be both an object and the folder of another
(`a` and `a/b`). Sidecars live in a separate tree, named by a hash of the key, so no key can collide
with one. An object is written to `tmp/` first and moved in with `os.replace`: readers never see
half an object. The training and endpoint workers use this module too, so it imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobman.backends.local.store import Layout, atomic_write_json, read_json

MAX_KEY_BYTES = 1024
_MAX_SEGMENT_BYTES = 255  # the file system's limit on one name
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_BUCKET_META = "_bucket.json"


class ObjectError(Exception):
    """A refused storage operation; `code` and `status` are S3's."""

    def __init__(self, code: str, message: str, status: int = 400, **fields: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.fields = code, message, status, fields


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: float
    etag: str  # quoted, as S3 sends it
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)


def check_bucket_name(bucket: str) -> str:
    """S3's bucket naming rules (general purpose buckets); refuses anything that is not one plain name."""
    valid = (
        bool(_BUCKET.match(bucket))
        and ".." not in bucket
        and ".-" not in bucket
        and "-." not in bucket
        and not _IP_ADDRESS.match(bucket)
        and not bucket.startswith(_RESERVED_PREFIXES)
        and not bucket.endswith(_RESERVED_SUFFIXES)
    )
    if not valid:
        raise ObjectError("InvalidBucketName", "The specified bucket is not valid.", BucketName=bucket)
    return bucket


def key_segments(key: str) -> list[str]:
    """The key's path segments; refuses keys that cannot be stored as a file inside the bucket."""
    if not key:
        raise ObjectError("InvalidArgument", "Object key must not be empty.", ArgumentName="key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ObjectError("KeyTooLongError", "Your key is too long.")
    segments = key.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or "\0" in segment or len(segment.encode()) > _MAX_SEGMENT_BYTES:
            raise ObjectError(
                "InvalidArgument",
                f"Object key {key!r} is not supported by the local backend: keys are stored as files, so "
                "empty, '.' and '..' path segments, NUL characters and segments over 255 bytes are refused.",
                ArgumentName="key",
                ArgumentValue=key,
            )
    return segments


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix); the prefix may be empty."""
    if not uri.startswith("s3://"):
        raise ObjectError("InvalidArgument", f"{uri!r} is not an s3:// URI.")
    bucket, _, prefix = uri[5:].partition("/")
    return check_bucket_name(bucket), prefix


class ObjectStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    # --- buckets ---

    def bucket_dir(self, bucket: str) -> Path:
        return self.layout.s3 / check_bucket_name(bucket)

    def bucket_exists(self, bucket: str) -> bool:
        return self.bucket_dir(bucket).is_dir()

    def require_bucket(self, bucket: str) -> Path:
        path = self.bucket_dir(bucket)
        if not path.is_dir():
            raise ObjectError("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=bucket)
        return path

    def create_bucket(self, bucket: str, region: str) -> bool:
        """True when created, False when it already existed."""
        path = self.bucket_dir(bucket)
        if path.is_dir():
            return False
        atomic_write_json(self._meta_root(bucket) / _BUCKET_META, {"region": region, "created": time.time()})
        path.mkdir(parents=True, exist_ok=True)
        return True

    def bucket_info(self, bucket: str) -> dict[str, Any]:
        self.require_bucket(bucket)
        info = read_json(self._meta_root(bucket) / _BUCKET_META)
        return info if isinstance(info, dict) else {"region": "us-east-1", "created": 0.0}

    def list_buckets(self) -> list[str]:
        if not self.layout.s3.is_dir():
            return []
        return sorted(p.name for p in self.layout.s3.iterdir() if p.is_dir())

    def delete_bucket(self, bucket: str) -> None:
        path = self.require_bucket(bucket)
        if any(path.iterdir()):
            raise ObjectError("BucketNotEmpty", "The bucket you tried to delete is not empty", 409, BucketName=bucket)
        path.rmdir()
        shutil.rmtree(self._meta_root(bucket), ignore_errors=True)

    # --- objects ---

    def object_path(self, bucket: str, key: str) -> Path:
        root = self.bucket_dir(bucket)
        path = root.joinpath(*key_segments(key))
        # Belt and braces: even a symbolic link planted in the tree cannot lead outside the bucket.
        if not os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
            raise ObjectError("InvalidArgument", f"Object key {key!r} leaves its bucket.", ArgumentName="key")
        return path

    def _meta_root(self, bucket: str) -> Path:
        return self.layout.s3_meta / check_bucket_name(bucket)

    def _meta_path(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self._meta_root(bucket) / digest[:2] / f"{digest}.json"

    def head(self, bucket: str, key: str) -> ObjectInfo:
        self.require_bucket(bucket)
        path = self.object_path(bucket, key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            stat = None
        if stat is None or not path.is_file():
            raise ObjectError("NoSuchKey", "The specified key does not exist.", 404, Key=key)
        return self._info(bucket, key, stat)

    def _info(self, bucket: str, key: str, stat: os.stat_result) -> ObjectInfo:
        meta = read_json(self._meta_path(bucket, key))
        # A sidecar describes the object only if it was written for this very file (size and mtime
        # match); otherwise (a file copied in by hand, a crash between the two writes) derive an ETag.
        if isinstance(meta, dict) and meta.get("size") == stat.st_size and meta.get("mtime_ns") == stat.st_mtime_ns:
            return ObjectInfo(
                key, stat.st_size, stat.st_mtime, meta["etag"], meta.get("content_type") or "binary/octet-stream",
                dict(meta.get("metadata") or {}),
            )
        etag = hashlib.md5(f"{stat.st_size}:{stat.st_mtime_ns}".encode(), usedforsecurity=False).hexdigest()
        return ObjectInfo(key, stat.st_size, stat.st_mtime, f'"{etag}"')

    def commit(
        self,
        bucket: str,
        key: str,
        tmp_file: Path,
        *,
        etag: str,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Move a fully written temporary file in as the object `key`."""
        self.require_bucket(bucket)
        path = self.object_path(bucket, key)
        self._make_parents(bucket, key, path)
        if path.is_dir():
            raise self._conflict(key, "a folder of other keys")
        os.replace(tmp_file, path)
        stat = path.stat()
        atomic_write_json(
            self._meta_path(bucket, key),
            {
                "key": key,
                "etag": etag,
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "content_type": content_type,
                "metadata": dict(metadata or {}),
            },
        )
        return ObjectInfo(key, stat.st_size, stat.st_mtime, etag, content_type or "binary/octet-stream",
                          dict(metadata or {}))

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Store a small object in one go (the workers use this for artifacts)."""
        tmp = self.new_tmp_file()
        tmp.write_bytes(data)
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        try:
            return self.commit(bucket, key, tmp, etag=etag, content_type=content_type)
        finally:
            tmp.unlink(missing_ok=True)

    def new_tmp_file(self) -> Path:
        self.layout.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.layout.tmp, prefix="obj-")
        os.close(fd)
        return Path(name)

    def _make_parents(self, bucket: str, key: str, path: Path) -> None:
        root = self.bucket_dir(bucket)
        parent = root
        for segment in path.relative_to(root).parts[:-1]:
            parent = parent / segment
            if parent.is_file():
                raise self._conflict(key, f"the object {str(parent.relative_to(root))!r}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise self._conflict(key, "an existing object") from exc

    @staticmethod
    def _conflict(key: str, what: str) -> ObjectError:
        return ObjectError(
            "InvalidArgument",
            f"Object key {key!r} conflicts with {what}: the local backend stores keys as files, so a key "
            "cannot be both an object and a prefix of other keys.",
            ArgumentName="key",
            ArgumentValue=key,
        )

    def delete(self, bucket: str, key: str) -> None:
        """Delete if present (S3 answers 204 either way) and prune folders left empty."""
        root = self.require_bucket(bucket)
        path = self.object_path(bucket, key)
        if path.is_file():
            path.unlink()
        self._meta_path(bucket, key).unlink(missing_ok=True)
        parent = path.parent
        while parent != root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """All keys starting with `prefix`, in S3's order (UTF-8 bytes, which is code point order)."""
        root = self.require_bucket(bucket)
        folder, _, _ = prefix.rpartition("/")
        start = root
        if folder:
            try:
                start = root.joinpath(*key_segments(folder))
            except ObjectError:
                return []  # no stored key can contain such a segment
        if not start.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(start):
            relative = Path(dirpath).relative_to(root).as_posix()
            base = "" if relative == "." else relative + "/"
            keys.extend(base + name for name in filenames if (base + name).startswith(prefix))
        keys.sort()
        return keys

    def info(self, bucket: str, key: str) -> ObjectInfo | None:
        """Like head(), but None for a key that vanished meanwhile (listing races deletes)."""
        try:
            return self._info(bucket, key, self.object_path(bucket, key).stat())
        except (FileNotFoundError, NotADirectoryError, ObjectError):
            return None
