"""`jobman transform`'s flow on the in-memory backend: a model the ledger knows, a user's CSV, one line a row."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobman.backends.fake import FakeBackend
from jobman.batch_flow import BatchOptions, BatchPrediction, resolve_source
from jobman.clock import FakeClock
from jobman.config import load_experiment
from jobman.errors import ConfigError, WaitTimeout
from jobman.kinds import Kind
from jobman.ledger.store import Ledger
from jobman.run import ExperimentRun
from jobman.states import Desired, Status
from jobman.timing import Timing
from tests.conftest import write_experiment

TIMING = Timing(training_poll_s=5, endpoint_poll_s=15)


@pytest.fixture
async def trained(ledger: Ledger, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    monkeypatch.chdir(tmp_path)
    backend = FakeBackend(now=clock.now)
    x = load_experiment(write_experiment(tmp_path / "exp.toml"))
    await ExperimentRun(x, ledger, backend, clock=clock, timing=TIMING).execute()
    return backend


def flow(ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> BatchPrediction:
    return BatchPrediction(ledger, backend, clock=clock, reporter=None, timing=TIMING)


def write_rows(path: Path, rows: int, header: bool = True) -> Path:
    lines = (["a,b,c"] if header else []) + [f"{i},{i % 7},0.5" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_predictions_in_order_and_nothing_left_behind(
    ledger: Ledger, clock: FakeClock, trained: FakeBackend, tmp_path: Path
) -> None:
    source = await resolve_source(ledger, "boston-xgboost/r1")
    before = set(trained.objects)
    out = tmp_path / "out.csv"
    outcome = await flow(ledger, trained, clock).execute(source, str(write_rows(tmp_path / "in.csv", 1000)), str(out),
                                                          BatchOptions(header=True))
    assert outcome.rows == 1000 and outcome.job.name == "boston-xgboost-r1-b1-transform"
    assert out.read_text().splitlines() == [repr(i + i % 7 + 0.5) for i in range(1000)]
    # The model was made from the training job's artifact and torn down; the S3 objects were removed.
    model = await ledger.resource_by_name(Kind.MODEL, "boston-xgboost-r1-b1-model")
    assert model is not None and (model.status, model.desired) == (Status.ABSENT, Desired.ABSENT)
    assert model.spec["PrimaryContainer"]["ModelDataUrl"].endswith("model.tar.gz")
    assert set(trained.objects) == before
    job = await ledger.resource_by_name(Kind.TRANSFORM_JOB, outcome.job.name)
    assert job is not None and job.status == Status.COMPLETED
    assert {t["Key"]: t["Value"] for t in job.spec["Tags"]}["jobman:experiment"] == "boston-xgboost"
    # The next command of the same run is numbered on; `--keep-s3` keeps the objects.
    again = await flow(ledger, trained, clock).execute(await resolve_source(ledger, "boston-xgboost"),
                                                        str(write_rows(tmp_path / "in.csv", 3, header=False)),
                                                        str(out), BatchOptions(keep_s3=True))
    assert again.job.name == "boston-xgboost-r1-b2-transform" and len(out.read_text().splitlines()) == 3
    assert any("/r1/batch-2/output/input.csv.out" in uri for uri in trained.objects)


async def test_sources_by_model_name_and_errors(ledger: Ledger, trained: FakeBackend) -> None:
    run, job = await resolve_source(ledger, "boston-xgboost-r1-model")
    assert run.number == 1 and job.kind is Kind.TRAINING_JOB
    for ref, message in (("nope", "not a run"), ("boston-xgboost/r9", "has no run 9")):
        with pytest.raises(ConfigError, match=message):
            await resolve_source(ledger, ref)
    with pytest.raises(ConfigError) as refused:  # a long argument is cut, as in every one-line error
        await resolve_source(ledger, "x" * 100_000)
    assert "not a run" in str(refused.value) and "(100,000 characters)" in str(refused.value)
    assert len(str(refused.value)) < 200


async def test_bad_input_is_refused_before_anything_is_created(
    ledger: Ledger, clock: FakeClock, trained: FakeBackend, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n\n3,4\n")
    calls = sum(trained.calls.values())
    with pytest.raises(ConfigError, match="blank line at data row 2"):
        await flow(ledger, trained, clock).execute(await resolve_source(ledger, "boston-xgboost"), str(bad),
                                                    str(tmp_path / "out.csv"), BatchOptions())
    assert sum(trained.calls.values()) == calls and not (tmp_path / "out.csv").exists()


async def test_a_job_past_its_timeout_leaves_no_output_and_cleans_up(
    ledger: Ledger, clock: FakeClock, trained: FakeBackend, tmp_path: Path
) -> None:
    trained.transform_polls = 10**9
    out = tmp_path / "out.csv"
    with pytest.raises(WaitTimeout, match="did not complete within --timeout 1m00s; it was stopped"):
        await flow(ledger, trained, clock).execute(await resolve_source(ledger, "boston-xgboost"),
                                                    str(write_rows(tmp_path / "in.csv", 5)), str(out),
                                                    BatchOptions(header=True, timeout_s=60))
    assert not out.exists()
    assert trained.calls["stop_transform_job"] == 1
    assert not [k for k, _ in trained.resources if k is Kind.MODEL]
    assert not [uri for uri in trained.objects if "/batch-" in uri]


async def test_a_sweep_run_transforms_with_its_best_trial(ledger: Ledger, clock: FakeClock, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from jobman.trials import best_of, trials_of
    from tests.unit.test_sweep import fake, sweep_experiment

    monkeypatch.chdir(tmp_path)
    backend = fake(clock)
    await ExperimentRun(sweep_experiment(tmp_path, trials=4, parallel=2), ledger, backend, clock=clock,
                        timing=TIMING).execute()
    run, job = await resolve_source(ledger, "boston-xgboost/r1")
    best = best_of(trials_of(await ledger.resources(run_ids=[run.id])))
    assert best is not None and job.name == best.resource.name
    outcome = await flow(ledger, backend, clock).execute((run, job), str(write_rows(tmp_path / "in.csv", 4)),
                                                         str(tmp_path / "out.csv"), BatchOptions(header=True))
    assert outcome.job.name == "boston-xgboost-r1-b1-transform"
    model = await ledger.resource_by_name(Kind.MODEL, "boston-xgboost-r1-b1-model")
    assert model is not None and f"/{best.resource.name}/" in model.spec["PrimaryContainer"]["ModelDataUrl"]
