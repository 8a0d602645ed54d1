"""CloudWatch Logs semantics over the file log store: tails, tokens, stream listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobman.backends.local.logs import describe_log_streams, get_log_events
from jobman.backends.local.logstore import LogStore, file_name
from jobman.backends.local.wire import AwsError

GROUP = "/aws/sagemaker/TrainingJobs"


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    logs = LogStore(tmp_path / "logs")
    logs.create_stream(GROUP, "job-b/algo-1-200")
    logs.create_stream(GROUP, "job-a/algo-1-100")
    logs.append(GROUP, "job-a/algo-1-100", [f"line {i}" for i in range(5)], timestamp_ms=1000)
    logs.append(GROUP, "job-b/algo-1-200", ["b"], timestamp_ms=5000)
    return logs


def _get(store: LogStore, **body: object) -> dict:
    return get_log_events(store, "us-east-1", {"logGroupName": GROUP, "logStreamName": "job-a/algo-1-100", **body})


def _messages(answer: dict) -> list[str]:
    return [e["message"] for e in answer["events"]]


def test_tailing_from_the_head(store: LogStore) -> None:
    first = _get(store, startFromHead=True, limit=3)
    assert _messages(first) == ["line 0", "line 1", "line 2"]
    rest = _get(store, nextToken=first["nextForwardToken"])
    assert _messages(rest) == ["line 3", "line 4"]
    idle = _get(store, nextToken=rest["nextForwardToken"])
    assert idle["events"] == [] and idle["nextForwardToken"] == rest["nextForwardToken"]  # same token: at the end
    store.append(GROUP, "job-a/algo-1-100", ["line 5"])
    assert _messages(_get(store, nextToken=idle["nextForwardToken"])) == ["line 5"]


def test_default_reads_the_tail_and_backward_tokens_page_back(store: LogStore) -> None:
    tail = _get(store, limit=2)
    assert _messages(tail) == ["line 3", "line 4"]
    back = _get(store, nextToken=tail["nextBackwardToken"], limit=2)
    assert _messages(back) == ["line 1", "line 2"]
    assert _messages(_get(store, nextToken=tail["nextForwardToken"])) == []


def test_the_tail_of_a_stream_larger_than_a_page_is_its_last_events(store: LogStore) -> None:
    """Reading backwards starts at the stream's end, however far past the first megabyte that is."""
    store.append(GROUP, "job-a/algo-1-100", [f"long {i} " + "x" * 1000 for i in range(2000)], timestamp_ms=2000)
    store.append(GROUP, "job-a/algo-1-100", ["the last line"], timestamp_ms=3000)
    assert _messages(_get(store, limit=1)) == ["the last line"]


def test_a_line_still_being_written_is_not_read(store: LogStore) -> None:
    with store.stream_path(GROUP, "job-a/algo-1-100").open("ab") as handle:
        handle.write(b'{"t": 1, "i": 1, "m": "half')
    assert _messages(_get(store, startFromHead=True))[-1] == "line 4"


def test_time_window(store: LogStore) -> None:
    assert _get(store, startFromHead=True, startTime=2000)["events"] == []
    assert len(_get(store, startFromHead=True, endTime=1001)["events"]) == 5


def test_missing_group_stream_and_bad_token(store: LogStore) -> None:
    with pytest.raises(AwsError) as missing_group:
        get_log_events(store, "us-east-1", {"logGroupName": "/nope", "logStreamName": "x"})
    assert missing_group.value.code == "ResourceNotFoundException"
    with pytest.raises(AwsError, match="log stream does not exist"):
        get_log_events(store, "us-east-1", {"logGroupName": GROUP, "logStreamName": "nope"})
    with pytest.raises(AwsError) as bad:
        _get(store, nextToken="f/../../etc")
    assert bad.value.code == "InvalidParameterException"


def test_describe_log_streams_orders_filters_and_pages(store: LogStore) -> None:
    def names(body: dict) -> list[str]:
        return [s["logStreamName"] for s in describe_log_streams(store, "us-east-1",
                                                                 {"logGroupName": GROUP, **body})["logStreams"]]

    assert names({}) == ["job-a/algo-1-100", "job-b/algo-1-200"]
    assert names({"descending": True}) == ["job-b/algo-1-200", "job-a/algo-1-100"]
    assert names({"logStreamNamePrefix": "job-b"}) == ["job-b/algo-1-200"]
    assert names({"orderBy": "LastEventTime", "descending": True})[0] == "job-b/algo-1-200"
    first = describe_log_streams(store, "us-east-1", {"logGroupName": GROUP, "limit": 1})
    assert first["nextToken"] and len(first["logStreams"]) == 1
    body = {"logGroupName": GROUP, "limit": 1, "nextToken": first["nextToken"]}
    second = describe_log_streams(store, "us-east-1", body)
    assert [s["logStreamName"] for s in second["logStreams"]] == ["job-b/algo-1-200"] and "nextToken" not in second
    stream = first["logStreams"][0]
    assert (stream["firstEventTimestamp"], stream["lastEventTimestamp"]) == (1000, 1000)
    assert stream["arn"].endswith(":log-group:/aws/sagemaker/TrainingJobs:log-stream:job-a/algo-1-100")
    with pytest.raises(AwsError):
        describe_log_streams(store, "us-east-1", {"logGroupName": GROUP, "orderBy": "LastEventTime",
                                                  "logStreamNamePrefix": "job"})


def test_file_names_cannot_escape() -> None:
    assert file_name("..") == "%2E."
    assert file_name("a/b") == "a%2Fb"
    assert file_name("x" * 300).startswith("%h")
    assert "/" not in file_name("/aws/sagemaker/Endpoints/e")
