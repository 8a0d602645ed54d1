"""`[evaluation] mode = "transform"`: the run evaluates through a Batch Transform job, on the in-memory backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobman.backends.fake import FakeBackend
from jobman.clock import FakeClock
from jobman.config import Experiment, load_experiment
from jobman.cost import resource_cost
from jobman.errors import ConfigError, RunFailed, WaitTimeout
from jobman.kinds import Kind
from jobman.ledger.store import Ledger, Resource
from jobman.run import ExperimentRun
from jobman.states import Desired, Status
from jobman.timing import Timing
from jobman.workflow import SilentReporter
from tests.conftest import write_experiment
from tests.unit.test_run import CrashAt, Killed

TIMING = Timing(training_poll_s=5, endpoint_poll_s=15)
TRANSFORM = {"concurrency = 8": 'concurrency = 8\nmode = "transform"\ntransform_timeout = "30m"'}


def experiment(tmp_path: Path, replace: dict[str, str] | None = None, name: str = "exp.toml") -> Experiment:
    return load_experiment(write_experiment(tmp_path / name, {**TRANSFORM, **(replace or {})}))


def make_run(x: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock,
             reporter: SilentReporter | None = None) -> ExperimentRun:
    return ExperimentRun(x, ledger, backend, clock=clock, timing=TIMING, reporter=reporter)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


async def test_transform_mode_matches_endpoint_mode_and_creates_no_endpoint(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    by_transform = FakeBackend(now=clock.now)
    outcome = await make_run(experiment(tmp_path), ledger, by_transform, clock).execute()
    assert outcome.run.status == "succeeded"
    assert by_transform.calls["create_endpoint_config"] == 0 and by_transform.calls["create_endpoint"] == 0
    assert by_transform.calls["create_transform_job"] == 1
    rows = {r.kind: r for r in await ledger.resources(run_ids=[outcome.run.id]) if r.kind is not Kind.SCHEDULE}
    assert set(rows) == {Kind.TRAINING_JOB, Kind.MODEL, Kind.TRANSFORM_JOB}
    job = rows[Kind.TRANSFORM_JOB]
    assert job.status == Status.COMPLETED and job.billed_from is not None and job.billed_until is not None
    assert job.spec["MaxPayloadInMB"] == 4 and job.spec["BatchStrategy"] == "MultiRecord"
    assert job.spec["TransformInput"]["SplitType"] == "Line"
    assert job.spec["TransformOutput"]["AssembleWith"] == "Line"
    cost = resource_cost(job, "sagemaker", clock.now())
    assert cost is not None and cost.billed_s > 0 and cost.usd is not None and cost.usd > 0
    assert (rows[Kind.MODEL].status, rows[Kind.MODEL].desired) == (Status.ABSENT, Desired.ABSENT)
    # The schedules that would stop the job and delete its model were made first and deleted last.
    schedules = [r for r in await ledger.resources(run_ids=[outcome.run.id]) if r.kind is Kind.SCHEDULE]
    assert sorted(r.name for r in schedules) == ["boston-xgboost-r1-ttl-model", "boston-xgboost-r1-ttl-transform"]
    assert all(r.status == Status.ABSENT for r in schedules)
    assert by_transform.history.index("create_schedule") < by_transform.history.index("create_model")

    by_endpoint = FakeBackend(now=clock.now)
    endpoint_x = load_experiment(write_experiment(tmp_path / "endpoint.toml", {'name = "boston-xgboost"':
                                                                               'name = "boston-endpoint"'}))
    compared = await make_run(endpoint_x, ledger, by_endpoint, clock).execute()
    for key in ("rmse", "mae", "r2", "rows"):
        assert outcome.metrics[key] == compared.metrics[key]
    assert outcome.output_dir is not None and compared.output_dir is not None
    assert (outcome.output_dir / "predictions.csv").read_text() == (compared.output_dir / "predictions.csv").read_text()
    assert (outcome.output_dir / "predicted_vs_actual.png").stat().st_size > 1000


async def test_kill_during_the_transform_resumes_one_job(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = FakeBackend(now=clock.now)
    x = experiment(tmp_path)
    with pytest.raises(Killed):
        await make_run(x, ledger, backend, clock, CrashAt(Kind.TRANSFORM_JOB, Status.IN_PROGRESS)).execute()
    uploads = backend.calls["upload_file"]
    outcome = await make_run(x, ledger, backend, clock).execute()
    assert outcome.resumed and outcome.run.status == "succeeded" and outcome.metrics["rows"] == 167
    assert backend.calls["create_transform_job"] == 1 and backend.calls["create_training_job"] == 1
    # The resumed run uploaded its training data again (same keys), but not the transform's input.
    assert backend.calls["upload_file"] - uploads == 2


async def test_a_lost_create_reply_is_adopted(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = FakeBackend(now=clock.now)
    original_create = backend.create

    async def create_then_die(kind: Kind, request: dict) -> dict:  # type: ignore[type-arg]
        response = await original_create(kind, request)
        if kind is Kind.TRANSFORM_JOB:
            raise Killed
        return response

    backend.create = create_then_die  # type: ignore[method-assign]
    x = experiment(tmp_path)
    with pytest.raises(Killed):
        await make_run(x, ledger, backend, clock).execute()
    backend.create = original_create  # type: ignore[method-assign]
    outcome = await make_run(x, ledger, backend, clock).execute()
    assert outcome.run.status == "succeeded" and backend.calls["create_transform_job"] == 1


async def test_past_its_timeout_the_job_is_stopped_and_the_run_fails(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    backend = FakeBackend(now=clock.now, transform_polls=10**9)
    with pytest.raises(WaitTimeout, match=r"did not complete within evaluation.transform_timeout = 30m00s"):
        await make_run(experiment(tmp_path), ledger, backend, clock).execute()
    assert backend.calls["stop_transform_job"] == 1
    job = await ledger.resource_by_name(Kind.TRANSFORM_JOB, "boston-xgboost-r1-transform")
    assert job is not None and job.status == Status.STOPPED
    model = await ledger.resource_by_name(Kind.MODEL, "boston-xgboost-r1-model")
    assert model is not None and model.status == Status.ABSENT


async def test_a_failed_job_fails_the_run_with_its_reason(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = FakeBackend(now=clock.now, transform_polls=10**9)

    class FailIt(SilentReporter):
        def status(self, resource: Resource) -> None:
            if resource.kind is Kind.TRANSFORM_JOB and resource.status == Status.IN_PROGRESS:
                fake = backend.resources[(Kind.TRANSFORM_JOB, resource.name)]
                fake.status, fake.failure_reason = Status.FAILED, "ClientError: bad row 3"

    with pytest.raises(RunFailed, match="transform job boston-xgboost-r1-transform Failed: ClientError: bad row 3"):
        await make_run(experiment(tmp_path), ledger, backend, clock, FailIt()).execute()
    exp = await ledger.experiment("boston-xgboost")
    run = await ledger.latest_run(exp.id)  # type: ignore[union-attr]
    assert run is not None and run.status == "failed"
    assert not [k for k, _ in backend.resources if k in (Kind.MODEL, Kind.SCHEDULE)]


async def test_an_output_short_of_rows_fails_the_run(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = FakeBackend(now=clock.now)
    original = backend._transform

    def drop_last_line(r: object) -> None:
        original(r)  # type: ignore[arg-type]
        for uri, body in backend.objects.items():
            if uri.endswith(".out"):
                backend.objects[uri] = b"\n".join(body.split(b"\n")[:-2]) + b"\n"

    backend._transform = drop_last_line  # type: ignore[method-assign]
    with pytest.raises(RunFailed, match="166 predictions for 167 rows sent"):
        await make_run(experiment(tmp_path), ledger, backend, clock).execute()


@pytest.mark.parametrize(("replace", "message"), [
    ({'mode = "transform"': 'mode = "batch"'}, r"evaluation.mode: expected 'endpoint'"),
    ({"keep = false": "keep = true"}, r"endpoint.keep: evaluation.mode = 'transform' creates no endpoint"),
    ({'mode = "transform"': 'mode = "transform"\nmax_concurrent_transforms = 26'},
     r"evaluation.max_concurrent_transforms: expected an integer from 1 to 25"),
    ({'mode = "transform"': 'mode = "transform"\ntransform_instance_count = 0'},
     r"evaluation.transform_instance_count: expected a positive number"),
    ({'transform_timeout = "30m"': 'transform_timeout = "8d"'}, r"evaluation.transform_timeout: expected"),
    ({'mode = "transform"': 'mode = "transform"\ntransform_instance_type = "big"'},
     r"evaluation.transform_instance_type: expected a SageMaker instance type"),
])
def test_transform_settings_are_checked(tmp_path: Path, replace: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        experiment(tmp_path, replace)


def test_the_cost_ceiling_bounds_the_transform_job(tmp_path: Path) -> None:
    from jobman.run import check_cost_ceiling

    x = experiment(tmp_path, {'backend = "local"': 'backend = "sagemaker"',
                              'ttl = "1h"': 'ttl = "1h"\nmax_cost_usd = 0.01\nttl_enforcement = "gc"'})
    with pytest.raises(ConfigError, match=r"transform job may cost up to \$.*evaluation.transform_timeout = 30m"):
        check_cost_ceiling(x)
