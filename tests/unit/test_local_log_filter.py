"""FilterLogEvents over the file log store: patterns, stream selection, time bounds, paging."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobman.backends.local.log_filter import filter_log_events, parse_pattern
from jobman.backends.local.logstore import LogStore
from jobman.backends.local.wire import AwsError

GROUP = "/aws/sagemaker/TrainingJobs"


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    logs = LogStore(tmp_path / "logs")
    for stream, base in (("job-a/algo-1-1", 1000), ("job-b/algo-1-2", 1500)):
        logs.create_stream(GROUP, stream)
        for i in range(4):
            logs.append(GROUP, stream, [f"[{i}]#011train-rmse:0.{i} {stream[:5]} ERROR x" if i % 2 else f"[{i}] ok"],
                        timestamp_ms=base + 100 * i)
    return logs


def _messages(answer: dict) -> list[str]:
    return [e["message"] for e in answer["events"]]


def test_patterns() -> None:
    assert parse_pattern(None).matches("anything")
    pattern = parse_pattern('ERROR "train-rmse:0.1" -job-b ?x ?y')
    assert pattern.required == ("ERROR", "train-rmse:0.1") and pattern.excluded == ("job-b",)
    assert pattern.any_of == ("x", "y")
    assert pattern.matches("ERROR train-rmse:0.1 x") and not pattern.matches("ERROR train-rmse:0.1 job-b x")
    assert not parse_pattern("error").matches("ERROR")  # case-sensitive, as CloudWatch is
    assert parse_pattern('"-x"').matches("a -x b")  # a quoted phrase, not an exclusion
    assert parse_pattern(r'-"job b" ?"a \" q"').excluded == ("job b",)
    assert parse_pattern(r'-"job b" ?"a \" q"').any_of == ('a " q',)
    for unsupported in ("{ $.a = 1 }", "[ip, user]", "%err.*%", "ERR*", '"a\\" "b', '"a"b c', '"open'):
        with pytest.raises(AwsError) as caught:
            parse_pattern(unsupported)
        assert caught.value.code == "InvalidParameterException"


def test_merges_streams_in_time_order_and_filters(store: LogStore) -> None:
    answer = filter_log_events(store, GROUP, {})
    assert [e["timestamp"] for e in answer["events"]] == sorted(e["timestamp"] for e in answer["events"])
    assert len(answer["events"]) == 8 and "nextToken" not in answer
    assert answer["searchedLogStreams"] == [{"logStreamName": s, "searchedCompletely": True}
                                            for s in ("job-a/algo-1-1", "job-b/algo-1-2")]
    errors = filter_log_events(store, GROUP, {"filterPattern": "ERROR", "logStreamNamePrefix": "job-a"})
    assert _messages(errors) == ["[1]#011train-rmse:0.1 job-a ERROR x", "[3]#011train-rmse:0.3 job-a ERROR x"]
    named = filter_log_events(store, GROUP, {"logStreamNames": ["job-b/algo-1-2"], "startTime": 1600, "endTime": 1700})
    assert _messages(named) == ["[1]#011train-rmse:0.1 job-b ERROR x", "[2] ok"]  # both bounds inclusive
    with pytest.raises(AwsError):
        filter_log_events(store, GROUP, {"logStreamNames": ["x"], "logStreamNamePrefix": "x"})


def test_paging_returns_each_event_once(store: LogStore) -> None:
    seen: list[str] = []
    body: dict = {"limit": 3}
    while True:
        page = filter_log_events(store, GROUP, body)
        seen += [e["eventId"] for e in page["events"]]
        if "nextToken" not in page:
            break
        assert not any(s["searchedCompletely"] for s in page["searchedLogStreams"])
        body = {"limit": 3, "nextToken": page["nextToken"]}
    assert seen == [e["eventId"] for e in filter_log_events(store, GROUP, {})["events"]]
    with pytest.raises(AwsError):
        filter_log_events(store, GROUP, {"nextToken": "not-a-token"})
