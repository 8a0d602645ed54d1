"""CloudWatch GetMetricStatistics in each protocol botocore may speak to it, depending on its version.

botocore up to 1.40 sends Query (form-encoded, XML back), newer ones Smithy RPC v2 CBOR (the SageMaker
SDK pulls those in), and JSON 1.0 sits between; a client of each is made by choosing the protocol in
a copy of the installed service model.
"""

from __future__ import annotations

import time
from typing import Any

import botocore.session
import pytest
from botocore.config import Config

from jobman.backends.local.store import layout
from jobman.backends.local.training_state import JobFiles
from tests.integration import local_fixtures
from tests.integration.local_fixtures import LocalServer

local_server = local_fixtures.local_server  # the fixture (until tests/integration/conftest.py imports it)

NAMESPACE = "/aws/sagemaker/TrainingJobs"


def _client(server: LocalServer, protocol: str) -> Any:
    session = botocore.session.Session()
    model = session.get_component("data_loader").load_service_model("cloudwatch", "service-2")
    model["metadata"] = {**model["metadata"], "protocol": protocol, "protocols": [protocol],
                         "jsonVersion": "1.0", "targetPrefix": "GraniteServiceVersion20100801"}
    return session.create_client("cloudwatch", region_name=server.region, endpoint_url=server.url,
                                 aws_access_key_id="x", aws_secret_access_key="x",
                                 config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


@pytest.mark.parametrize("protocol", ["query", "json", "smithy-rpc-v2-cbor"])
def test_get_metric_statistics_in_every_protocol(local_server: LocalServer, protocol: str) -> None:
    files = JobFiles(layout(local_server.home).root / "training" / local_server.region / "wire-job")
    files.folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i in range(4):
        files.append_round(now - 30 + i, {"train:rmse": 1.0 + i})
    cloudwatch = _client(local_server, protocol)
    if protocol != "query":
        assert cloudwatch.meta.service_model.protocol == protocol
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="train:rmse", Dimensions=[{"Name": "TrainingJobName", "Value": "wire-job"}],
        StartTime=now - 120, EndTime=now + 60, Period=1, Statistics=["Sum", "SampleCount"],
        ExtendedStatistics=["p100"])
    points = sorted(answer["Datapoints"], key=lambda p: p["Timestamp"])
    assert answer["Label"] == "train:rmse"
    assert [p["Sum"] for p in points] == [1.0, 2.0, 3.0, 4.0]
    assert points[-1]["ExtendedStatistics"] == {"p100": 4.0} and points[0]["SampleCount"] == 1.0
    assert abs(points[0]["Timestamp"].timestamp() - int(now - 30)) < 1.01
    with pytest.raises(cloudwatch.exceptions.InvalidParameterValueException):
        cloudwatch.get_metric_statistics(Namespace=NAMESPACE, MetricName="m", StartTime=now, EndTime=now - 1,
                                         Period=60, Statistics=["Average"])
