"""Sweeps on the local backend as a user runs them: real training jobs in parallel, the best one deployed,
and kill -9 at several moments followed by a rerun that makes no trial twice and picks the same best."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import jobman, write_experiment
from tests.integration.local_fixtures import LocalServer
from tests.integration.test_local_run import kill_9_run_when, ledger_statuses

pytestmark = pytest.mark.slow
SWEEP = """
[sweep]
strategy = "{strategy}"
max_trials = 6
max_parallel = 3
objective = "validation:rmse"
seed = 7
[sweep.parameters]
eta = {{ low = 0.05, high = 0.5, log = true }}
max_depth = {{ low = 3, high = 8 }}
subsample = [0.6, 0.8, 1.0]
"""


def sweep_file(tmp_path: Path, name: str, strategy: str = "random") -> Path:
    path = write_experiment(tmp_path / f"{name}.toml", {'name = "boston-xgboost"': f'name = "{name}"'})
    body = SWEEP.format(strategy=strategy)
    if strategy == "grid":
        body = body.replace("eta = { low = 0.05, high = 0.5, log = true }", "eta = [0.1, 0.3]")
    path.write_text(path.read_text() + body)
    return path


def sweep_of(cwd: Path, name: str) -> dict[str, Any]:
    shown = jobman("status", name, "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    [exp] = json.loads(shown.stdout)["experiments"]
    assert exp["status"] == "succeeded", exp
    return exp["sweep"]  # type: ignore[no-any-return]


def test_a_sweep_deploys_a_best_trial_no_worse_than_the_file(local_server: LocalServer, tmp_path: Path) -> None:
    done = jobman("run", str(sweep_file(tmp_path, "sweep-a")), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "best: trial" in done.stdout and "RMSE" in done.stdout
    sweep = sweep_of(tmp_path, "sweep-a")
    trials = sweep["trials"]
    assert [t["number"] for t in trials] == [1, 2, 3, 4, 5, 6]
    assert all(t["status"] == "Completed" and t["objective"] is not None for t in trials)
    # Trial 1 is the file's own hyperparameters (the seed's notebook values): the best is never worse.
    assert trials[0]["params"] == {"eta": 0.2, "max_depth": 5, "subsample": 0.8}
    best = next(t for t in trials if t["best"])
    assert best["objective"] <= trials[0]["objective"] and best["number"] == sweep["best_trial"]
    sm = local_server.client("sagemaker")
    jobs = sm.list_training_jobs(NameContains="sweep-a-r1-t")["TrainingJobSummaries"]
    assert sorted(j["TrainingJobName"] for j in jobs) == sorted(f"sweep-a-r1-t{k}" for k in range(1, 7))
    model_data = sm.describe_training_job(TrainingJobName=f"sweep-a-r1-t{best['number']}")
    assert model_data["FinalMetricDataList"]  # reported as the built-in algorithm reports it
    assert sm.list_endpoints(NameContains="sweep-a")["Endpoints"] == []  # deployed, evaluated, torn down
    output = tmp_path / "jobman-output" / "sweep-a-r1"
    assert len((output / "trials.csv").read_text().splitlines()) == 7
    assert (output / "trials.png").exists() and (output / "predictions.csv").exists()
    table = jobman("status", "sweep-a", cwd=tmp_path)
    assert "best trial" in table.stdout and f"{best['number']}*" in table.stdout


@pytest.mark.parametrize(("strategy", "moment"), [("random", "first trial running"), ("grid", "trials finished")])
def test_kill_9_mid_sweep_then_rerun(local_server: LocalServer, tmp_path: Path, strategy: str, moment: str) -> None:
    whole = jobman("run", str(sweep_file(tmp_path, "whole", strategy)), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr + whole.stdout
    expected = sweep_of(tmp_path, "whole")

    path = sweep_file(tmp_path, "cut", strategy)

    def reached() -> bool:
        statuses = ledger_statuses(local_server.home)
        if moment == "first trial running":
            return statuses.get("cut-r1-t1") == "InProgress"
        return sum(statuses.get(f"cut-r1-t{k}") == "Completed" for k in range(1, 7)) >= 3

    kill_9_run_when(path, reached, timeout_s=120)
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "resuming cut run 1" in done.stdout and "resuming the sweep" in done.stdout
    sweep = sweep_of(tmp_path, "cut")
    # Every trial number has exactly one training job, with the parameters of the uninterrupted sweep.
    sm = local_server.client("sagemaker")
    jobs = sm.list_training_jobs(NameContains="cut-r1-t")["TrainingJobSummaries"]
    assert sorted(j["TrainingJobName"] for j in jobs) == sorted(f"cut-r1-t{k}" for k in range(1, 7))
    assert [t["params"] for t in sweep["trials"]] == [t["params"] for t in expected["trials"]]
    assert sweep["best_trial"] == expected["best_trial"]
    # Nothing is left running.
    assert all(j["TrainingJobStatus"] == "Completed" for j in jobs)
    assert sm.list_endpoints(NameContains="cut")["Endpoints"] == []
