"""S3's REST/XML API (path-style) over `objects.ObjectStore`.

Bodies are streamed to a temporary file (hashing as they come, off the event loop), so objects and
parts up to 5 GiB never sit in memory. The subset is what boto3's `upload_file`, `download_file`,
`put_object`, `get_object`, `list_objects(_v2)` and friends need; any other operation is answered
with S3's own `NotImplemented` error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import shutil
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from aiohttp import web

from jobman.backends.local import s3_checks, wire
from jobman.backends.local.objects import ObjectError, ObjectInfo, ObjectStore
from jobman.backends.local.store import Layout, atomic_write_json, read_json
from jobman.backends.local.wire import S3_XMLNS, AwsError, XmlNode

MAX_OBJECT_BYTES = 5 << 30
MIN_PART_BYTES = 5 << 20
MAX_PARTS = 10_000
_XML_LIMIT = 1 << 20
_CHUNK = 1 << 20
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_LIST_PARAMS = frozenset({
    "list-type", "prefix", "delimiter", "marker", "max-keys", "encoding-type", "continuation-token",
    "start-after", "fetch-owner", "x-id",
})
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# The model's operation each object handler serves (GET and HEAD share `_get_object`).
_OBJECT_OPERATIONS = {
    "_upload_part": "UploadPart", "_copy_object": "CopyObject", "_put_object": "PutObject",
    "_get_object": "GetObject", "_abort_upload": "AbortMultipartUpload", "_delete_object": "DeleteObject",
    "_create_upload": "CreateMultipartUpload", "_complete_upload": "CompleteMultipartUpload",
}


def _err(exc: ObjectError) -> AwsError:
    return AwsError(exc.code, exc.message, exc.status, fields=exc.fields)


class S3Api:
    def __init__(self, layout: Layout, objects: ObjectStore) -> None:
        self.layout = layout
        self.objects = objects

    async def handle(self, request: web.Request, scope: wire.Scope) -> web.StreamResponse:
        bucket, key = split_path(request.raw_path)
        head = request.method == "HEAD"
        try:
            try:
                return await self._route(request, scope, bucket, key)
            except ObjectError as exc:
                raise _err(exc) from exc
        except AwsError as exc:
            return wire.s3_error(exc, resource="/" + "/".join(filter(None, (bucket, key))), head=head)

    async def _route(self, request: web.Request, scope: wire.Scope, bucket: str, key: str) -> web.StreamResponse:
        method, query = request.method, request.rel_url.query
        if not bucket:
            if method == "GET":
                return self._list_buckets()
            raise AwsError("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)
        if not key:
            return await self._bucket_op(request, scope, method, bucket, query)
        handler = self._object_handler(method, query, request)
        operation = "HeadObject" if method == "HEAD" else _OBJECT_OPERATIONS[handler.__name__]
        s3_checks.check(operation, {"Bucket": bucket, "Key": key}, query, request.headers)
        return await handler(request, bucket, key)

    # --- buckets ---

    async def _bucket_op(
        self, request: web.Request, scope: wire.Scope, method: str, bucket: str, query: Any
    ) -> web.StreamResponse:
        s3_checks.check(_bucket_operation(method, query), {"Bucket": bucket}, query, request.headers)
        if method == "PUT" and not query:
            return await self._create_bucket(request, scope, bucket)
        if method == "HEAD" and not query:
            info = self.objects.bucket_info(bucket)
            headers = {"x-amz-bucket-region": info["region"], "x-amz-request-id": wire.request_id()}
            return web.Response(headers=headers)
        if method == "DELETE" and not query:
            self.objects.delete_bucket(bucket)
            return web.Response(status=204)
        if method == "GET" and "location" in query:
            region = self.objects.bucket_info(bucket)["region"]
            text = "" if region == "us-east-1" else region  # S3 reports us-east-1 as no constraint
            body = f'<LocationConstraint xmlns="{S3_XMLNS}">{text}</LocationConstraint>'
            return wire.xml_response(b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode())
        if method == "GET" and set(query) <= _LIST_PARAMS:
            return self._list_objects(bucket, query)
        if method == "POST" and "delete" in query:
            return await self._delete_objects(request, bucket)
        raise _not_implemented(method, query)

    async def _create_bucket(self, request: web.Request, scope: wire.Scope, bucket: str) -> web.Response:
        raw = await wire.read_body(request, _XML_LIMIT, AwsError("MaxMessageLengthExceeded", "Request too large."))
        region = scope.region
        if raw.strip():
            found = wire.parse_xml(raw).findtext("LocationConstraint")
            region = found or region
        wire.check_region(region)
        if not self.objects.create_bucket(bucket, region) and scope.region != "us-east-1":
            # us-east-1 answers 200 again for a bucket you own (legacy behaviour); other regions refuse.
            raise AwsError(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
                409,
                fields={"BucketName": bucket},
            )
        return web.Response(headers={"Location": f"/{bucket}", "x-amz-request-id": wire.request_id()})

    def _list_buckets(self) -> web.Response:
        buckets = XmlNode()
        for name in self.objects.list_buckets():
            created = float(self.objects.bucket_info(name).get("created") or 0.0)
            buckets.add("Bucket", XmlNode().add("Name", name).add("CreationDate", wire.iso8601(created)))
        owner = XmlNode().add("ID", wire.ACCOUNT_ID).add("DisplayName", "jobman-local")
        body = wire.to_xml("ListAllMyBucketsResult", XmlNode().add("Owner", owner).add("Buckets", buckets),
                           xmlns=S3_XMLNS)
        return wire.xml_response(body)

    def _list_objects(self, bucket: str, query: Any) -> web.Response:
        v2 = query.get("list-type") == "2"
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        url = query.get("encoding-type") == "url"
        max_keys = _int_param(query.get("max-keys", "1000"), "max-keys")
        if v2:
            token = query.get("continuation-token")
            marker = max(_decode_token(token) if token else "", query.get("start-after", ""))
        else:
            marker = query.get("marker", "")
        page = list_page(self.objects.list_keys(bucket, prefix), prefix, delimiter, marker, min(max_keys, 1000))
        enc = (lambda s: quote_plus(s, safe="/")) if url else (lambda s: s)
        node = XmlNode().add("Name", bucket).add("Prefix", enc(prefix))
        if v2:
            node.add("KeyCount", len(page.keys) + len(page.prefixes))
            node.add("ContinuationToken", query.get("continuation-token"))
            node.add("StartAfter", enc(query["start-after"]) if "start-after" in query else None)
        else:
            node.add("Marker", enc(marker))
        node.add("MaxKeys", max_keys).add("Delimiter", enc(delimiter) if delimiter else None)
        node.add("EncodingType", "url" if url else None).add("IsTruncated", page.truncated)
        if page.truncated and page.last is not None:
            if v2:
                node.add("NextContinuationToken", _encode_token(page.last))
            elif delimiter:
                node.add("NextMarker", enc(page.last))
        for key in page.keys:
            info = self.objects.info(bucket, key)
            if info is not None:
                node.add("Contents", _contents(info, enc))
        for common in page.prefixes:
            node.add("CommonPrefixes", XmlNode().add("Prefix", enc(common)))
        return wire.xml_response(wire.to_xml("ListBucketResult", node, xmlns=S3_XMLNS))

    async def _delete_objects(self, request: web.Request, bucket: str) -> web.Response:
        self.objects.require_bucket(bucket)
        raw = await wire.read_body(request, _XML_LIMIT, AwsError("MaxMessageLengthExceeded", "Request too large."))
        document = wire.parse_xml(raw)
        quiet = (document.findtext("Quiet") or "").lower() == "true"
        result = XmlNode()
        for element in document.findall("Object"):
            key = element.findtext("Key") or ""
            try:
                self.objects.delete(bucket, key)
            except ObjectError as exc:
                result.add("Error", XmlNode().add("Key", key).add("Code", exc.code).add("Message", exc.message))
                continue
            if not quiet:
                result.add("Deleted", XmlNode().add("Key", key))
        return wire.xml_response(wire.to_xml("DeleteResult", result, xmlns=S3_XMLNS))

    # --- objects ---

    def _object_handler(
        self, method: str, query: Any, request: web.Request
    ) -> Callable[[web.Request, str, str], Any]:
        if method == "PUT" and "partNumber" in query and "uploadId" in query:
            return self._upload_part
        if method == "PUT" and not query and "x-amz-copy-source" in request.headers:
            return self._copy_object
        if method == "PUT" and _plain(query):
            return self._put_object
        if method in ("GET", "HEAD") and _plain(query):
            return self._get_object
        if method == "DELETE" and "uploadId" in query:
            return self._abort_upload
        if method == "DELETE" and _plain(query):
            return self._delete_object
        if method == "POST" and "uploads" in query:
            return self._create_upload
        if method == "POST" and "uploadId" in query:
            return self._complete_upload
        raise _not_implemented(method, query)

    async def _put_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        self.objects.require_bucket(bucket)
        self.objects.object_path(bucket, key)  # refuse a bad key before reading a byte
        tmp = self.objects.new_tmp_file()
        try:
            digest, _size = await receive_body(request, tmp, MAX_OBJECT_BYTES)
            etag = f'"{digest.hex()}"'
            await asyncio.to_thread(
                self.objects.commit, bucket, key, tmp, etag=etag,
                content_type=request.headers.get("Content-Type"), metadata=_user_metadata(request),
            )
        finally:
            tmp.unlink(missing_ok=True)
        return web.Response(headers={"ETag": etag, "x-amz-request-id": wire.request_id()})

    async def _copy_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        source = unquote(request.headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        info = self.objects.head(src_bucket, src_key)
        self.objects.require_bucket(bucket)
        self.objects.object_path(bucket, key)
        replace = request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        content_type = request.headers.get("Content-Type") if replace else info.content_type
        metadata = _user_metadata(request) if replace else info.metadata
        tmp = self.objects.new_tmp_file()
        try:
            await asyncio.to_thread(shutil.copyfile, self.objects.object_path(src_bucket, src_key), tmp)
            done = await asyncio.to_thread(
                self.objects.commit, bucket, key, tmp, etag=info.etag, content_type=content_type, metadata=metadata
            )
        finally:
            tmp.unlink(missing_ok=True)
        node = XmlNode().add("LastModified", wire.iso8601(done.last_modified)).add("ETag", done.etag)
        return wire.xml_response(wire.to_xml("CopyObjectResult", node, xmlns=S3_XMLNS))

    async def _get_object(self, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
        info = self.objects.head(bucket, key)
        path = self.objects.object_path(bucket, key)
        _check_conditions(request, info)
        headers = _object_headers(info)
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(info.size)})
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            start, end = _byte_range(request.headers.get("Range"), info.size)
            status = 200
            if (start, end) != (0, info.size - 1) and "Range" in request.headers:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
            response = web.StreamResponse(status=status, headers=headers)
            response.content_length = max(0, end - start + 1)
            await response.prepare(request)
            await asyncio.to_thread(handle.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = await asyncio.to_thread(handle.read, min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            handle.close()

    async def _delete_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        self.objects.delete(bucket, key)
        return web.Response(status=204, headers={"x-amz-request-id": wire.request_id()})

    # --- multipart uploads ---

    def _upload_dir(self, upload_id: str, bucket: str, key: str) -> tuple[Path, dict[str, Any]]:
        folder = self.layout.uploads / upload_id if _UPLOAD_ID.match(upload_id) else None
        meta = read_json(folder / "upload.json") if folder else None
        if folder is None or not isinstance(meta, dict) or (meta["bucket"], meta["key"]) != (bucket, key):
            raise AwsError(
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have "
                "been aborted or completed.",
                404,
                fields={"UploadId": upload_id},
            )
        return folder, meta

    async def _create_upload(self, request: web.Request, bucket: str, key: str) -> web.Response:
        self.objects.require_bucket(bucket)
        self.objects.object_path(bucket, key)
        upload_id = uuid.uuid4().hex
        atomic_write_json(
            self.layout.uploads / upload_id / "upload.json",
            {
                "bucket": bucket, "key": key, "initiated": wire.now(),
                "content_type": request.headers.get("Content-Type"), "metadata": _user_metadata(request),
            },
        )
        node = XmlNode().add("Bucket", bucket).add("Key", key).add("UploadId", upload_id)
        return wire.xml_response(wire.to_xml("InitiateMultipartUploadResult", node, xmlns=S3_XMLNS))

    async def _upload_part(self, request: web.Request, bucket: str, key: str) -> web.Response:
        query = request.rel_url.query
        folder, _ = self._upload_dir(query["uploadId"], bucket, key)
        number = _int_param(query["partNumber"], "partNumber")
        if not 1 <= number <= MAX_PARTS:
            raise AwsError("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                           fields={"ArgumentName": "partNumber", "ArgumentValue": query["partNumber"]})
        tmp = self.objects.new_tmp_file()
        try:
            digest, size = await receive_body(request, tmp, MAX_OBJECT_BYTES)
            etag = f'"{digest.hex()}"'
            await asyncio.to_thread(tmp.replace, folder / f"{number}.part")
            atomic_write_json(folder / f"{number}.json", {"etag": etag, "size": size})
        finally:
            tmp.unlink(missing_ok=True)
        return web.Response(headers={"ETag": etag, "x-amz-request-id": wire.request_id()})

    async def _complete_upload(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload_id = request.rel_url.query["uploadId"]
        folder, meta = self._upload_dir(upload_id, bucket, key)
        raw = await wire.read_body(request, _XML_LIMIT, AwsError("MaxMessageLengthExceeded", "Request too large."))
        parts = _requested_parts(wire.parse_xml(raw))
        files, digests = self._checked_parts(folder, parts)
        tmp = self.objects.new_tmp_file()
        try:
            await asyncio.to_thread(_concatenate, files, tmp)
            etag = '"' + hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f'-{len(parts)}"'
            await asyncio.to_thread(
                self.objects.commit, bucket, key, tmp, etag=etag,
                content_type=meta.get("content_type"), metadata=meta.get("metadata"),
            )
        finally:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        node = (
            XmlNode().add("Location", f"/{bucket}/{quote(key)}").add("Bucket", bucket).add("Key", key).add("ETag", etag)
        )
        return wire.xml_response(wire.to_xml("CompleteMultipartUploadResult", node, xmlns=S3_XMLNS))

    def _checked_parts(self, folder: Path, parts: list[tuple[int, str]]) -> tuple[list[Path], list[bytes]]:
        if not parts:
            raise AwsError("MalformedXML", "The XML you provided was not well-formed or did not validate.")
        numbers = [number for number, _ in parts]
        if numbers != sorted(set(numbers)):
            raise AwsError("InvalidPartOrder", "The list of parts was not in ascending order.")
        files, digests = [], []
        for index, (number, etag) in enumerate(parts):
            stored = read_json(folder / f"{number}.json")
            if not isinstance(stored, dict) or stored["etag"].strip('"') != etag.strip('"'):
                raise AwsError(
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part may not have been "
                    "uploaded, or the specified entity tag may not match the part's entity tag.",
                    fields={"PartNumber": number, "ETag": etag},
                )
            if index < len(parts) - 1 and stored["size"] < MIN_PART_BYTES:
                raise AwsError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size",
                               fields={"PartNumber": number, "MinSizeAllowed": MIN_PART_BYTES})
            files.append(folder / f"{number}.part")
            digests.append(bytes.fromhex(stored["etag"].strip('"')))
        return files, digests

    async def _abort_upload(self, request: web.Request, bucket: str, key: str) -> web.Response:
        folder, _ = self._upload_dir(request.rel_url.query["uploadId"], bucket, key)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return web.Response(status=204)


# --- helpers (module level so unit tests reach them) ---


def split_path(raw_path: str) -> tuple[str, str]:
    """Path-style `/bucket/key` from the raw (still percent-encoded) path; the key keeps every byte."""
    path = raw_path.split("?", 1)[0]
    bucket, _, key = path.lstrip("/").partition("/") if path.startswith("/") else ("", "", "")
    return unquote(bucket), unquote(key)


class ListPage:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.prefixes: list[str] = []
        self.truncated = False
        self.last: str | None = None


def list_page(keys: list[str], prefix: str, delimiter: str, marker: str, max_keys: int) -> ListPage:
    """One page of a listing: keys after `marker`, rolled up into common prefixes at `delimiter`.

    A common prefix counts as one entry and, once returned, none of its keys is returned again.
    """
    page = ListPage()
    for key in keys:
        if key <= marker or not key.startswith(prefix):
            continue
        entry = key
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                entry = key[: cut + len(delimiter)]
                if entry <= marker or (page.prefixes and page.prefixes[-1] == entry):
                    continue
        if len(page.keys) + len(page.prefixes) >= max_keys:
            page.truncated = True
            break
        (page.prefixes if entry != key else page.keys).append(entry)
        page.last = entry
    return page


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error) as exc:
        raise AwsError("InvalidArgument", "The continuation token provided is incorrect",
                       fields={"ArgumentName": "continuation-token"}) from exc


def _int_param(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise AwsError("InvalidArgument", f"Provided {name} not an integer or within integer range",
                       fields={"ArgumentName": name, "ArgumentValue": value}) from exc
    if number < 0:
        raise AwsError("InvalidArgument", f"Argument {name} must be an integer between 0 and 2147483647",
                       fields={"ArgumentName": name, "ArgumentValue": value})
    return number


def _bucket_operation(method: str, query: Any) -> str:
    """The model's operation a bucket-level request asks for, as `_bucket_op` routes it."""
    if method == "GET" and "location" in query:
        return "GetBucketLocation"
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
    if method == "POST":
        return "DeleteObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, "HeadBucket")


