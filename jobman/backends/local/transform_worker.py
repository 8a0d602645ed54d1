"""One Batch Transform job, run as a detached process: `python -m jobman.backends.local.transform_worker ...`.

It does what SageMaker's transform agent and the built-in XGBoost container do together: reads every
object under the input prefix from the emulated S3, splits it into records (SplitType Line, or the whole
object as one record), packs records into mini-batches of at most MaxPayloadInMB (MultiRecord) or one
each (SingleRecord), scores them with the endpoint's own code (`scoring.Model`) in MaxConcurrentTransforms
threads (pandas' parser and xgboost's predict release the GIL), and writes `<object>.out` under
S3OutputPath in input order, atomically: a whole object or none. SIGTERM (StopTransformJob) ends it as
Stopped; a bad record fails the job with a reason naming the object and line.

Mini-batches are cut from the raw bytes at newlines (no per-record Python work); with SingleRecord the
records are still scored in such batches, since each record's prediction does not depend on its
neighbours, and only the assembly of the answers differs.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import mmap
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobman.backends.local import arns, supervisor
from jobman.backends.local.logstore import TRANSFORM_GROUP, LogStore
from jobman.backends.local.objects import ObjectError, ObjectStore, parse_s3_uri
from jobman.backends.local.scoring import BadRequest, Model, format_predictions, load_container_model
from jobman.backends.local.store import Layout, RecordStore
from jobman.backends.local.transform_state import JobFiles, finish

MB = 1024 * 1024
CSV_TYPES = ("text/csv", "csv")
DEFAULT_TIMEOUT_S = 600
MAX_GUNZIPPED_BYTES = 2048 * MB


class ClientError(Exception):
    """The job's input or settings are at fault (SageMaker's "ClientError: ..." failure reasons)."""


class Interrupted(BaseException):
    """Raised from the SIGTERM handler; BaseException so that no `except Exception` swallows it."""


@dataclass(frozen=True)
class Batch:
    data: bytes
    first_line: int  # 1-based line number, in its object, of the batch's first record
    records: int


@dataclass(frozen=True)
class Settings:
    split_lines: bool
    single_record: bool
    assemble_lines: bool
    payload_bytes: int
    concurrency: int
    timeout_s: float
    gzip: bool


def settings_of(record: dict[str, Any]) -> Settings:
    """The job's effective settings; what the local backend cannot do fails the job as a ClientError."""
    transform_input = record.get("TransformInput") or {}
    output = record.get("TransformOutput") or {}
    split = transform_input.get("SplitType") or "None"
    if split not in ("Line", "None"):
        raise ClientError(f"SplitType {split} is not supported by the local backend (use Line or None)")
    content_type = (transform_input.get("ContentType") or "text/csv").split(";")[0].strip().lower()
    if content_type not in CSV_TYPES:
        raise ClientError(f"Content type {transform_input.get('ContentType')} is not supported by the local "
                          "backend's XGBoost container (use text/csv)")
    accept = (output.get("Accept") or "text/csv").split(";")[0].strip().lower()
    if accept not in CSV_TYPES:
        raise ClientError(f"Accept {output.get('Accept')} is not supported by the local backend (use text/csv)")
    timeout = (record.get("ModelClientConfig") or {}).get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT_S)
    return Settings(
        split_lines=split == "Line",
        single_record=record.get("BatchStrategy", "SingleRecord") == "SingleRecord",
        assemble_lines=output.get("AssembleWith") == "Line",
        payload_bytes=int(record.get("MaxPayloadInMB", 6)) * MB,
        concurrency=max(1, int(record.get("MaxConcurrentTransforms", 1))),
        timeout_s=float(timeout),
        gzip=transform_input.get("CompressionType") == "Gzip",
    )


def batches(data: Any, limit: int, split_lines: bool, where: str) -> Iterator[Batch]:
    """Mini-batches of whole lines, each at most `limit` bytes (newlines included), cut where the bytes are.

    `data` is bytes or an mmap; trailing line breaks end the last record, they do not make an empty one."""
    end = len(data)
    while end > 0 and data[end - 1] in (10, 13):
        end -= 1
    if not split_lines:
        if end > limit:
            raise ClientError(f"{where}: the object is {end} bytes, over MaxPayloadInMB ({limit // MB} MB), "
                              "and SplitType None makes it one record")
        if end:
            yield Batch(bytes(data[:end]), 1, 1)
        return
    pos, line = 0, 1
    while pos < end:
        cut = end
        if end - pos > limit:
            newline = data.rfind(b"\n", pos, pos + limit)
            if newline < 0:
                raise ClientError(f"{where} line {line}: the record is longer than MaxPayloadInMB "
                                  f"({limit // MB} MB)")
            cut = newline
        chunk = bytes(data[pos:cut])
        records = chunk.count(b"\n") + 1
        yield Batch(chunk, line, records)
        pos, line = cut + 1, line + records


