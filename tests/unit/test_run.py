"""The run workflow and the reconciler against the in-memory backend, on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobman.backends.fake import FakeBackend
from jobman.clock import FakeClock
from jobman.config import Experiment, load_experiment
from jobman.errors import BackendError, RunFailed, WaitTimeout
from jobman.kinds import Kind
from jobman.ledger.store import Ledger, Resource
from jobman.reconciler import Reconciler
from jobman.run import ExperimentRun
from jobman.states import Desired, Status
from jobman.timing import Timing
from jobman.workflow import SilentReporter
from tests.conftest import write_experiment

TIMING = Timing(training_poll_s=5, endpoint_poll_s=15)


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Experiment:
    monkeypatch.chdir(tmp_path)
    return load_experiment(write_experiment(tmp_path / "exp.toml"))


@pytest.fixture
def backend(clock: FakeClock) -> FakeBackend:
    return FakeBackend(now=clock.now)


def make_run(
    x: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock, reporter: object = None
) -> ExperimentRun:
    return ExperimentRun(x, ledger, backend, clock=clock, timing=TIMING, reporter=reporter)  # type: ignore[arg-type]


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, no except clause in the controller catches it."""


class CrashAt(SilentReporter):
    """Raises (as a kill would stop the process) when a resource first reaches a status."""

    def __init__(self, kind: Kind, status: str) -> None:
        self.kind, self.status_ = kind, status

    def status(self, resource: Resource) -> None:
        if resource.kind is self.kind and resource.status == self.status_:
            raise Killed


