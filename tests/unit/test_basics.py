"""Durations, status meanings, image URIs, data preparation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from jobman.config import load_experiment
from jobman.dataprep import load_table, prepare
from jobman.durations import format_duration, parse_duration_s
from jobman.errors import ConfigError
from jobman.images import is_builtin_xgboost, xgboost_image_uri
from jobman.kinds import Kind
from jobman.states import (
    ENDPOINT_MEANINGS,
    SCHEDULE_MEANINGS,
    TRAINING_JOB_MEANINGS,
    Desired,
    Meaning,
    Status,
    is_settled,
    meaning,
)
from tests.conftest import EXAMPLE


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2d", 172800),
                                               (45, 45), ("1.5h", 5400)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5", "1x", "0s", -3, True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(text)  # type: ignore[arg-type]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 65, 3725, 90000, -65)] == ["5s", "1m05s", "1h02m", "1d01h", "-1m05s"]


def _service_enum(service: str, shape: str) -> set[str]:
    import botocore.session

    return set(botocore.session.get_session().get_service_model(service).shape_for(shape).enum)


@pytest.mark.parametrize(("table", "service", "shape"), [
    (TRAINING_JOB_MEANINGS, "sagemaker", "TrainingJobStatus"),
    (ENDPOINT_MEANINGS, "sagemaker", "EndpointStatus"),
    (SCHEDULE_MEANINGS, "scheduler", "ScheduleState"),
])
def test_every_status_the_service_model_knows_has_a_meaning(
    table: dict[Status, Meaning], service: str, shape: str
) -> None:
    """Against botocore's own service model, so a status AWS adds shows up here, not in production."""
    assert set(table) == _service_enum(service, shape)
    assert set(table) <= set(Status)


def test_unknown_status_is_never_done() -> None:
    assert meaning(Kind.ENDPOINT, "Hibernating") is Meaning.UNKNOWN
    assert not is_settled(Kind.ENDPOINT, "Hibernating", Desired.PRESENT)
    assert not is_settled(Kind.TRAINING_JOB, "Paused", Desired.ABSENT)


def test_stopped_is_a_failure_unless_requested() -> None:
    assert meaning(Kind.TRAINING_JOB, "Stopped") is Meaning.FAILED
    assert meaning(Kind.TRAINING_JOB, "Stopped", stop_requested=True) is Meaning.OK


def test_image_uris() -> None:
    assert xgboost_image_uri("us-east-1", "1") == "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"
    assert xgboost_image_uri("us-east-1") == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    assert xgboost_image_uri("cn-north-1", "1").endswith(".amazonaws.com.cn/xgboost:1")
    assert is_builtin_xgboost(xgboost_image_uri("eu-west-1", "3.0-5"))
    assert not is_builtin_xgboost("123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1")
    assert not is_builtin_xgboost("my/own:image")
    with pytest.raises(ConfigError, match="region 'moon-1'"):
        xgboost_image_uri("moon-1")


def test_split_matches_the_notebook(tmp_path: Path) -> None:
    x = load_experiment(EXAMPLE)
    frame = load_table(x)
    assert frame.shape == (506, 14)
    data = prepare(x, frame, tmp_path)
    assert data.rows == {"train": 227, "validation": 112, "test": 167}
    train = pd.read_csv(data.train_csv, header=None)
    assert train.shape == (227, 14)
    # Target first: every first-column value is a MEDV value, and the row is a row of the table.
    first = train.iloc[0].tolist()
    match = frame[(frame["MEDV"] == first[0]) & (frame["CRIM"] == first[1])]
    assert len(match) == 1
    test = pd.read_csv(data.test_features_csv, header=None)
    assert test.shape == (167, 13) and len(data.test_labels) == 167
    again = prepare(x, frame, tmp_path / "again")
    assert again.train_csv.read_bytes() == data.train_csv.read_bytes()  # seeded: a resumed run uploads the same
