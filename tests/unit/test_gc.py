"""gc, stop, fleet-wide reconcile and cost, against the in-memory backend on a fake clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from jobman.backends.fake import FakeBackend
from jobman.clock import FakeClock, utc_iso
from jobman.config import AwsConfig, Experiment, load_experiment
from jobman.cost import hourly_usd, resource_cost
from jobman.errors import ConfigError
from jobman.fleet import reconcile_all, stop_experiment
from jobman.gc import collect_garbage
from jobman.kinds import Kind
from jobman.ledger.store import Ledger
from jobman.run import ExperimentRun
from jobman.states import Status
from jobman.status import status_view
from jobman.timing import Timing
from tests.conftest import write_experiment

TARGET = ("fake", "us-east-1")


@pytest.fixture
def backend(clock: FakeClock) -> FakeBackend:
    return FakeBackend(now=clock.now, endpoint_polls=0, training_polls=0)


@pytest.fixture
def opener(backend: FakeBackend):  # type: ignore[no-untyped-def]
    async def open_backend(name: str, aws: AwsConfig) -> FakeBackend:
        assert (name, aws.region) == TARGET
        return backend

    return open_backend


def kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Experiment:
    monkeypatch.chdir(tmp_path)
    return load_experiment(write_experiment(tmp_path / "exp.toml", {"keep = false": "keep = true"}))


async def run_kept(x: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> None:
    # The fake backend's runs are recorded as backend "fake" so fleet operations open the fake.
    x = Experiment(**{**x.__dict__, "backend": "fake"})
    await ExperimentRun(x, ledger, backend, clock=clock, timing=Timing(1, 1)).execute()


def tags(expires: str | None, experiment: str = "lost") -> list[dict[str, str]]:
    found = [{"Key": "jobman:managed", "Value": "true"}, {"Key": "jobman:experiment", "Value": experiment}]
    if expires:
        found.append({"Key": "jobman:expires-at", "Value": expires})
    return found


async def test_ttl_expired_endpoint_is_deleted_with_its_chain(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await run_kept(kept(tmp_path, monkeypatch), ledger, backend, clock)
    early = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=True)
    assert early.candidates == []
    clock.advance(3601)
    dry = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=True)
    assert sorted(c.kind.value for c in dry.candidates) == ["endpoint", "endpoint_config", "model"] + ["schedule"] * 3
    assert backend.calls["delete_endpoint"] == 0 and (Kind.ENDPOINT, "boston-xgboost-r1-endpoint") in backend.resources
    report = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=False)
    assert len(report.candidates) == 6
    assert [k for k, _ in backend.resources] == [Kind.TRAINING_JOB]
    assert [op for op in backend.history if op.startswith("delete_")] == [
        "delete_endpoint", "delete_endpoint_config", "delete_model"] + ["delete_schedule"] * 3
    again = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=False)
    assert again.candidates == [] and backend.calls["delete_endpoint"] == 1


async def test_orphans_tagged_and_expired_are_deleted_untagged_never(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener
) -> None:
    past, future = utc_iso(clock.now() - timedelta(hours=1)), utc_iso(clock.now() + timedelta(hours=1))
    await backend.create(Kind.MODEL, {"ModelName": "lost-m", "Tags": tags(past)})
    await backend.create(Kind.ENDPOINT_CONFIG, {"EndpointConfigName": "lost-c", "Tags": tags(past)})
    await backend.create(Kind.ENDPOINT, {"EndpointName": "lost-e", "Tags": tags(past)})
    await backend.create(Kind.ENDPOINT, {"EndpointName": "fresh-e", "Tags": tags(future)})
    await backend.create(Kind.ENDPOINT, {"EndpointName": "no-ttl-e", "Tags": tags(None)})
    await backend.create(Kind.ENDPOINT, {"EndpointName": "someone-elses", "Tags": []})
    dry = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=True)
    assert sorted(c.name for c in dry.candidates) == ["lost-c", "lost-e", "lost-m"]
    assert all(c.orphan for c in dry.candidates)
    assert await ledger.experiments() == []  # a dry run writes nothing
    await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=False)
    assert sorted(name for _, name in backend.resources) == ["fresh-e", "no-ttl-e", "someone-elses"]
    # The orphans are on record now, under the experiment their tag named.
    exp = await ledger.experiment("lost")
    assert exp is not None
    [run] = await ledger.runs(exp.id)
    assert run.status == "orphaned"
    rows = await ledger.resources(run_ids=[run.id])
    assert sorted((r.name, r.status) for r in rows) == [(n, Status.ABSENT) for n in ("lost-c", "lost-e", "lost-m")]


async def test_stop_tears_down_and_stops_training(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await run_kept(kept(tmp_path, monkeypatch), ledger, backend, clock)
    # A second, unfinished run whose training job is still going.
    exp = await ledger.experiment("boston-xgboost")
    assert exp is not None
    run = await ledger.start_run(exp.id, digest="x", backend="fake", region="us-east-1", config_path="-",
                                 at=clock.now())
    spec = {"TrainingJobName": "boston-xgboost-r2-train", "Tags": [],
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"}}
    backend.training_polls = 10**6
    job = await ledger.add_resource(run.id, Kind.TRAINING_JOB, "boston-xgboost-r2-train", spec, at=clock.now())
    from jobman.reconciler import Reconciler

    await Reconciler(ledger, backend, clock).reconcile([job], create=True)
    await stop_experiment(ledger, opener, clock, "boston-xgboost")
    assert backend.calls["stop_training_job"] == 1
    assert backend.resources[(Kind.TRAINING_JOB, "boston-xgboost-r2-train")].status == "Stopped"
    assert not [k for k, _ in backend.resources if k is not Kind.TRAINING_JOB]
    job = await ledger.resource(job.id)
    assert job.status == "Stopped" and job.stop_requested  # asked for: not a failure
    assert [r.status for r in await ledger.runs(exp.id)] == ["succeeded", "stopped"]
    with pytest.raises(ConfigError, match="experiment 'nope' is not in the ledger"):
        await stop_experiment(ledger, opener, clock, "nope")


async def test_reconcile_records_drift(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await run_kept(kept(tmp_path, monkeypatch), ledger, backend, clock)
    del backend.resources[(Kind.ENDPOINT, "boston-xgboost-r1-endpoint")]
    report = await reconcile_all(ledger, opener, clock)
    assert [(a.name, a.status) for _, a in report.changes] == [("boston-xgboost-r1-endpoint", Status.ABSENT)]
    assert backend.calls["create_endpoint"] == 1  # recorded, not recreated: only a resumed run recreates


async def test_cost(ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    await run_kept(kept(tmp_path, monkeypatch), ledger, backend, clock)
    clock.advance(1800)
    view = await status_view(ledger, clock.now())
    [exp] = view["experiments"]
    endpoint = next(r for r in exp["resources"] if r["kind"] == "endpoint")
    price = hourly_usd(Kind.ENDPOINT, "ml.m4.xlarge")
    assert price is not None and endpoint["billed_s"] >= 1800
    assert endpoint["cost_usd"] == pytest.approx(endpoint["billed_s"] / 3600 * price, rel=1e-3)
    assert exp["cost_usd"] is not None and view["total_cost_usd"] == exp["cost_usd"]
    assert view["prices"]["as_of"]
    row = await ledger.resource_by_name(Kind.ENDPOINT, "boston-xgboost-r1-endpoint")
    assert row is not None
    unknown = resource_cost(row.__class__(**{**row.__dict__, "instance_type": "ml.z9.mega"}), "sagemaker",
                            clock.now())
    assert unknown is not None and unknown.usd is None  # unknown, never zero
    local = resource_cost(row, "local", clock.now())
    assert local is not None and local.usd == 0.0


async def test_a_permanent_delete_error_does_not_hang_teardown(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobman.errors import BackendError

    await run_kept(kept(tmp_path, monkeypatch), ledger, backend, clock)
    backend.fail_next["delete_endpoint"] = BackendError("AccessDeniedException: no", code="AccessDeniedException")
    with pytest.raises(BackendError, match="teardown incomplete: AccessDeniedException"):
        await stop_experiment(ledger, opener, clock, "boston-xgboost")
    assert clock.slept_s < 60  # gave up at once instead of waiting out the teardown deadline
    await stop_experiment(ledger, opener, clock, "boston-xgboost")  # the next try succeeds
    assert [k for k, _ in backend.resources] == [Kind.TRAINING_JOB]


async def _running_transform(ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> int:
    """A run whose transform job is still going, as a `jobman run` killed mid-transform leaves it."""
    exp = await ledger.experiment("boston-xgboost", create_at=clock.now())
    assert exp is not None
    run = await ledger.start_run(exp.id, digest="x", backend="fake", region="us-east-1", config_path="-",
                                 at=clock.now())
    backend.transform_polls = 10**6
    spec = {"TransformJobName": "boston-xgboost-r1-transform", "ModelName": "m", "Tags": [],
            "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://b/in/"}}},
            "TransformOutput": {"S3OutputPath": "s3://b/out"}}
    job = await ledger.add_resource(run.id, Kind.TRANSFORM_JOB, "boston-xgboost-r1-transform", spec, at=clock.now(),
                                    deadline_at=clock.now() + timedelta(hours=1))
    from jobman.reconciler import Reconciler

    await Reconciler(ledger, backend, clock).reconcile([job], create=True)
    return job.id


async def test_gc_stops_a_transform_job_past_its_deadline(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener
) -> None:
    job_id = await _running_transform(ledger, backend, clock)
    report = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=False)
    assert backend.calls["stop_transform_job"] == 0 and not report.candidates  # not yet past its deadline
    clock.advance(3601)
    report = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=False)
    assert [c.name for c in report.candidates] == ["boston-xgboost-r1-transform"]
    assert backend.calls["stop_transform_job"] == 1
    job = await ledger.resource(job_id)
    assert job.status == Status.STOPPED and job.stop_requested


async def test_stop_stops_a_running_transform_job(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener
) -> None:
    job_id = await _running_transform(ledger, backend, clock)
    await stop_experiment(ledger, opener, clock, "boston-xgboost")
    assert backend.calls["stop_transform_job"] == 1
    assert (await ledger.resource(job_id)).status == Status.STOPPED


async def _kept_run_with_a_transform_model(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A kept endpoint's run to which `jobman transform` added a model with a 10-minute deadline."""
    from jobman.reconciler import Reconciler

    await run_kept(kept(tmp_path, monkeypatch), ledger, backend, clock)
    [run] = await ledger.all_runs()
    name = "boston-xgboost-r1-b1-model"
    spec = {"ModelName": name, "PrimaryContainer": {"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}, "Tags": []}
    model = await ledger.add_resource(run.id, Kind.MODEL, name, spec, at=clock.now(),
                                      expires_at=clock.now() + timedelta(minutes=10))
    await Reconciler(ledger, backend, clock).reconcile([model], create=True)
    clock.advance(11 * 60)
    return name


async def _endpoint_kept(ledger: Ledger, backend: FakeBackend) -> bool:
    endpoint = await ledger.resource_by_name(Kind.ENDPOINT, "boston-xgboost-r1-endpoint")
    assert endpoint is not None
    return endpoint.desired.value == "present" and (Kind.ENDPOINT, endpoint.name) in backend.resources


async def test_gc_expires_a_transform_model_alone_not_with_the_runs_kept_endpoint(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the transform model's deadline the model goes; the kept endpoint, its config and model stay until
    their own TTL."""
    name = await _kept_run_with_a_transform_model(ledger, backend, clock, tmp_path, monkeypatch)
    report = await collect_garbage(ledger, opener, clock, {TARGET}, dry_run=False)
    assert [c.name for c in report.candidates] == [name]
    assert (Kind.MODEL, name) not in backend.resources
    assert await _endpoint_kept(ledger, backend)


async def test_a_transform_model_gone_after_its_deadline_leaves_the_runs_chain_alone(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile pass that finds it gone past its expiry expires its own chain only, not the run's."""
    name = await _kept_run_with_a_transform_model(ledger, backend, clock, tmp_path, monkeypatch)
    del backend.resources[(Kind.MODEL, name)]
    await reconcile_all(ledger, opener, clock)
    assert await _endpoint_kept(ledger, backend)