def _plain(query: Any) -> bool:
    return not query or set(query) <= {"x-id", "versionId"}


def _not_implemented(method: str, query: Any) -> AwsError:
    what = ", ".join(sorted(query)) or "this request"
    return AwsError("NotImplemented", f"The local backend does not implement {method} with {what}.", 501)


def _contents(info: ObjectInfo, enc: Callable[[str], str]) -> XmlNode:
    return (
        XmlNode()
        .add("Key", enc(info.key))
        .add("LastModified", wire.iso8601(info.last_modified))
        .add("ETag", info.etag)
        .add("Size", info.size)
        .add("StorageClass", "STANDARD")
    )


def _user_metadata(request: web.Request) -> dict[str, str]:
    return {k.lower()[11:]: v for k, v in request.headers.items() if k.lower().startswith("x-amz-meta-")}


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "ETag": info.etag,
        "Last-Modified": wire.http_date(info.last_modified),
        "Content-Type": info.content_type,
        "Accept-Ranges": "bytes",
        "x-amz-request-id": wire.request_id(),
    }
    headers.update({f"x-amz-meta-{k}": v for k, v in info.metadata.items()})
    return headers


def _check_conditions(request: web.Request, info: ObjectInfo) -> None:
    if_match = request.headers.get("If-Match")
    if if_match and if_match.strip() not in ("*", info.etag) and f'"{if_match.strip()}"' != info.etag:
        raise AwsError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412,
                       fields={"Condition": "If-Match"})
    if_none = request.headers.get("If-None-Match")
    if if_none and if_none.strip() in ("*", info.etag):
        raise AwsError("NotModified", "Not Modified", 304)


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """Inclusive (start, end) for a single `bytes=` range; S3 ignores what it cannot parse."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return 0, size - 1
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        raise AwsError("InvalidRange", "The requested range is not satisfiable", 416,
                       fields={"RangeRequested": header, "ActualObjectSize": size})
    return start, end


def _requested_parts(document: Any) -> list[tuple[int, str]]:
    parts = []
    for element in document.findall("Part"):
        number, etag = element.findtext("PartNumber"), element.findtext("ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise AwsError("MalformedXML", "The XML you provided was not well-formed or did not validate.")
        parts.append((int(number), etag.strip()))
    return parts


def _concatenate(files: list[Path], target: Path) -> None:
    with target.open("wb") as out:
        for path in files:
            with path.open("rb") as part:
                shutil.copyfileobj(part, out, _CHUNK)


class _BodySink:
    """Writes a body to a file while computing MD5 (the ETag) and checking what the client declared."""

    def __init__(self, path: Path, headers: Any) -> None:
        self.handle = path.open("wb")
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.crc32 = 0
        self.want_md5 = headers.get("Content-MD5")
        self.want_crc32 = headers.get("x-amz-checksum-crc32")
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.md5.update(data)
        if self.want_crc32:
            self.crc32 = zlib.crc32(data, self.crc32)
        self.size += len(data)

    def finish(self) -> bytes:
        self.handle.close()
        digest = self.md5.digest()
        if self.want_md5 and self.want_md5.strip() != base64.b64encode(digest).decode():
            raise AwsError("BadDigest", "The Content-MD5 you specified did not match what we received.")
        if self.want_crc32 and self.want_crc32.strip() != base64.b64encode(self.crc32.to_bytes(4, "big")).decode():
            raise AwsError("BadDigest", "The CRC32 you specified did not match the calculated checksum.")
        return digest


async def receive_body(request: web.Request, path: Path, limit: int) -> tuple[bytes, int]:
    """Stream the request body into `path`; returns (MD5 digest, size). Disk and hashing run in a thread."""
    declared_text = request.headers.get("x-amz-decoded-content-length")
    if declared_text is not None and not (declared_text.strip().isascii() and declared_text.strip().isdigit()
                                          and len(declared_text.strip()) <= 20):
        raise AwsError("InvalidArgument", "x-amz-decoded-content-length must be a non-negative integer.",
                       fields={"ArgumentName": "x-amz-decoded-content-length", "ArgumentValue": declared_text[:256]})
    declared = int(declared_text) if declared_text is not None else request.content_length
    if declared is None and request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        raise AwsError("MissingContentLength", "You must provide the Content-Length HTTP header.", 411)
    if declared is not None and int(declared) > limit:
        raise AwsError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400,
                       fields={"ProposedSize": declared, "MaxSizeAllowed": limit})
    sink = await asyncio.to_thread(_BodySink, path, request.headers)
    try:
        pending: list[bytes] = []
        buffered = 0
        async for chunk in _body_chunks(request):
            pending.append(chunk)
            buffered += len(chunk)
            if sink.size + buffered > limit:
                raise AwsError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
            if buffered >= _CHUNK:  # hand the disk write and hashing to a thread in 1 MiB batches
                await asyncio.to_thread(sink.write, b"".join(pending))
                pending, buffered = [], 0
        if pending:
            await asyncio.to_thread(sink.write, b"".join(pending))
        if declared is not None and sink.size != int(declared):
            raise AwsError("IncompleteBody", "You did not provide the number of bytes specified by the "
                           "Content-Length HTTP header.")
        return await asyncio.to_thread(sink.finish), sink.size
    finally:
        sink.handle.close()


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The payload, decoding SigV4 streaming (`aws-chunked`) bodies that some SDKs send over HTTP."""
    encoding = request.headers.get("Content-Encoding", "")
    streaming = request.headers.get("x-amz-content-sha256", "").startswith("STREAMING-")
    if "aws-chunked" not in encoding and not streaming:
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk
        return
    content = request.content
    while True:
        line = await content.readline()
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise AwsError("IncompleteBody", "The aws-chunked body is malformed.") from exc
        if size == 0:
            await content.read()  # trailing headers (checksums) and the final CRLF
            return
        yield await content.readexactly(size)
        await content.readexactly(2)
