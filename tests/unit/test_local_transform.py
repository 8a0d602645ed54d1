"""Batch Transform on the local server: the API in-process (no worker started) and the worker run in-process.

The API tests drive the server app with plain boto3, as test_local_api.py does. The worker tests run
`transform_worker.main` in this process against files the API recorded, with a tiny model in the
emulated S3, and compare its output with the endpoint's own scoring code.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from jobman.backends.local import supervisor, transform_worker
from jobman.backends.local.artifacts import pack_model
from jobman.backends.local.objects import ObjectStore
from jobman.backends.local.scoring import Model
from jobman.backends.local.transform_state import JobFiles, finish
from jobman.backends.local.transform_worker import (
    Batch,
    ClientError,
    batches,
    find_bad_line,
    output_name,
)
from tests.unit.local_app import served
from tests.unit.test_local_api import IMAGE, ROLE, Api

FEATURES = 4


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    async with served(tmp_path / "home") as (server, url):
        server.transforms.spawn = lambda *_: supervisor.ref_for(2**22 + 1)
        yield Api(server, url)


@pytest.fixture
def sleeper() -> Iterator[supervisor.ProcessRef]:
    """A live process in its own session, standing in for a worker that is still running."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield supervisor.ref_for(child.pid)
    finally:
        child.kill()
        child.wait()


def _booster(seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    x = rng.random((200, FEATURES))
    return xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=x @ [1.0, 2.0, 3.0, 4.0]),
                     num_boost_round=10)


async def _model(api: Api, name: str = "m", url: str = "s3://bkt/model.tar.gz") -> None:
    await api.call(api.client("sagemaker").create_model, ModelName=name, ExecutionRoleArn=ROLE,
                   PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url})


def _request(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "TransformJobName": name, "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/in/"}},
                           "ContentType": "text/csv", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": "s3://bkt/out", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **extra,
    }


async def _job(api: Api, name: str, **extra: Any) -> dict[str, Any]:
    return dict(await api.call(api.client("sagemaker").create_transform_job, **_request(name, **extra)))


# --- the API ---


