"""Benchmark a Batch Transform job against `jobman invoke` on the local backend, side by side in one run.

Both score the same generated CSV (default 1,000,000 rows of the Boston table's 13 features, resampled with
a 2% jitter from a fixed seed, as bench/invoke.py makes it) with the same XGBoost model (the notebook's,
trained on the Boston table), on one local server:

1. transform   CreateTransformJob (SplitType Line, MultiRecord, AssembleWith Line, the container's default
               MaxPayloadInMB and MaxConcurrentTransforms) on the input already in the local S3, timed from
               the Create call until DescribeTransformJob says Completed; then the `.out` object is read.
2. invoke      `jobman invoke ENDPOINT in.csv -o out.csv` as a subprocess against an endpoint of the same
               model, timed from start to exit (the CLI's start-up included, as a user would see it).

Prints rows per second of each and the ratio, and checks that both outputs are identical, line for line.
Target: the transform within 1.5x of the invoke path's time (it has no HTTP round trips).

Run from the repository root: `python bench/transform.py [--rows N | --quick]`.
A missed target is reported, not an error: the exit status is 1 only when a check fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.invoke import (  # noqa: E402
    BUCKET,
    DEFAULT_ROWS,
    ENDPOINT,
    QUICK_ROWS,
    BenchError,
    boto3_client,
    deploy,
    hermetic_environment,
    local_backend,
    train_model,
    write_input,
)

JOB = "bench-transform"
INPUT_KEY = "transform-in/input.csv"
OUTPUT_PREFIX = "transform-out"
RATIO_TARGET = 1.5  # transform time over invoke time, at most
POLL_S = 0.1


def run_transform(url: str, source: Path) -> tuple[float, float, bytes]:
    """(upload seconds, job seconds, output bytes) of one transform job over `source`."""
    s3, sm = boto3_client(url, "s3"), boto3_client(url, "sagemaker")
    started = time.perf_counter()
    s3.upload_file(str(source), BUCKET, INPUT_KEY)
    uploaded = time.perf_counter() - started
    started = time.perf_counter()
    sm.create_transform_job(
        TransformJobName=JOB, ModelName=ENDPOINT, BatchStrategy="MultiRecord",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                        "S3Uri": f"s3://{BUCKET}/{INPUT_KEY}"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/{OUTPUT_PREFIX}", "Accept": "text/csv",
                         "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    while True:
        described = sm.describe_transform_job(TransformJobName=JOB)
        if described["TransformJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    if described["TransformJobStatus"] != "Completed":
        raise BenchError(f"the transform job ended {described['TransformJobStatus']}: "
                         f"{described.get('FailureReason')}")
    settings = {k: described.get(k) for k in ("MaxConcurrentTransforms", "MaxPayloadInMB", "BatchStrategy")}
    print(f"transform job settings: {settings}")
    body = s3.get_object(Bucket=BUCKET, Key=f"{OUTPUT_PREFIX}/input.csv.out")["Body"].read()
    return uploaded, elapsed, bytes(body)


def run_invoke(source: Path, output: Path) -> float:
    """Seconds `jobman invoke` takes over `source`, start to exit."""
    jobman = Path(sys.executable).parent / "jobman"
    command = [str(jobman), "invoke", ENDPOINT, str(source), "-o", str(output)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"jobman invoke failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return elapsed


def compare(transform_out: bytes, invoke_out: bytes, rows: int) -> None:
    ours, theirs = transform_out.splitlines(), invoke_out.splitlines()
    if len(ours) != rows or len(theirs) != rows:
        raise BenchError(f"expected {rows} predictions; the transform wrote {len(ours)}, invoke {len(theirs)}")
    if ours != theirs:
        first = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
        raise BenchError(f"outputs differ first at row {first + 1}: transform {ours[first]!r}, "
                         f"invoke {theirs[first]!r}")


def run(rows: int) -> int:
    with tempfile.TemporaryDirectory(prefix="jobman-bench-transform-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        hermetic_environment(tmp, home)
        print(f"generating {rows:,} rows ...")
        source = write_input(tmp / "input.csv", rows)
        print(f"input: {source.size_b / 1e6:.1f} MB; training the model ...")
        booster = train_model()
        with local_backend(home) as url:
            deploy(url, booster)
            print("endpoint InService; running the transform job, then jobman invoke")
            uploaded_s, transform_s, transform_out = run_transform(url, source.path)
            invoke_s = run_invoke(source.path, tmp / "invoke.out")
        compare(transform_out, (tmp / "invoke.out").read_bytes(), rows)
    ratio = transform_s / invoke_s
    print()
    print(f"{'path':<12}{'seconds':>10}{'rows/s':>14}")
    print(f"{'transform':<12}{transform_s:>10.2f}{rows / transform_s:>14,.0f}   (+{uploaded_s:.2f} s to upload "
          "the input to the local S3)")
    print(f"{'invoke':<12}{invoke_s:>10.2f}{rows / invoke_s:>14,.0f}")
    print(f"transform / invoke time: {ratio:.2f} (target <= {RATIO_TARGET}) "
          f"{'met' if ratio <= RATIO_TARGET else 'MISSED'}; outputs identical: {rows:,} predictions")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    args = parser.parse_args(argv)
    try:
        return run(QUICK_ROWS if args.quick else args.rows)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