async def test_full_run(experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> None:
    outcome = await make_run(experiment, ledger, backend, clock).execute()
    assert outcome.run.status == "succeeded" and not outcome.resumed
    assert outcome.metrics["rows"] == 167 and outcome.metrics["rmse"] > 0
    assert outcome.metrics["invoke"]["chunks"] == 1
    resources = {r.kind: r for r in await ledger.resources(run_ids=[outcome.run.id])}
    assert resources[Kind.TRAINING_JOB].status == "Completed"
    for kind in (Kind.MODEL, Kind.ENDPOINT_CONFIG, Kind.ENDPOINT):
        assert (resources[kind].status, resources[kind].desired) == (Status.ABSENT, Desired.ABSENT)
    assert [k for k, _ in backend.resources] == [Kind.TRAINING_JOB]
    # The chain is deleted in SageMaker's order, the config only once the endpoint is gone.
    order = [op for op in backend.history if op.startswith("delete_")]
    # Then the schedules that would have deleted them: a teardown cut short leaves the server-side TTL.
    assert order == ["delete_endpoint", "delete_endpoint_config", "delete_model"] + ["delete_schedule"] * 3
    endpoint = resources[Kind.ENDPOINT]
    assert endpoint.expires_at is not None and endpoint.billed_from and endpoint.billed_until
    tags = backend_tags = {t["Key"]: t["Value"] for t in endpoint.spec["Tags"]}
    assert tags["jobman:managed"] == "true" and tags["jobman:experiment"] == "boston-xgboost"
    assert backend_tags["jobman:expires-at"].endswith("Z")
    assert (outcome.output_dir / "predictions.csv").read_text().startswith("actual,predicted\n")
    assert (outcome.output_dir / "predicted_vs_actual.png").stat().st_size > 1000
    events = await ledger.events(endpoint.id)
    assert [e.to_status for e in events] == ["Pending", "Creating", "InService", "Deleting", Status.ABSENT]


@pytest.mark.parametrize(("kind", "status"), [
    (Kind.TRAINING_JOB, "InProgress"), (Kind.ENDPOINT, "Creating"), (Kind.ENDPOINT, "InService"),
])
async def test_crash_then_resume_creates_nothing_twice(
    experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock, kind: Kind, status: str
) -> None:
    with pytest.raises(Killed):
        await make_run(experiment, ledger, backend, clock, CrashAt(kind, status)).execute()
    exp = await ledger.experiment("boston-xgboost")
    assert exp is not None
    run = await ledger.latest_run(exp.id)
    assert run is not None and run.status == "running"
    outcome = await make_run(experiment, ledger, backend, clock).execute()
    assert outcome.resumed and outcome.run.number == run.number and outcome.run.status == "succeeded"
    assert backend.calls["create_training_job"] == 1
    assert backend.calls["create_endpoint"] == 1
    # A finished run is not resumed: the next `jobman run` is run 2.
    again = await make_run(experiment, ledger, backend, clock).execute()
    assert again.run.number == run.number + 1 and not again.resumed


async def test_crash_between_intent_and_create_adopts(
    experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock
) -> None:
    """The create reached SageMaker but the reply was lost: the resumed run adopts the job."""
    backend.fail_next["create_training_job"] = BackendError("connection reset", retryable=True)
    original_create = backend.create

    async def create_then_lose_reply(kind: Kind, request: dict) -> dict:  # type: ignore[type-arg]
        response = await original_create(kind, request)
        if kind is Kind.TRAINING_JOB and backend.calls["create_training_job"] == 1:
            raise Killed
        return response

    backend.fail_next.clear()
    backend.create = create_then_lose_reply  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await make_run(experiment, ledger, backend, clock).execute()
    outcome = await make_run(experiment, ledger, backend, clock).execute()
    assert outcome.run.status == "succeeded"
    assert backend.calls["create_training_job"] == 1  # the listing found it; no second create


async def test_failed_training_fails_the_run(
    experiment: Experiment, ledger: Ledger, clock: FakeClock
) -> None:
    backend = FakeBackend(now=clock.now, training_outcome="Failed")
    with pytest.raises(RunFailed, match="training job boston-xgboost-r1-train Failed: AlgorithmError"):
        await make_run(experiment, ledger, backend, clock).execute()
    exp = await ledger.experiment("boston-xgboost")
    run = await ledger.latest_run(exp.id)  # type: ignore[union-attr]
    assert run is not None and run.status == "failed" and "AlgorithmError" in (run.message or "")
    assert backend.calls["create_endpoint"] == 0


async def test_stopped_training_is_a_failure(experiment: Experiment, ledger: Ledger, clock: FakeClock) -> None:
    backend = FakeBackend(now=clock.now, training_outcome="Stopped")
    with pytest.raises(RunFailed, match="Stopped"):
        await make_run(experiment, ledger, backend, clock).execute()


async def test_training_deadline_stops_the_job(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    experiment = load_experiment(write_experiment(tmp_path / "exp.toml", {'max_runtime = "24h"': 'max_runtime = "1m"'}))
    backend = FakeBackend(now=clock.now, training_polls=10**9)
    with pytest.raises(RunFailed, match="Stopped"):
        await make_run(experiment, ledger, backend, clock).execute()
    assert backend.calls["stop_training_job"] == 1
    assert clock.slept_s >= 60 + 15 * 60  # waited out MaxRuntime plus the slack, on the fake clock only
    job = await ledger.resource_by_name(Kind.TRAINING_JOB, "boston-xgboost-r1-train")
    assert job is not None
    assert any("deadline passed" in (e.message or "") for e in await ledger.events(job.id))


async def test_endpoint_deadline_deletes_it(experiment: Experiment, ledger: Ledger, clock: FakeClock) -> None:
    backend = FakeBackend(now=clock.now, endpoint_polls=10**9)
    with pytest.raises(WaitTimeout, match="not InService within 30m00s"):
        await make_run(experiment, ledger, backend, clock).execute()
    assert backend.calls["delete_endpoint"] == 1
    assert not [k for k, _ in backend.resources if k is not Kind.TRAINING_JOB]


async def test_changed_file_starts_a_new_run_and_tears_down_the_old(
    experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path
) -> None:
    with pytest.raises(Killed):
        await make_run(experiment, ledger, backend, clock, CrashAt(Kind.ENDPOINT, "InService")).execute()
    changed = load_experiment(write_experiment(tmp_path / "exp.toml", {"seed = 0": "seed = 1"}))
    outcome = await make_run(changed, ledger, backend, clock).execute()
    assert outcome.run.number == 2 and not outcome.resumed
    runs = await ledger.runs(outcome.run.experiment_id)
    assert [r.status for r in runs] == ["superseded", "succeeded"]
    assert [k for k, _ in backend.resources] == [Kind.TRAINING_JOB, Kind.TRAINING_JOB]


class FailAtStep(SilentReporter):
    def __init__(self, words: str) -> None:
        self.words = words

    def step(self, text: str) -> None:
        if self.words in text:
            raise RuntimeError("interrupted")


async def test_the_new_run_is_held_while_it_tears_the_old_one_down_and_released_if_that_fails(
    experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path
) -> None:
    """Tearing down the superseded run happens under the new run's renewed hold: an endpoint's deletion may
    outlast a lease, and a failure there must not leave the new run held until its lease runs out."""
    with pytest.raises(Killed):
        await make_run(experiment, ledger, backend, clock, CrashAt(Kind.ENDPOINT, "InService")).execute()
    changed = load_experiment(write_experiment(tmp_path / "exp.toml", {"seed = 0": "seed = 1"}))
    with pytest.raises(RuntimeError, match="interrupted"):
        await make_run(changed, ledger, backend, clock, FailAtStep("tearing it down")).execute()
    [first, second] = await ledger.runs((await ledger.all_runs())[0].experiment_id)
    assert second.number == 2 and not second.finished and second.held_by is None
    outcome = await make_run(changed, ledger, backend, clock).execute()
    assert outcome.run.number == 2 and outcome.resumed


async def test_keep_records_ttl(experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock,
                                tmp_path: Path) -> None:
    kept = load_experiment(write_experiment(tmp_path / "exp.toml", {"keep = false": "keep = true"}))
    start = clock.now()
    outcome = await make_run(kept, ledger, backend, clock).execute()
    assert outcome.kept_endpoint is not None
    assert outcome.kept_endpoint.status == "InService"
    expires = outcome.kept_endpoint.expires_at
    assert expires is not None and 3600 <= (expires - start).total_seconds() <= 3600 + clock.slept_s
    assert (Kind.ENDPOINT, outcome.kept_endpoint.name) in backend.resources


async def test_observation_is_bulk(ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> None:
    """250 tracked endpoints that did not change cost 3 List pages, no Describe."""
    exp = await ledger.experiment("bulk", create_at=clock.now())
    run = await ledger.start_run(exp.id, digest="d", backend="fake", region="us-east-1",  # type: ignore[union-attr]
                                 config_path="-", at=clock.now())
    reconciler = Reconciler(ledger, backend, clock)
    rows = []
    for i in range(250):
        spec = {"EndpointName": f"bulk-e{i}", "EndpointConfigName": "c", "Tags": []}
        rows.append(await ledger.add_resource(run.id, Kind.ENDPOINT, f"bulk-e{i}", spec, at=clock.now()))
    backend.endpoint_polls = 0
    result = await reconciler.reconcile(rows, create=True)
    assert backend.calls["create_endpoint"] == 250
    rows = [result.get(r) for r in rows]
    result = await reconciler.reconcile(rows)  # Creating -> InService: each changed, so Described
    rows = [result.get(r) for r in rows]
    assert {r.status for r in rows} == {"InService"}
    backend.calls.clear()
    result = await reconciler.reconcile(rows)
    assert dict(backend.calls) == {"list_endpoints": 3}


async def test_drift_is_recorded(ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> None:
    exp = await ledger.experiment("drift", create_at=clock.now())
    run = await ledger.start_run(exp.id, digest="d", backend="fake", region="us-east-1",  # type: ignore[union-attr]
                                 config_path="-", at=clock.now())
    reconciler = Reconciler(ledger, backend, clock)
    row = await ledger.add_resource(run.id, Kind.MODEL, "drift-m", {"ModelName": "drift-m", "Tags": []},
                                    at=clock.now())
    row = (await reconciler.reconcile([row], create=True)).get(row)
    assert row.status == "Present"
    del backend.resources[(Kind.MODEL, "drift-m")]  # deleted behind jobman's back
    row = (await reconciler.reconcile([row])).get(row)
    assert row.status == Status.ABSENT
    events = await ledger.events(row.id)
    assert events[-1].message == "not found on the backend: deleted outside jobman"
    row = (await reconciler.reconcile([row], create=True)).get(row)  # a resumed run recreates it
    assert row.status == "Present" and backend.calls["create_model"] == 2


async def test_name_taken_by_someone_else(ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> None:
    exp = await ledger.experiment("taken", create_at=clock.now())
    run = await ledger.start_run(exp.id, digest="d", backend="fake", region="us-east-1",  # type: ignore[union-attr]
                                 config_path="-", at=clock.now())
    await backend.create(Kind.MODEL, {"ModelName": "taken-m", "Tags": [{"Key": "jobman:config", "Value": "other"}]})
    spec = {"ModelName": "taken-m", "Tags": [{"Key": "jobman:config", "Value": "mine"}]}
    row = await ledger.add_resource(run.id, Kind.MODEL, "taken-m", spec, at=clock.now())
    result = await Reconciler(ledger, backend, clock).reconcile([row], create=True)
    assert [e.code for _, e in result.errors] == ["NameTaken"]


async def test_one_error_does_not_stop_the_pass(ledger: Ledger, backend: FakeBackend, clock: FakeClock) -> None:
    exp = await ledger.experiment("errs", create_at=clock.now())
    run = await ledger.start_run(exp.id, digest="d", backend="fake", region="us-east-1",  # type: ignore[union-attr]
                                 config_path="-", at=clock.now())
    rows = [await ledger.add_resource(run.id, Kind.MODEL, f"errs-m{i}", {"ModelName": f"errs-m{i}", "Tags": []},
                                      at=clock.now()) for i in range(3)]
    backend.fail_next["create_model"] = BackendError("boom", code="InternalFailure", retryable=True)
    result = await Reconciler(ledger, backend, clock).reconcile(rows, create=True)
    assert len(result.errors) == 1
    assert sorted(result.get(r).status for r in rows) == [ "Pending", "Present", "Present"]


async def test_crash_during_teardown_resumes_the_teardown(
    experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock
) -> None:
    """Killed after evaluation, with the endpoint already deleted: the rerun finishes, deploying nothing."""
    with pytest.raises(Killed):
        await make_run(experiment, ledger, backend, clock, CrashAt(Kind.ENDPOINT, Status.ABSENT)).execute()
    outcome = await make_run(experiment, ledger, backend, clock).execute()
    assert outcome.resumed and outcome.run.status == "succeeded"
    assert backend.calls["create_endpoint"] == 1 and backend.calls["invoke_endpoint"] == 1
    assert [k for k, _ in backend.resources] == [Kind.TRAINING_JOB]


async def test_unknown_status_is_reported_and_bounded_by_the_deadline(
    experiment: Experiment, ledger: Ledger, clock: FakeClock
) -> None:
    backend = FakeBackend(now=clock.now, endpoint_polls=10**9)
    seen: list[str] = []

    class Watch(SilentReporter):
        def status(self, resource: Resource) -> None:
            seen.append(resource.status)
            if resource.kind is Kind.ENDPOINT and resource.status == "Creating":
                backend.resources[(Kind.ENDPOINT, resource.name)].status = "Hibernating"  # not in any table

    with pytest.raises(WaitTimeout):
        await make_run(experiment, ledger, backend, clock, Watch()).execute()
    assert "Hibernating" in seen
    assert backend.calls["delete_endpoint"] == 1


async def test_kept_endpoint_updating_later_is_not_late(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path
) -> None:
    kept = load_experiment(write_experiment(tmp_path / "exp.toml", {"keep = false": "keep = true"}))
    outcome = await make_run(kept, ledger, backend, clock).execute()
    assert outcome.kept_endpoint is not None and outcome.kept_endpoint.deadline_at is None
    clock.advance(2 * 3600)
    backend.resources[(Kind.ENDPOINT, outcome.kept_endpoint.name)].status = "Updating"
    result = await Reconciler(ledger, backend, clock).reconcile([outcome.kept_endpoint])
    assert result.get(outcome.kept_endpoint).status == "Updating"
    assert backend.calls["delete_endpoint"] == 0


async def test_resumed_run_fails_fast_on_an_out_of_service_endpoint(
    experiment: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock
) -> None:
    with pytest.raises(Killed):
        await make_run(experiment, ledger, backend, clock, CrashAt(Kind.ENDPOINT, "Creating")).execute()
    backend.resources[(Kind.ENDPOINT, "boston-xgboost-r1-endpoint")].status = "OutOfService"
    with pytest.raises(RunFailed, match="endpoint boston-xgboost-r1-endpoint OutOfService"):
        await make_run(experiment, ledger, backend, clock).execute()
    assert clock.slept_s < 60 and backend.calls["delete_endpoint"] == 1