async def test_create_describe_fills_sagemakers_defaults_and_tags(api: Api) -> None:
    sm = api.client("sagemaker")
    await _model(api)
    arn = (await _job(api, "Job-1", Tags=[{"Key": "team", "Value": "ml"}]))["TransformJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:transform-job/job-1"
    described = await api.call(sm.describe_transform_job, TransformJobName="Job-1")
    assert described["TransformJobName"] == "Job-1" and described["TransformJobArn"] == arn
    assert described["ModelName"] == "m" and described["MaxPayloadInMB"] == 6
    assert described["BatchStrategy"] == "SingleRecord" and 1 <= described["MaxConcurrentTransforms"] <= 16
    assert described["TransformInput"]["CompressionType"] == "None"
    assert described["TransformOutput"]["KmsKeyId"] == ""
    assert described["DataProcessing"] == {"InputFilter": "$", "OutputFilter": "$", "JoinSource": "None"}
    assert described["Environment"] == {} and "CreationTime" in described
    # Its worker (a pid that cannot exist) is gone without finishing: the job reads Failed, with why.
    assert described["TransformJobStatus"] == "Failed"
    assert "before the job finished" in described["FailureReason"]
    assert (await api.call(sm.list_tags, ResourceArn=arn))["Tags"] == [{"Key": "team", "Value": "ml"}]


async def test_refusals_worded_as_sagemaker(api: Api) -> None:
    sm = api.client("sagemaker")
    code, message, _ = await api.error(sm.create_transform_job, **_request("no-model"))
    assert code == "ValidationException"
    assert message == 'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/m".'
    await _model(api)
    arn = (await _job(api, "twice"))["TransformJobArn"]
    code, message, _ = await api.error(sm.create_transform_job, **_request("TWICE"))
    assert code == "ResourceInUse" and arn in message and "must be unique" in message
    cases = [
        ({"MaxConcurrentTransforms": 20, "MaxPayloadInMB": 6}, "must not exceed 100"),
        ({"MaxPayloadInMB": 101}, "less than or equal to 100"),
        ({"MaxPayloadInMB": 0}, "chunked"),
        ({"BatchStrategy": "MultiRecord", "TransformInput": {**_request("x")["TransformInput"], "SplitType": "None"}},
         "requires a SplitType"),
        ({"DataProcessing": {"JoinSource": "Input"}}, "DataProcessing"),
        ({"TransformOutput": {"S3OutputPath": "nowhere"}}, "s3OutputPath"),
    ]
    for extra, words in cases:
        code, message, status = await api.error(sm.create_transform_job, **_request("bad", **extra))
        assert (code, status) == ("ValidationException", 400) and words in message, (extra, message)
    # botocore's model is checked first: the name pattern, enums
    code, message, _ = await api.error(sm.create_transform_job, **_request("bad_name"))
    assert code == "ValidationException" and "transformJobName" in message
    code, message, _ = await api.error(sm.create_transform_job, **_request("x", BatchStrategy="Some"))
    assert code == "ValidationException" and "batchStrategy" in message
    assert (await api.error(sm.describe_transform_job, TransformJobName="bad"))[:2] == (
        "ValidationException", "Requested resource not found.")
    assert not api.server.transforms.records("us-east-1").get("bad")


async def test_list_filters_sorts_and_pages(api: Api) -> None:
    sm = api.client("sagemaker")
    await _model(api)
    records = api.server.transforms.records("us-east-1")
    for i, name in enumerate(("alpha", "beta", "gamma", "delta", "other")):
        await _job(api, name)
        record = records.get(name) or {}
        records.put(name, {**record, "CreationTime": 1_700_000_000 + 10 * i})  # whole seconds: botocore sends those
    for name in ("beta", "delta"):
        files = JobFiles(api.server.layout.transform_dir("us-east-1", name))
        status = files.read_status() or {}
        status["TransformStartTime"] = status["LastModifiedTime"]
        finish(status, "Completed", status["LastModifiedTime"] + 1)
        files.write_status(status)

    def names(answer: dict[str, Any]) -> list[str]:
        return [s["TransformJobName"] for s in answer["TransformJobSummaries"]]

    assert names(await api.call(sm.list_transform_jobs)) == ["other", "delta", "gamma", "beta", "alpha"]
    assert names(await api.call(sm.list_transform_jobs, NameContains="ta")) == ["delta", "beta"]
    done = await api.call(sm.list_transform_jobs, StatusEquals="Completed", SortBy="Name", SortOrder="Ascending")
    assert names(done) == ["beta", "delta"]
    summary = done["TransformJobSummaries"][0]
    assert set(summary) == {"TransformJobName", "TransformJobArn", "CreationTime", "LastModifiedTime",
                            "TransformJobStatus", "TransformEndTime"}
    failed = await api.call(sm.list_transform_jobs, StatusEquals="Failed", SortBy="Status")
    assert names(failed) == ["other", "gamma", "alpha"] and "FailureReason" in failed["TransformJobSummaries"][0]
    pages, token = [], None
    while True:
        answer = await api.call(sm.list_transform_jobs, MaxResults=2, SortBy="Name", SortOrder="Ascending",
                                **({"NextToken": token} if token else {}))
        pages.append(names(answer))
        token = answer.get("NextToken")
        if not token:
            break
    assert pages == [["alpha", "beta"], ["delta", "gamma"], ["other"]]
    created = (await api.call(sm.describe_transform_job, TransformJobName="gamma"))["CreationTime"]
    assert created.timestamp() == 1_700_000_020
    assert names(await api.call(sm.list_transform_jobs, CreationTimeAfter=created)) == ["other", "delta"]
    assert names(await api.call(sm.list_transform_jobs, CreationTimeBefore=created)) == ["beta", "alpha"]
    assert (await api.error(sm.list_transform_jobs, MaxResults=101))[0] == "ValidationException"
    assert (await api.error(sm.list_transform_jobs, StatusEquals="Done"))[0] == "ValidationException"


async def test_stop_moves_a_running_job_to_stopped(api: Api, sleeper: supervisor.ProcessRef) -> None:
    sm = api.client("sagemaker")
    await _model(api)
    api.server.transforms.spawn = lambda *_: sleeper
    await _job(api, "long")
    assert (await api.call(sm.describe_transform_job, TransformJobName="long"))["TransformJobStatus"] == "InProgress"
    await api.call(sm.stop_transform_job, TransformJobName="long")
    for _ in range(100):  # the stand-in worker dies of the SIGTERM; the server settles the job as Stopped
        status = (await api.call(sm.describe_transform_job, TransformJobName="long"))["TransformJobStatus"]
        if status != "Stopping":
            break
        await asyncio.sleep(0.05)
    assert status == "Stopped"
    code, message, _ = await api.error(sm.stop_transform_job, TransformJobName="long")
    assert code == "ValidationException" and "Stopped" in message


# --- the worker's parts ---


def test_batches_cut_whole_lines_within_the_payload() -> None:
    data = b"".join(b"%d,%d\n" % (i, i) for i in range(1000)) + b"\n\n"
    cut = list(batches(data, 100, True, "s3://bkt/x"))
    assert all(len(b.data) <= 100 for b in cut)
    assert b"\n".join(b.data for b in cut) == data.rstrip(b"\n")
    assert [b.first_line for b in cut[:3]] == [1, 1 + cut[0].records, 1 + cut[0].records + cut[1].records]
    assert sum(b.records for b in cut) == 1000
    with pytest.raises(ClientError, match="line 2: the record is longer"):
        list(batches(b"1\n" + b"2" * 200 + b"\n", 100, True, "s3://bkt/x"))
    with pytest.raises(ClientError, match="SplitType None"):
        list(batches(b"1\n" * 100, 100, False, "s3://bkt/x"))
    assert [b.records for b in batches(b"1\n2\n", 100, False, "s3://bkt/x")] == [1]


def test_output_names_keep_the_path_below_the_input_prefix() -> None:
    assert output_name("in/", "in/sub/a.csv") == "sub/a.csv"
    assert output_name("in", "in/a.csv") == "a.csv"
    assert output_name("in/a.csv", "in/a.csv") == "a.csv"
    assert output_name("in/da", "in/data/a.csv") == "data/a.csv"
    assert output_name("", "a.csv") == "a.csv"


def test_find_bad_line_names_the_line() -> None:
    assert find_bad_line(Batch(b"1,2\nCRIM,ZN\n", 7, 2), 2).startswith("line 8: 'CRIM' is not a number")
    assert find_bad_line(Batch(b"1,2\n\n3,4", 1, 3), 2) == "line 2: the record is empty"
    assert find_bad_line(Batch(b"1,2\n3,4,5", 1, 2), 2) == "line 2: 3 columns, the model expects 2"


# --- the worker, in this process ---


def _put(api: Api, key: str, data: bytes) -> None:
    objects = ObjectStore(api.server.layout)
    objects.create_bucket("bkt", "us-east-1")
    objects.put_bytes("bkt", key, data)


def _run_worker(api: Api, name: str) -> dict[str, Any]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        transform_worker.main(["--root", str(api.server.layout.root), "--region", "us-east-1", "--name", name])
    finally:
        signal.signal(signal.SIGTERM, previous)
    return JobFiles(api.server.layout.transform_dir("us-east-1", name)).read_status() or {}


def _rows(count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in rng.random((count, FEATURES))).encode()


async def test_worker_predicts_like_the_endpoint_for_every_object(api: Api) -> None:
    booster = _booster()
    _put(api, "model.tar.gz", pack_model(booster))
    first, second = _rows(3000, 1), _rows(10, 2)
    _put(api, "in/a.csv", first)
    _put(api, "in/sub/b.csv", second)
    await _model(api)
    await _job(api, "whole", BatchStrategy="MultiRecord", MaxPayloadInMB=1, MaxConcurrentTransforms=3)
    status = _run_worker(api, "whole")  # the main thread: it sets a SIGTERM handler
    assert status["TransformJobStatus"] == "Completed", status.get("FailureReason")
    assert status["TransformEndTime"] >= status["TransformStartTime"]
    model = Model(booster)
    objects = ObjectStore(api.server.layout)
    for key, rows in (("out/a.csv.out", first), ("out/sub/b.csv.out", second)):
        out = objects.object_path("bkt", key).read_bytes()
        assert out == model.predict_csv(rows) + b"\n"
        assert out.count(b"\n") == rows.count(b"\n")
    streams = api.server.layout.logs / "us-east-1"
    assert any(p.name.startswith("whole%2Fi-") for p in streams.rglob("*.jsonl"))


async def test_worker_fails_on_a_header_naming_object_and_line(api: Api) -> None:
    _put(api, "model.tar.gz", pack_model(_booster()))
    _put(api, "in/a.csv", _rows(5, 1))
    _put(api, "in/b.csv", _rows(4, 1) + b"CRIM,ZN,INDUS,CHAS\n" + _rows(4, 2))
    await _model(api)
    await _job(api, "header", BatchStrategy="MultiRecord")
    status = _run_worker(api, "header")  # the main thread: it sets a SIGTERM handler
    assert status["TransformJobStatus"] == "Failed"
    assert status["FailureReason"].startswith("ClientError: s3://bkt/in/b.csv line 5: 'CRIM' is not a number")
    objects = ObjectStore(api.server.layout)
    assert objects.list_keys("bkt", "out/") == ["out/a.csv.out"]  # b.csv.out: whole or not at all
    assert list(api.server.layout.tmp.iterdir()) == []


async def test_worker_fails_without_the_model_artifact(api: Api) -> None:
    _put(api, "in/a.csv", _rows(5, 1))
    await _model(api, url="s3://bkt/missing/model.tar.gz")
    await _job(api, "no-artifact")
    status = _run_worker(api, "no-artifact")  # the main thread: it sets a SIGTERM handler
    assert status["TransformJobStatus"] == "Failed"
    assert "Failed to download model data" in status["FailureReason"]
    assert "s3://bkt/missing/model.tar.gz" in status["FailureReason"]


async def test_worker_single_record_without_line_assembly_concatenates(api: Api) -> None:
    booster = _booster()
    _put(api, "model.tar.gz", pack_model(booster))
    rows = _rows(3, 5)
    _put(api, "in/a.csv", rows)
    await _model(api)
    await _job(api, "single", TransformOutput={"S3OutputPath": "s3://bkt/o2/"})
    status = _run_worker(api, "single")  # the main thread: it sets a SIGTERM handler
    assert status["TransformJobStatus"] == "Completed", status.get("FailureReason")
    expected = b"".join(Model(booster).predict_csv(line + b"\n") for line in rows.splitlines())
    assert ObjectStore(api.server.layout).object_path("bkt", "o2/a.csv.out").read_bytes() == expected


async def test_worker_reads_gzip_objects_and_honours_an_early_stop(api: Api) -> None:
    booster = _booster()
    _put(api, "model.tar.gz", pack_model(booster))
    rows = _rows(50, 3)
    _put(api, "in/a.csv.gz", gzip.compress(rows))
    await _model(api)
    transform_input = {**_request("x")["TransformInput"], "CompressionType": "Gzip"}
    await _job(api, "zipped", TransformInput=transform_input)
    status = _run_worker(api, "zipped")  # the main thread: it sets a SIGTERM handler
    assert status["TransformJobStatus"] == "Completed", status.get("FailureReason")
    out = ObjectStore(api.server.layout).object_path("bkt", "out/a.csv.gz.out").read_bytes()
    assert out == Model(booster).predict_csv(rows) + b"\n"

    await _job(api, "early")
    JobFiles(api.server.layout.transform_dir("us-east-1", "early")).stop.write_text('{"at": 1}')
    status = _run_worker(api, "early")
    assert status["TransformJobStatus"] == "Stopped" and "FailureReason" not in status


async def test_worker_refuses_a_manifest_clearly(api: Api) -> None:
    _put(api, "model.tar.gz", pack_model(_booster()))
    await _model(api)
    source = {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://bkt/manifest.json"}}
    await _job(api, "manifest", TransformInput={**_request("x")["TransformInput"], "DataSource": source})
    status = _run_worker(api, "manifest")
    assert status["TransformJobStatus"] == "Failed"
    assert status["FailureReason"] == ("ClientError: S3DataType ManifestFile is not supported by the local "
                                       "backend (use S3Prefix)")