def find_bad_line(batch: Batch, num_features: int) -> str:
    """Why the batch failed, naming its first bad line (the slow path, run only after a failure)."""
    for offset, raw in enumerate(batch.data.split(b"\n")):
        line = batch.first_line + offset
        text = raw.rstrip(b"\r")
        if not text.strip():
            return f"line {line}: the record is empty"
        fields = text.split(b",")
        for field in fields:
            value = field.strip()
            if value:
                try:
                    float(value)
                except ValueError:
                    shown = value[:40].decode("utf-8", "replace")
                    return f"line {line}: {shown!r} is not a number (send features only, no header)"
        if len(fields) != num_features:
            return f"line {line}: {len(fields)} columns, the model expects {num_features}"
    return f"lines {batch.first_line}-{batch.first_line + batch.records - 1}: not CSV of numbers"


def score(model: Model, batch: Batch, settings: Settings) -> bytes:
    """The batch's answer as it goes into the output: one response, or one per record (SingleRecord)."""
    try:
        features = model.parse_csv(batch.data)
    except BadRequest as exc:
        raise ClientError(f"{find_bad_line(batch, model.num_features)} ({exc})") from exc
    if settings.split_lines and len(features) != batch.records:  # pandas skips blank lines
        raise ClientError(find_bad_line(batch, model.num_features))
    predictions = model.predict(features)
    if settings.assemble_lines:
        return format_predictions(predictions) + b"\n"
    if settings.single_record:  # responses concatenated as they are, as SageMaker assembles with None
        return b"".join(format_predictions(predictions[i:i + 1]) for i in range(len(predictions)))
    return format_predictions(predictions)


