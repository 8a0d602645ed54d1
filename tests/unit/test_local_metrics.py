"""CloudWatch GetMetricStatistics and ListMetrics over a training job's recorded rounds."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from jobman.backends.local import arns, describe_defaults
from jobman.backends.local.metrics_api import NAMESPACE, MetricsApi, _from_query, _to_xml
from jobman.backends.local.store import Layout, RecordStore
from jobman.backends.local.training_state import JobFiles
from jobman.backends.local.wire import AwsError, to_xml

REGION = "us-east-1"
T0 = 1_700_000_040.0  # a minute boundary


@pytest.fixture
def api(tmp_path: Path) -> MetricsApi:
    layout = Layout(tmp_path / "local")
    RecordStore(layout.resources(REGION, arns.TRAINING_JOB)).put("job", {"TrainingJobName": "job"})
    files = JobFiles(layout.training_dir(REGION, "job"))
    files.folder.mkdir(parents=True)
    for i in range(6):  # rounds 0.5 s apart: 0, .5, 1, ... 2.5 s
        files.append_round(T0 + i / 2, {"train:rmse": 1.0 + i, "validation:rmse": 10.0 - i})
    with files.metrics.open("a") as handle:
        handle.write('{"t": 1, "values"')  # an unfinished line is skipped
    return MetricsApi(layout)


def _points(api: MetricsApi, **params: str) -> list[dict[str, str]]:
    request = {"Namespace": NAMESPACE, "MetricName": "train:rmse", "StartTime": "2023-11-14T22:00:00Z",
               "EndTime": "2023-11-14T23:00:00Z", "Period": "60", "Statistics.member.1": "Average",
               "Dimensions.member.1.Name": "TrainingJobName", "Dimensions.member.1.Value": "job", **params}
    root = ElementTree.fromstring(to_xml("R", _to_xml(api.get_metric_statistics(REGION, _from_query(request)))))
    return [{child.tag: child.text or "" for child in point} for point in root.iter("member")]


def test_period_buckets_and_statistics(api: MetricsApi) -> None:
    [minute] = _points(api)
    assert minute == {"Timestamp": "2023-11-14T22:14:00Z", "Average": "3.5", "Unit": "None"}
    stats = {"Statistics.member.1": "SampleCount", "Statistics.member.2": "Maximum"}
    seconds = _points(api, Period="1", EndTime="2023-11-14T22:20:00Z", **stats)
    assert [(p["SampleCount"], p["Maximum"]) for p in seconds] == [("2.0", "2.0"), ("2.0", "4.0"), ("2.0", "6.0")]
    assert _points(api, **{"Dimensions.member.1.Value": "other"}) == []
    assert _points(api, MetricName="validation:auc") == []
    for bad in ({"Period": "7"}, {"StartTime": "2023-11-14T23:00:00Z"}, {"Statistics.member.1": "Median"},
                {"Period": "1"}):  # the last asks for 3600 datapoints, over the limit of 1440
        with pytest.raises(AwsError):
            _points(api, **bad)


def test_list_metrics(api: MetricsApi) -> None:
    root = ElementTree.fromstring(to_xml("R", _to_xml(api.list_metrics(REGION, {"Namespace": NAMESPACE}))))
    assert [m.findtext("MetricName") for m in root.find("Metrics") or []] == ["train:rmse", "validation:rmse"]


def test_describe_defaults_do_not_touch_the_record() -> None:
    record = {"OutputDataConfig": {"S3OutputPath": "s3://b/o"}, "InputDataConfig": [{"ChannelName": "train"}]}
    filled = describe_defaults.training_job(record, builtin=True)
    assert filled["OutputDataConfig"]["KmsKeyId"] == "" and "KmsKeyId" not in record["OutputDataConfig"]
    assert filled["InputDataConfig"][0]["CompressionType"] == "None"
    regexes = {d["Name"]: d["Regex"] for d in filled["AlgorithmSpecification"]["MetricDefinitions"]}
    import re

    assert re.match(regexes["validation:rmse"], "[12]#011train-rmse:0.97#011validation-rmse:3.34")[1] == "3.34"
    assert "MetricDefinitions" not in describe_defaults.training_job(record, builtin=False)["AlgorithmSpecification"]


def test_query_values_are_checked_against_the_model() -> None:
    from jobman.backends.local.metrics_api import _checked, _input_shape, _typed

    shape = _input_shape("GetMetricStatistics")
    good = {"Namespace": NAMESPACE, "MetricName": "m", "StartTime": "2023-11-14T22:00:00Z",
            "EndTime": "2023-11-14T23:00:00Z", "Period": "60", "Statistics.member.1": "Average", "Junk": "x"}
    body = _checked("GetMetricStatistics", _typed(shape, _from_query(good)))
    assert body["Period"] == 60 and body["Statistics"] == ["Average"] and "Junk" not in body
    for bad, code in (({"Period": "abc"}, "InvalidParameterValue"), ({"Period": "0"}, "InvalidParameterValue"),
                      ({"Unit": "Parsecs"}, "InvalidParameterValue"), ({"StartTime": "yesterday"},
                                                                        "InvalidParameterValue"),
                      ({"MetricName": "x" * 256}, "InvalidParameterValue"), ({"Period": None}, "MissingParameter")):
        request = {k: v for k, v in {**good, **bad}.items() if v is not None}
        with pytest.raises(AwsError) as caught:
            _checked("GetMetricStatistics", _typed(shape, _from_query(request)))
        assert caught.value.code == code, bad
    listed = _typed(_input_shape("ListMetrics"), {"IncludeLinkedAccounts": "true", "RecentlyActive": "PT3H"})
    assert _checked("ListMetrics", listed) == {"IncludeLinkedAccounts": True, "RecentlyActive": "PT3H"}
    with pytest.raises(AwsError):
        _checked("ListMetrics", _typed(_input_shape("ListMetrics"), {"IncludeLinkedAccounts": "maybe"}))


def test_a_list_index_that_is_not_an_ascii_number_is_ignored() -> None:
    """'²' passes str.isdigit() but not int(): it must not reach int() and answer 500."""
    good = {"Namespace": NAMESPACE, "MetricName": "m", "Statistics.member.1": "Average"}
    assert _from_query({**good, "Statistics.member.²": "Sum", "Dimensions.member.٣.Name": "x"}) == _from_query(good)
