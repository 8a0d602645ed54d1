"""Batch Transform as jobman runs it: the job's request, its input made ready, its output read back.

SageMaker writes one `<input object>.out` per input object under the output path; with `SplitType Line`
and `AssembleWith Line` it holds one prediction a line, in the input's order. jobman uploads one object,
so the output is one object, and its line count is checked against the rows sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from jobman.chunking import iter_chunks
from jobman.config import INVOKE_BODY_LIMIT
from jobman.errors import RunFailed
from jobman.invoker import split_prediction_body

INPUT_OBJECT = "input.csv"
COPY_CHUNK_BYTES = INVOKE_BODY_LIMIT  # only how much is read at once; any row up to SageMaker's limit passes


@dataclass(frozen=True)
class TransformPlace:
    """Where a transform job's input and output live in S3."""

    bucket: str
    prefix: str  # no trailing slash

    @property
    def input_key(self) -> str:
        return f"{self.prefix}/input/{INPUT_OBJECT}"

    @property
    def input_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/input/"

    @property
    def output_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/output"

    @property
    def output_key(self) -> str:
        return f"{self.prefix}/output/{INPUT_OBJECT}.out"


@dataclass(frozen=True)
class TransformSettings:
    instance_type: str
    instance_count: int
    max_concurrent: int
    max_payload_mb: int


def transform_request(
    name: str, model_name: str, place: TransformPlace, settings: TransformSettings, tags: list[dict[str, str]],
) -> dict[str, Any]:
    """CreateTransformJob's request: CSV lines in, packed into batches of at most MaxPayloadInMB, one
    prediction a line out, in order."""
    return {
        "TransformJobName": name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": settings.max_concurrent,
        "MaxPayloadInMB": settings.max_payload_mb,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": place.input_uri}},
            "ContentType": "text/csv",
            "CompressionType": "None",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": place.output_uri, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": settings.instance_type, "InstanceCount": settings.instance_count},
        "Tags": tags,
    }


def copy_rows(src: BinaryIO, dst: BinaryIO, *, header: bool, source: str) -> int:
    """Copy the data rows of a CSV (checked by the invoker's own rules: text, no blank line inside; the header
    dropped), each ending in a newline; return how many. What is uploaded is what is counted back."""
    rows = 0
    for chunk in iter_chunks(src, COPY_CHUNK_BYTES, header=header, source=source):
        dst.write(chunk.body)
        if not chunk.body.endswith(b"\n"):
            dst.write(b"\n")
        rows += chunk.rows
    return rows


def check_prediction_lines(path: Path, rows: int, what: str) -> None:
    """The output has one line a row sent, else the predictions would not line up with the rows."""
    with path.open("rb") as fh:
        lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
        fh.seek(max(0, path.stat().st_size - 1))
        if path.stat().st_size and fh.read(1) != b"\n":
            lines += 1  # an unterminated last line
    if lines != rows:
        raise RunFailed(f"{what}: {lines} predictions for {rows} rows sent")


def read_predictions(path: Path) -> list[float]:
    return [float(p) for p in split_prediction_body(path.read_bytes())]