class TransformRun:
    def __init__(self, layout: Layout, region: str, name: str) -> None:
        record = RecordStore(layout.resources(region, arns.TRANSFORM_JOB)).get(name)
        if record is None:
            raise SystemExit(f"no transform job record for {name!r} in {region}")
        self.record: dict[str, Any] = record
        self.name = record["TransformJobName"]
        self.files = JobFiles(layout.transform_dir(region, name))
        self.objects = ObjectStore(layout)
        self.logs = LogStore(layout.logs / region)
        self.status = self.files.read_status() or {}
        self.stream = f"{self.name}/i-{secrets.token_hex(9)[:17]}-{int(time.time())}"
        self.executor: ThreadPoolExecutor | None = None
        self.tmp: Path | None = None

    def log(self, *lines: str, data_log: bool = False) -> None:
        self.logs.append(TRANSFORM_GROUP, self.stream + ("/data-log" if data_log else ""), list(lines))
        for line in lines:
            print(line, flush=True)

    def finish(self, primary: str, reason: str | None = None) -> None:
        finish(self.status, primary, round(time.time(), 3), reason)
        self.files.write_status(self.status)

    # --- the job ---

    def run(self) -> None:
        self.logs.create_stream(TRANSFORM_GROUP, self.stream)
        self.status["TransformStartTime"] = round(time.time(), 3)
        self.files.write_status(self.status)
        if self.files.stop_request():  # stopped before this process got going
            raise Interrupted
        settings = settings_of(self.record)
        container = self.record.get("Container") or {}
        try:
            model = load_container_model(self.objects, container.get("Image") or "", container.get("ModelDataUrl"))
        except RuntimeError as exc:
            raise ClientError(str(exc)) from exc
        self.log(f"Loaded model from {container.get('ModelDataUrl')} ({model.num_features} features); "
                 f"{settings.concurrency} concurrent transforms, payloads up to {settings.payload_bytes // MB} MB")
        strategy = "SINGLE_RECORD" if settings.single_record else "MULTI_RECORD"
        self.log(f"[sagemaker logs]: MaxConcurrentTransforms={settings.concurrency}, "
                 f"MaxPayloadInMB={settings.payload_bytes // MB}, BatchStrategy={strategy}", data_log=True)
        inputs = self._inputs()
        self.executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="transform")
        total = 0
        for bucket, key, relative in inputs:
            total += self._transform_object(model, settings, bucket, key, relative)
        self.finish("Completed")
        self.log(f"Transform job completed: {len(inputs)} objects, {total} records")

    def _inputs(self) -> list[tuple[str, str, str]]:
        """(bucket, key, name relative to the prefix's folder) of every object to transform."""
        source = ((self.record.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
        uri = source.get("S3Uri", "")
        if source.get("S3DataType") != "S3Prefix":
            raise ClientError(f"S3DataType {source.get('S3DataType')} is not supported by the local backend "
                              "(use S3Prefix)")
        try:
            bucket, prefix = parse_s3_uri(uri)
            keys = self.objects.list_keys(bucket, prefix)
        except ObjectError as exc:
            raise ClientError(f"Cannot read the input {uri}: {exc.message}") from exc
        keys = [k for k in keys if not k.endswith("/")]
        if not keys:
            raise ClientError(f"No objects found under the input {uri}")
        return [(bucket, key, output_name(prefix, key)) for key in keys]

    def _output_key(self, relative: str) -> tuple[str, str]:
        uri = (self.record.get("TransformOutput") or {}).get("S3OutputPath", "")
        try:
            bucket, prefix = parse_s3_uri(uri)
        except ObjectError as exc:
            raise ClientError(f"Cannot write the output {uri}: {exc.message}") from exc
        return bucket, "/".join(filter(None, (prefix.strip("/"), relative + ".out")))

    def _transform_object(self, model: Model, settings: Settings, bucket: str, key: str, relative: str) -> int:
        where = f"s3://{bucket}/{key}"
        out_bucket, out_key = self._output_key(relative)
        try:
            path = self.objects.object_path(bucket, key)
            handle = path.open("rb")
        except (ObjectError, OSError) as exc:
            raise ClientError(f"{where}: cannot read the object: {exc}") from exc
        self.tmp = self.objects.new_tmp_file()
        digest = hashlib.md5(usedforsecurity=False)
        records = 0
        with handle, self.tmp.open("wb") as out:
            data = _contents(handle, settings.gzip, where)
            try:
                for answer in self._scored(model, settings, batches(data, settings.payload_bytes,
                                                                    settings.split_lines, where), where):
                    out.write(answer[1])
                    digest.update(answer[1])
                    records += answer[0]
            finally:
                if isinstance(data, mmap.mmap):
                    data.close()
        try:
            self.objects.commit(out_bucket, out_key, self.tmp, etag=f'"{digest.hexdigest()}"',
                                content_type="text/csv")
        except ObjectError as exc:
            raise ClientError(f"Cannot write the output s3://{out_bucket}/{out_key}: {exc.message}") from exc
        self.tmp = None
        self.log(f"{where}: {records} records -> s3://{out_bucket}/{out_key}")
        return records

    def _scored(self, model: Model, settings: Settings, work: Iterator[Batch], where: str
                ) -> Iterator[tuple[int, bytes]]:
        """(records, answer) per batch in input order, with at most 2x concurrency batches in flight."""
        assert self.executor is not None
        pending: collections.deque[tuple[Batch, Future[bytes]]] = collections.deque()
        window = 2 * settings.concurrency
        for batch in work:
            pending.append((batch, self.executor.submit(score, model, batch, settings)))
            if len(pending) >= window:
                yield self._result(*pending.popleft(), settings, where)
        while pending:
            yield self._result(*pending.popleft(), settings, where)

    def _result(self, batch: Batch, future: Future[bytes], settings: Settings, where: str) -> tuple[int, bytes]:
        try:
            return batch.records, future.result(timeout=settings.timeout_s)
        except FutureTimeout:
            raise ClientError(f"{where} line {batch.first_line}: the model did not answer within "
                              f"InvocationsTimeoutInSeconds ({settings.timeout_s:g} s)") from None
        except ClientError as exc:
            raise ClientError(f"{where} {exc}") from exc

    def cleanup(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)  # an object is written whole or not at all


def output_name(prefix: str, key: str) -> str:
    """The input object's name under S3OutputPath: its key below the input prefix (`in/` + `sub/a.csv` ->
    `sub/a.csv`); below the prefix's folder when the prefix ends inside a name (`in/da` -> `data/a.csv`)."""
    rest = key[len(prefix):]
    if not prefix or prefix.endswith("/"):
        return rest
    if rest.startswith("/"):
        return rest[1:]
    folder = prefix.rpartition("/")[0]
    return key[len(folder) + 1:] if folder else key


def _contents(handle: Any, gzipped: bool, where: str) -> Any:
    """The object's bytes: mapped, not read, so a large object costs no memory of its own."""
    if gzipped:
        try:
            with gzip.GzipFile(fileobj=handle) as unzipped:
                data = unzipped.read(MAX_GUNZIPPED_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise ClientError(f"{where}: CompressionType is Gzip but the object cannot be decompressed: {exc}") from exc
        if len(data) > MAX_GUNZIPPED_BYTES:  # a small object must not unpack into all of the machine's memory
            raise ClientError(f"{where}: the object decompresses to over {MAX_GUNZIPPED_BYTES // MB} MB, more "
                              "than the local backend unpacks in memory")
        return data
    if Path(handle.name).stat().st_size == 0:
        return b""
    return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _interrupt(*_: Any) -> None:
    raise Interrupted


def main(argv: list[str] | None = None) -> int:
    job = supervisor.worker_start(argv, __doc__)
    run = TransformRun(Layout(job.root), job.region, job.name)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run.run()
    except Interrupted:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop must not cut the final write short
        run.cleanup()
        run.log("Transform job stopped")
        run.finish("Stopped")
        return 0
    except ClientError as exc:
        run.cleanup()
        reason = f"ClientError: {exc}"
        run.log(reason)
        run.log(f"[sagemaker logs]: {reason}", data_log=True)
        run.finish("Failed", reason)
        return 1
    except Exception as exc:  # a bug or the machine: report it, keep the traceback in the log
        traceback.print_exc()
        run.cleanup()
        reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
        run.log(reason)
        run.finish("Failed", reason)
        return 1
    finally:
        if run.executor is not None:
            run.executor.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
