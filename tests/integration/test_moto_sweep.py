"""A sweep with backend = "sagemaker" against moto's server.

moto completes a training job at once and reports no objective (FinalMetricDataList holds only
`train:progress`), so the test sets each job's `validation:rmse` as SageMaker's built-in XGBoost would
report it, from its hyperparameters, before each observation pass.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from jobman.clock import SystemClock
from jobman.config import load_experiment
from jobman.kinds import Kind
from jobman.ledger.store import Ledger
from jobman.trials import best_of, trials_of
from jobman.workflow import SilentReporter
from tests.conftest import SAGEMAKER, write_experiment
from tests.integration.test_moto_run import TEST_ROWS, run_in_process
from tests.moto_server import Moto

SWEEP = """
[sweep]
strategy = "random"
max_trials = 5
max_parallel = 2
objective = "validation:rmse"
seed = 3
[sweep.parameters]
eta = { low = 0.05, high = 0.5, log = true }
max_depth = { low = 3, high = 10 }
"""


class ReportingClock(SystemClock):
    """Before each pass, every training job reports its objective (a function of its hyperparameters)."""

    def __init__(self, moto: Moto) -> None:
        self.moto = moto

    async def sleep(self, seconds: float) -> None:
        for job in self.moto.sagemaker.training_jobs.values():
            hp = job.hyper_parameters
            value = 3.0 + abs(float(hp["eta"]) - 0.2) * 10 + abs(int(hp["max_depth"]) - 6)
            job.final_metric_data_list = [{"MetricName": "validation:rmse", "Value": value,
                                           "Timestamp": job.creation_time}]


async def test_a_sweep_on_moto(moto: Moto, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    moto.queue_invoke_results(["\n".join(["21"] * TEST_ROWS)])
    path = write_experiment(tmp_path / "exp.toml", SAGEMAKER)
    path.write_text(path.read_text() + SWEEP)
    outcome = await run_in_process(load_experiment(path), ledger, ReportingClock(moto), SilentReporter())
    assert outcome.run.status == "succeeded" and outcome.metrics["rows"] == TEST_ROWS
    trials = trials_of(await ledger.resources(run_ids=[outcome.run.id]))
    assert [t.resource.name for t in trials] == [f"boston-xgboost-r1-t{k}" for k in range(1, 6)]
    listed = moto.sagemaker.training_jobs
    assert sorted(listed) == sorted(t.resource.name for t in trials)  # one job a trial, none twice
    best = best_of(trials)
    assert best is not None and best.value == min(t.value for t in trials if t.value is not None)
    tags = {t["Key"]: t["Value"] for t in best.resource.spec["Tags"]}
    assert tags["jobman:trial"] == str(best.number)
    model = await ledger.resource_by_name(Kind.MODEL, "boston-xgboost-r1-model")
    assert model is not None and f"/{best.resource.name}/" in model.spec["PrimaryContainer"]["ModelDataUrl"]
    sm = boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1")
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []  # then torn down
