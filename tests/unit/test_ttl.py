"""Cost safety on the in-memory backend: server-side TTL schedules, teardown on every failure, the cost ceiling."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobman.backends.fake import FakeBackend
from jobman.clock import FakeClock
from jobman.config import Experiment, load_experiment
from jobman.errors import ConfigError, InvokeError, JobmanError, RunFailed
from jobman.gc import collect_garbage, default_targets
from jobman.kinds import SCHEDULE_GROUP, Kind
from jobman.ledger.store import Ledger, Resource
from jobman.names import schedule_name
from jobman.reconciler import Reconciler
from jobman.run import GC_ADVICE, ExperimentRun, check_inputs
from jobman.states import Desired, Status
from jobman.tags import tags_in_description
from jobman.timing import Timing
from jobman.ttl import schedule_target
from jobman.workflow import SilentReporter
from tests.conftest import write_experiment

TIMING = Timing(training_poll_s=5, endpoint_poll_s=15, ttl_stagger_s=120)
KEEP = {"keep = false": "keep = true"}
CHAIN_NAMES = {
    Kind.ENDPOINT: "boston-xgboost-r1-endpoint",
    Kind.ENDPOINT_CONFIG: "boston-xgboost-r1-config",
    Kind.MODEL: "boston-xgboost-r1-model",
}


class Steps(SilentReporter):
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)


@pytest.fixture
def backend(clock: FakeClock) -> FakeBackend:
    return FakeBackend(name="fake", now=clock.now)


def experiment_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replace: dict[str, str] | None = None,
                    extra: str = "") -> Experiment:
    monkeypatch.chdir(tmp_path)
    path = write_experiment(tmp_path / "exp.toml", replace)
    if extra:
        path.write_text(path.read_text() + extra)
    return load_experiment(path)


def run(x: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock,
        reporter: SilentReporter | None = None) -> ExperimentRun:
    return ExperimentRun(x, ledger, backend, clock=clock, timing=TIMING, reporter=reporter)


class Killed(BaseException):
    """Stands for kill -9: no except clause in the controller catches it."""


class CrashAtCreating(SilentReporter):
    def status(self, resource: Resource) -> None:
        if resource.kind is Kind.ENDPOINT and resource.status == "Creating":
            raise Killed


def left_on_backend(backend: FakeBackend) -> list[tuple[Kind, str]]:
    return [key for key in backend.resources if key[0] is not Kind.TRAINING_JOB]


async def test_schedules_are_created_before_the_chain_with_the_right_targets(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, KEEP)
    reporter = Steps()
    outcome = await run(x, ledger, backend, clock, reporter).execute()
    endpoint = outcome.kept_endpoint
    assert endpoint is not None and endpoint.expires_at is not None
    creates = [op for op in backend.history if op.startswith("create_") and op != "create_training_job"]
    assert creates == ["create_schedule"] * 3 + ["create_model", "create_endpoint_config", "create_endpoint"]
    for step, kind in enumerate((Kind.ENDPOINT, Kind.ENDPOINT_CONFIG, Kind.MODEL)):
        target = CHAIN_NAMES[kind]
        schedule = backend.resources[(Kind.SCHEDULE, schedule_name(target))]
        request = schedule.request
        at = endpoint.expires_at + timedelta(seconds=120 * step)
        assert request["ScheduleExpression"] == f"at({at:%Y-%m-%dT%H:%M:%S})"
        assert request["ScheduleExpressionTimezone"] == "UTC" and request["GroupName"] == SCHEDULE_GROUP
        assert request["ActionAfterCompletion"] == "DELETE" and request["FlexibleTimeWindow"] == {"Mode": "OFF"}
        action = {Kind.ENDPOINT: "deleteEndpoint", Kind.ENDPOINT_CONFIG: "deleteEndpointConfig",
                  Kind.MODEL: "deleteModel"}[kind]
        assert request["Target"]["Arn"] == f"arn:aws:scheduler:::aws-sdk:sagemaker:{action}"
        member = {Kind.ENDPOINT: "EndpointName", Kind.ENDPOINT_CONFIG: "EndpointConfigName",
                  Kind.MODEL: "ModelName"}[kind]
        assert json.loads(request["Target"]["Input"]) == {member: target}
        assert schedule_target(request) == (kind, target)
        tags = tags_in_description(request["Description"])
        assert tags["jobman:managed"] == "true" and tags["jobman:experiment"] == "boston-xgboost"
        assert tags["jobman:expires-at"] == f"{endpoint.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    assert any("whether or not jobman runs" in s for s in reporter.steps)
    assert any("worst case $" in s for s in reporter.steps)


async def test_the_cloud_deletes_a_kept_chain_and_jobman_records_it_as_expired(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, KEEP)
    outcome = await run(x, ledger, backend, clock).execute()
    clock.advance(3600 + 1)
    assert backend.fire_due_schedules(clock.now()) == [schedule_name(CHAIN_NAMES[Kind.ENDPOINT])]
    chain = await ledger.resources(run_ids=[outcome.run.id])
    reconciler = Reconciler(ledger, backend, clock)
    result = await reconciler.reconcile([r for r in chain if r.kind is Kind.ENDPOINT])
    endpoint = result.get(next(r for r in chain if r.kind is Kind.ENDPOINT))
    # Deleting, then gone: recorded as the TTL's doing, never as drift.
    result = await reconciler.reconcile([endpoint])
    endpoint = result.get(endpoint)
    assert (endpoint.status, endpoint.desired) == (Status.ABSENT, Desired.ABSENT)
    events = await ledger.events(endpoint.id)
    assert "expired: deleted by its TTL schedule" in [e.message for e in events]
    assert "deleted outside jobman" not in " ".join(e.message or "" for e in events)
    rest = [r for r in await ledger.resources(run_ids=[outcome.run.id]) if r.kind is not Kind.TRAINING_JOB]
    assert {r.desired for r in rest} == {Desired.ABSENT}
    # The next gc finishes what is left of the chain (config, model, and the schedules not yet fired).
    async def opener(name: str, aws: Any) -> FakeBackend:
        return backend

    await collect_garbage(ledger, opener, clock, set(), dry_run=False)
    assert left_on_backend(backend) == []


async def test_schedules_that_fired_are_not_drift(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, KEEP)
    outcome = await run(x, ledger, backend, clock).execute()
    clock.advance(3600 + 2 * 120 + 1)
    assert len(backend.fire_due_schedules(clock.now())) == 3
    backend.fire_due_schedules(clock.now())
    reconciler = Reconciler(ledger, backend, clock)
    rows = [r for r in await ledger.resources(run_ids=[outcome.run.id]) if r.kind is not Kind.TRAINING_JOB]
    for _ in range(3):
        result = await reconciler.reconcile(rows)
        rows = [result.get(r) for r in rows]
    assert {(r.status, r.desired) for r in rows} == {(Status.ABSENT, Desired.ABSENT)}
    schedule = next(r for r in rows if r.kind is Kind.SCHEDULE)
    assert "fired at its time and deleted itself" in [e.message for e in await ledger.events(schedule.id)]
    assert left_on_backend(backend) == []


async def test_a_resumed_run_never_creates_a_second_schedule(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, KEEP)

    with pytest.raises(Killed):
        await run(x, ledger, backend, clock, CrashAtCreating()).execute()
    outcome = await run(x, ledger, backend, clock).execute()
    assert outcome.resumed and outcome.run.status == "succeeded"
    assert backend.calls["create_schedule"] == 3 and backend.calls["create_endpoint"] == 1
    # The resumed run kept the first expiry: the schedules still match it.
    assert outcome.kept_endpoint is not None and outcome.kept_endpoint.expires_at is not None
    schedule = backend.resources[(Kind.SCHEDULE, schedule_name(CHAIN_NAMES[Kind.ENDPOINT]))]
    assert schedule.request["ScheduleExpression"] == f"at({outcome.kept_endpoint.expires_at:%Y-%m-%dT%H:%M:%S})"


async def test_a_past_fire_time_is_never_sent_the_chain_is_deleted_instead(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock
) -> None:
    exp = await ledger.experiment("late", create_at=clock.now())
    run_row = await ledger.start_run(exp.id, digest="d", backend="fake", region="us-east-1",  # type: ignore[union-attr]
                                     config_path="-", at=clock.now())
    await backend.create(Kind.MODEL, {"ModelName": "late-r1-model", "Tags": []})
    model = await ledger.add_resource(run_row.id, Kind.MODEL, "late-r1-model", {"ModelName": "late-r1-model"},
                                      at=clock.now(), expires_at=clock.now() + timedelta(seconds=60))
    spec = {"Name": "late-r1-ttl-model", "ScheduleExpression": "at(2026-01-01T00:01:00)"}
    schedule = await ledger.add_resource(run_row.id, Kind.SCHEDULE, "late-r1-ttl-model", spec, at=clock.now(),
                                         expires_at=clock.now() + timedelta(seconds=60))
    clock.advance(61)
    reconciler = Reconciler(ledger, backend, clock)
    result = await reconciler.reconcile([schedule], create=True)
    assert backend.calls["create_schedule"] == 0
    assert (result.get(schedule).status, result.get(schedule).desired) == (Status.ABSENT, Desired.ABSENT)
    model = await ledger.resource(model.id)
    assert model.desired is Desired.ABSENT
    await reconciler.tear_down([model], poll_s=1)
    assert (Kind.MODEL, "late-r1-model") not in backend.resources


async def test_gc_mode_creates_no_schedule_and_says_how_to_run_gc(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, {"keep = false": 'keep = true\nttl_enforcement = "gc"'})
    reporter = Steps()
    await run(x, ledger, backend, clock, reporter).execute()
    assert backend.calls["create_schedule"] == 0
    assert reporter.steps.count(GC_ADVICE) == 1


async def test_stop_removes_the_schedules(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobman.fleet import stop_experiment

    x = experiment_with(tmp_path, monkeypatch, KEEP)
    x = Experiment(**{**x.__dict__, "backend": "fake"})
    await run(x, ledger, backend, clock).execute()

    async def opener(name: str, aws: Any) -> FakeBackend:
        return backend

    monkeypatch.setenv("JOBMAN_POLL_S", "1")
    await stop_experiment(ledger, opener, clock, "boston-xgboost")
    assert left_on_backend(backend) == []


# teardown on every failure after the chain's first intent

STEPS_AFTER_DEPLOY = ["invoke_stream", "regression_metrics", "write_predictions", "scatter_plot"]


@pytest.mark.parametrize("step", STEPS_AFTER_DEPLOY)
@pytest.mark.parametrize("error", [RuntimeError("a bug"), ConfigError("bad value"), OSError(28, "No space left")],
                         ids=["bug", "domain-error", "disk-full"])
async def test_any_failure_after_deploy_tears_the_chain_down(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    step: str, error: Exception,
) -> None:
    x = experiment_with(tmp_path, monkeypatch)

    def broken(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(f"jobman.run.{step}", broken)
    writing = isinstance(error, OSError) and step in ("write_predictions", "scatter_plot")
    with pytest.raises(JobmanError if writing else type(error)) as raised:
        await run(x, ledger, backend, clock).execute()
    if writing:  # the file system's refusal is the user's to fix: one line naming the folder
        assert "cannot write the run's outputs in" in str(raised.value) and "No space left" in str(raised.value)
    else:
        assert raised.value is error  # reported as it was, with its own exit code
    assert backend.calls["create_endpoint"] == 1
    assert left_on_backend(backend) == []
    exp = await ledger.experiment("boston-xgboost")
    latest = await ledger.latest_run(exp.id)  # type: ignore[union-attr]
    assert latest is not None and latest.status == "failed" and str(error) in (latest.message or "")
    chain = [r for r in await ledger.resources(run_ids=[latest.id]) if r.kind is not Kind.TRAINING_JOB]
    assert {(r.status, r.desired) for r in chain} == {(Status.ABSENT, Desired.ABSENT)}


async def test_a_payload_cap_smaller_than_a_row_fails_and_tears_down(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, {"max_payload_bytes = 5_000_000": "max_payload_bytes = 10"})
    with pytest.raises(ConfigError, match="row 1 is"):
        await run(x, ledger, backend, clock).execute()
    assert left_on_backend(backend) == []


async def test_with_keep_a_serving_endpoint_survives_a_later_failure_with_its_ttl(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, KEEP)
    backend.fail_next["invoke_endpoint"] = InvokeError("ModelError: no", code="ModelError")
    with pytest.raises(InvokeError):
        await run(x, ledger, backend, clock).execute()
    assert (Kind.ENDPOINT, CHAIN_NAMES[Kind.ENDPOINT]) in backend.resources
    assert (Kind.SCHEDULE, schedule_name(CHAIN_NAMES[Kind.ENDPOINT])) in backend.resources
    exp = await ledger.experiment("boston-xgboost")
    latest = await ledger.latest_run(exp.id)  # type: ignore[union-attr]
    assert latest is not None and latest.status == "failed"


async def test_with_keep_a_failed_endpoint_is_still_torn_down(
    ledger: Ledger, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FakeBackend(now=clock.now, endpoint_polls=10**9)
    x = experiment_with(tmp_path, monkeypatch, KEEP)

    class FailEndpoint(SilentReporter):
        def status(self, resource: Resource) -> None:
            if resource.kind is Kind.ENDPOINT and resource.status == "Creating":
                backend.resources[(Kind.ENDPOINT, resource.name)].status = "Failed"

    with pytest.raises(RunFailed, match="Failed"):
        await run(x, ledger, backend, clock, FailEndpoint()).execute()
    assert left_on_backend(backend) == []


async def test_a_resumed_kept_run_past_its_ttl_deploys_nothing(
    ledger: Ledger, backend: FakeBackend, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = experiment_with(tmp_path, monkeypatch, KEEP)

    with pytest.raises(Killed):
        await run(x, ledger, backend, clock, CrashAtCreating()).execute()
    clock.advance(2 * 3600)
    with pytest.raises(RunFailed, match=r"TTL \(endpoint.ttl = 1h00m\) passed at .* before the endpoint was deployed"):
        await run(x, ledger, backend, clock).execute()
    assert backend.calls["create_endpoint"] == 1 and left_on_backend(backend) == []


# cost ceiling


def sagemaker_file(tmp_path: Path, *lines_after: tuple[str, str]) -> Path:
    """The example on the sagemaker backend, with `(after, line)`: `line` inserted after the line `after`."""
    text = write_experiment(tmp_path / "exp.toml", {'backend = "local"': 'backend = "sagemaker"'}).read_text()
    for after, line in lines_after:
        assert after in text, after
        text = text.replace(after, f"{after}\n{line}", 1)
    (tmp_path / "exp.toml").write_text(text)
    return tmp_path / "exp.toml"


SCHEDULER_ROLE = ("[aws]", 'scheduler_role_arn = "arn:aws:iam::123456789012:role/JobmanScheduler"')


@pytest.mark.parametrize(("ttl", "instance_type", "refusal"), [
    ("2d", "ml.m4.xlarge", r"the endpoint may cost up to \$\d+\.\d\d \(ml.m4.xlarge x 1 for endpoint.ttl = 2d00h\), "
                           r"over the ceiling of \$5\.00"),
    ("1m", "ml.zz9.huge", "the price of ml.zz9.huge is not in jobman's price table"),
    ("1h", "ml.m4.xlarge", None),
])
def test_cost_ceiling_is_checked_before_anything_is_created(
    tmp_path: Path, ttl: str, instance_type: str, refusal: str | None
) -> None:
    path = sagemaker_file(tmp_path, SCHEDULER_ROLE, ('keep = false', "max_cost_usd = 5"))
    path.write_text(path.read_text().replace('ttl = "1h"', f'ttl = "{ttl}"').replace(
        'instance_type = "ml.m4.xlarge"\ninitial', f'instance_type = "{instance_type}"\ninitial'))
    x = load_experiment(path)
    if refusal is None:
        check_inputs(x)
        return
    with pytest.raises(ConfigError, match=f"exp.toml: endpoint.max_cost_usd: {refusal}"):
        check_inputs(x)


def test_sagemaker_schedules_need_a_role(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"aws.scheduler_role_arn: missing; .*trusts scheduler.amazonaws.com"):
        load_experiment(sagemaker_file(tmp_path))
    assert load_experiment(sagemaker_file(tmp_path, SCHEDULER_ROLE)).endpoint.ttl_enforcement == "schedule"
    gc_mode = load_experiment(sagemaker_file(tmp_path, ("keep = false", 'ttl_enforcement = "gc"')))
    assert gc_mode.endpoint.ttl_enforcement == "gc"


# where gc looks


async def test_gc_default_targets_say_when_aws_is_not_scanned(ledger: Ledger) -> None:
    from jobman.errors import BackendError

    def no_credentials() -> str:
        raise BackendError("no AWS credentials are configured", code="NoCredentials")

    targets, notes = await default_targets(ledger, ["us-east-1"], no_credentials)
    assert targets == {("local", "us-east-1")}
    assert notes == ["AWS not scanned: no AWS credentials are configured; scan it with "
                     "`jobman gc --backend sagemaker --region REGION`"]
    targets, notes = await default_targets(ledger, [], lambda: "eu-west-1")
    assert targets == {("sagemaker", "eu-west-1")} and notes == []
