"""`jobman run`: the classic notebook's workflow as a resumable controller run.

Each step is idempotent. Resources are recorded in the ledger (intent) before the reconciler
creates them, under deterministic names, so running the same file again after a crash or Ctrl-C
resumes the unfinished run and never makes a second copy of anything it already created.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jobman.backends.base import Backend
from jobman.backends.factory import LOCAL_ROLE_ARN
from jobman.batch import TransformPlace, TransformSettings, read_predictions, transform_request
from jobman.clock import Clock, parse_utc_iso, utc_iso
from jobman.config import Experiment, check_output_dir
from jobman.cost import worst_case_usd
from jobman.dataprep import PreparedData, check_test_rows_fit, load_table, prepare
from jobman.durations import format_duration
from jobman.errors import ConfigError, JobmanError, RunFailed, Unreachable, WaitTimeout
from jobman.identity import current_host, current_user, holder_name, site_for, stopped_here
from jobman.images import xgboost_image_uri
from jobman.invoker import InvokeOptions, invoke_stream, split_prediction_body
from jobman.kinds import CHAIN, Kind
from jobman.leases import lease_s, poll_s, renewing, wall_now
from jobman.ledger.store import Ledger, Resource, Run, RunClaim
from jobman.names import resource_name
from jobman.reconciler import chain_of, teardown_chain
from jobman.report import regression_metrics, scatter_plot, write_predictions
from jobman.states import Desired, Meaning, RunStatus, Status, meaning
from jobman.tags import TAG_CONFIG, TAG_EXPERIMENT, TAG_EXPIRES, TAG_MANAGED, TAG_RUN
from jobman.timing import Timing
from jobman.ttl import fire_time, schedule_request
from jobman.workflow import Reporter, Workflow

TRAINING_DEADLINE_SLACK = timedelta(minutes=15)  # SageMaker enforces MaxRuntime itself; this is the backstop
GC_ADVICE = ("endpoint.ttl_enforcement = 'gc': the TTL holds only while `jobman gc` runs; run it periodically, "
             "e.g. `jobman gc --every 10m`, or from cron: `*/10 * * * * jobman gc`")


@dataclass
class RunOutcome:
    experiment: str
    run: Run
    resumed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    kept_endpoint: Resource | None = None


def check_inputs(experiment: Experiment) -> None:
    """Everything about the input that can be wrong, checked before the ledger or a backend is touched."""
    check_test_rows_fit(experiment, load_table(experiment))
    check_output_dir(experiment)
    xgboost_image_uri(experiment.aws.region, experiment.training.algorithm_version)
    check_cost_ceiling(experiment)


@dataclass(frozen=True)
class Evaluator:
    """What evaluation bills by the hour, and what bounds its time: an endpoint and its TTL, or a transform
    job and its timeout."""

    what: str
    instance_type: str
    instance_count: int
    bound_s: float
    bound_key: str  # the experiment file's key that sets the bound

    @classmethod
    def of(cls, x: Experiment) -> Evaluator:
        e, ev = x.endpoint, x.evaluation
        if ev.mode == "transform":
            return cls("transform job", ev.transform_instance_type, ev.transform_instance_count,
                       ev.transform_timeout_s, "evaluation.transform_timeout")
        return cls("endpoint", e.instance_type, e.initial_instance_count, e.ttl_s, "endpoint.ttl")

    def worst_case(self, backend: str) -> float | None:
        """The most it can cost: hourly price x instance count x its bound (None: price unknown)."""
        return worst_case_usd(backend, self.instance_type, self.instance_count, self.bound_s)

    @property
    def use(self) -> str:
        return f"{self.instance_type} x {self.instance_count} for {self.bound_key} = {format_duration(self.bound_s)}"


def check_cost_ceiling(x: Experiment) -> None:
    ceiling = x.endpoint.max_cost_usd
    if ceiling is None:
        return
    ev = Evaluator.of(x)
    worst = ev.worst_case(x.backend)
    if worst is None:
        raise ConfigError(
            f"{x.path}: endpoint.max_cost_usd: the price of {ev.instance_type} is not in jobman's price table, "
            "so its worst case cannot be held to the ceiling; choose a listed instance type or remove the ceiling"
        )
    if worst > ceiling:
        raise ConfigError(
            f"{x.path}: endpoint.max_cost_usd: the {ev.what} may cost up to ${worst:,.2f} ({ev.use}), over the "
            f"ceiling of ${ceiling:,.2f}; shorten {ev.bound_key}, use fewer or smaller instances, or raise the ceiling"
        )


class ExperimentRun(Workflow):
    def __init__(
        self, experiment: Experiment, ledger: Ledger, backend: Backend, *, clock: Clock,
        reporter: Reporter | None = None, timing: Timing | None = None,
    ) -> None:
        super().__init__(ledger, backend, clock=clock, reporter=reporter,
                         timing=timing or Timing.for_backend(experiment.backend))
        self.x = experiment

    # the workflow

    async def execute(self) -> RunOutcome:
        claim = await self._open_run()
        run = claim.run
        if claim.busy:  # another process finished the run this one waited for: it is this file's run
            return self._finished_elsewhere(run)
        holder = holder_name()
        try:
            async with renewing(lambda until: self.ledger.renew_run(run.id, holder=holder, until=until),
                                lease_s(), f"run {run.number} of {self.x.name}"):
                if claim.superseded is not None:  # held meanwhile: an endpoint's deletion outlasts a lease
                    await self._supersede(claim.superseded)
                outcome = RunOutcome(self.x.name, run, claim.resumed)
                word = "resuming" if claim.resumed else "starting"
                self.reporter.step(f"{word} {self.x.name} run {run.number} on the {self.backend.name} backend")
                try:
                    return await self._steps(run, outcome)
                except Exception as exc:  # not Ctrl-C (a BaseException): that leaves the run resumable as it is
                    await self._fail(run, exc)
                    raise
        finally:  # also on Ctrl-C, so that a resume need not wait for the lease; kill -9 leaves it to run out
            await self.ledger.release_run(run.id, holder=holder)

    def _finished_elsewhere(self, run: Run) -> RunOutcome:
        by = run.started_by or "another jobman process"
        if run.status != RunStatus.SUCCEEDED or run.metrics is None:
            raise RunFailed(f"{self.x.name} run {run.number}, worked on by {by} while this one waited, ended "
                            f"{run.status}{f': {run.message}' if run.message else ''}; `jobman run` again starts "
                            "a new run")
        self.reporter.step(f"{self.x.name} run {run.number} was finished by {by} while this one waited")
        return RunOutcome(self.x.name, run, True, metrics=run.metrics,
                          output_dir=Path(run.output_dir) if run.output_dir else None)

    async def _steps(self, run: Run, outcome: RunOutcome) -> RunOutcome:
        out_dir = Path(self.x.evaluation.output_dir) / f"{self.x.name}-r{run.number}"
        outcome.output_dir = out_dir
        if run.output_dir is None:
            run = await self.ledger.update_run(run.id, output_dir=str(out_dir))
        data = prepare(self.x, load_table(self.x), out_dir / "data")
        bucket, prefix = await self._place(run)
        channels = await self._upload(bucket, prefix, data)
        job = await self._train(run, channels)  # a sweep writes its trials' outputs too
        if self.x.evaluation.mode == "transform":
            place = TransformPlace(bucket, f"{prefix}/transform")
            metrics, kept = await self._transform_step(run, job, data, place, out_dir), None
        else:
            metrics, kept = await self._endpoint_step(run, job, data, out_dir)
        outcome.metrics, outcome.kept_endpoint = metrics, kept
        if kept is not None:
            self.reporter.step(self._keeping(kept))
        else:
            await self.teardown(run)
        outcome.run = await self.ledger.update_run(run.id, status=RunStatus.SUCCEEDED, finished_at=self.clock.now())
        return outcome

    async def _endpoint_step(
        self, run: Run, job: Resource, data: PreparedData, out_dir: Path,
    ) -> tuple[dict[str, Any], Resource | None]:
        """Deploy, invoke, score; the metrics and the endpoint that `keep` keeps (None: tear it down)."""
        metrics = run.metrics
        keep = self.x.endpoint.keep
        # A resumed run that already evaluated neither invokes again nor brings back a deleted or expired endpoint.
        redeploy = metrics is None or (keep and await self._expiry(run) > self.clock.now())
        endpoint = await self._deploy(run, job) if redeploy else None
        if metrics is None:
            assert endpoint is not None
            metrics = await self._evaluate(endpoint, data, out_dir)
            await self.ledger.update_run(run.id, metrics=metrics)
        return metrics, endpoint if keep else None

    async def _transform_step(
        self, run: Run, job: Resource, data: PreparedData, place: TransformPlace, out_dir: Path,
    ) -> dict[str, Any]:
        """A transform job instead of an endpoint; a resumed run that already evaluated does not again."""
        if run.metrics is not None:
            return run.metrics
        metrics = await self._evaluate_by_transform(run, job, data, place, out_dir)
        await self.ledger.update_run(run.id, metrics=metrics)
        return metrics

    async def _open_run(self) -> RunClaim:
        """The run this process works on, held in the ledger so that no other process on any machine works on it
        at once. While another live process holds the experiment's unfinished run, wait: for it to finish (then
        that run is the outcome: `busy`), or for its hold to run out (a dead holder: then resume it)."""
        waited_on: Run | None = None
        replacing: str | None = None
        while True:
            claim = await self.ledger.open_run(
                self.x.name, digest=self.x.digest, backend=self.x.backend, region=self.x.aws.region,
                config_path=str(self.x.path), at=self.clock.now(), lease_at=wall_now(),
                holder=holder_name(), lease_s=lease_s(), user=current_user(), host=current_host(),
                local_site=site_for(self.x.backend),
                waited_on=waited_on.id if waited_on else None, replacing=replacing,
            )
            if not claim.busy or claim.run.finished:
                break
            held_by = claim.run.held_by
            if held_by is not None and stopped_here(held_by):  # died on this machine (kill -9): no need to wait
                self.reporter.step(f"{self.x.name} run {claim.run.number} was held by {held_by}, which has "
                                   "stopped: taking it over")
                replacing = held_by
                continue
            if waited_on is None:
                by = claim.run.held_by or "another jobman process"
                self.reporter.step(f"{self.x.name} run {claim.run.number} is being worked on by {by}: waiting for "
                                   f"it (at most {lease_s():.0f} s more if that process has stopped)")
            waited_on = claim.run
            await asyncio.sleep(poll_s(lease_s()))
        return claim

    async def _supersede(self, latest: Run) -> None:
        """The file changed since `latest`, which was left unfinished: the new run tears it down rather than
        leave it billing, when its resources are where this run's are."""
        if (latest.backend, latest.region, latest.local_site) == (
            self.x.backend, self.x.aws.region, site_for(self.x.backend)
        ):
            self.reporter.step(f"run {latest.number} was made from a different file: tearing it down")
            await self.teardown(latest)
        else:  # its resources live elsewhere; their TTL tags bound them, `jobman stop` ends them now
            where = latest.local_site or f"{latest.backend}/{latest.region}"
            self.reporter.step(f"run {latest.number} is on {where}: left to its TTL "
                               f"(`jobman stop {self.x.name}` tears it down now)")

    async def _fail(self, run: Run, error: Exception) -> None:
        """Whatever ended the run, tear its chain down (a serving endpoint survives only with `keep`) and
        record the run as failed; the caller then raises the original error.

        A cloud that cannot be reached cannot be torn down: the run stays resumable and the error says how
        to go on; the endpoint's TTL still holds meanwhile."""
        message = str(error) or type(error).__name__
        if isinstance(error, Unreachable):
            raise await self._interrupted(run, message) from error
        self.reporter.step(f"run {run.number} failed: {message}")
        try:
            kept = await self._kept_on_failure(run)
            if kept is not None:
                self.reporter.step(self._keeping(kept))
            else:
                await self.teardown(run)
        except Unreachable as teardown_error:
            raise await self._interrupted(run, f"{message}; then {teardown_error}") from error
        except JobmanError as teardown_error:
            self.reporter.step(f"teardown of run {run.number} incomplete: {teardown_error}")
            message = f"{message}; teardown incomplete: {teardown_error}"
        if (await self.ledger.run(run.id)).finished:
            return  # ended meanwhile by another process (`jobman stop`): its record stands
        await self.ledger.update_run(run.id, status=RunStatus.FAILED, message=message, finished_at=self.clock.now())

    async def _interrupted(self, run: Run, message: str) -> Unreachable:
        await self.ledger.update_run(run.id, message=f"interrupted: {message}")
        return Unreachable(
            f"{message}. Run {run.number} is saved and its endpoint keeps its TTL: `jobman run {self.x.path}` "
            f"resumes it, `jobman stop {self.x.name}` tears it down"
        )

    async def _kept_on_failure(self, run: Run) -> Resource | None:
        """With `keep`, an endpoint that serves stays after a later failure (it has its TTL); nothing else does."""
        if not self.x.endpoint.keep:
            return None
        endpoints = await self.ledger.resources(run_ids=[run.id], kinds=[Kind.ENDPOINT])
        serving = [r for r in endpoints if r.desired is Desired.PRESENT and r.status == Status.IN_SERVICE]
        return serving[0] if serving else None

    def _keeping(self, endpoint: Resource) -> str:
        until = f" until {utc_iso(endpoint.expires_at)}" if endpoint.expires_at else ""
        by = "its schedules" if self.x.endpoint.ttl_enforcement == "schedule" else "`jobman gc`"
        return f"keeping endpoint {endpoint.name}{until}; {by} delete it then"

    # steps

    async def _place(self, run: Run) -> tuple[str, str]:
        """The run's bucket (made if missing) and key prefix."""
        bucket = self.x.aws.bucket or f"sagemaker-{self.backend.region}-{await self.backend.account_id()}"
        await self.backend.ensure_bucket(bucket)
        return bucket, f"{self.x.aws.prefix or self.x.name}/r{run.number}"

    async def _upload(self, bucket: str, prefix: str, data: PreparedData) -> dict[str, str]:
        channels = {}
        for channel, path in (("train", data.train_csv), ("validation", data.validation_csv)):
            key = f"{prefix}/{channel}/{path.name}"
            await self.backend.upload_file(str(path), bucket, key)
            channels[channel] = f"s3://{bucket}/{prefix}/{channel}/"
        channels["output"] = f"s3://{bucket}/{prefix}/output"
        self.reporter.step(f"uploaded {data.rows['train']} training and {data.rows['validation']} "
                           f"validation rows to s3://{bucket}/{prefix}/")
        return channels

    def _tag_map(self, run: Run, **extra: str) -> dict[str, str]:
        tags = {TAG_MANAGED: "true", TAG_EXPERIMENT: self.x.name, TAG_RUN: str(run.number), TAG_CONFIG: run.digest}
        tags.update(extra)
        return tags

    def _tags(self, run: Run, **extra: str) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in self._tag_map(run, **extra).items()]

    @property
    def _role(self) -> str:
        return self.x.aws.role_arn or LOCAL_ROLE_ARN

    @property
    def _scheduler_role(self) -> str:
        return self.x.aws.scheduler_role_arn or LOCAL_ROLE_ARN

    @property
    def _image(self) -> str:
        return xgboost_image_uri(self.backend.region, self.x.training.algorithm_version)

    def training_spec(
        self, run: Run, name: str, channels: dict[str, str], hyperparameters: dict[str, str], **tags: str,
    ) -> dict[str, Any]:
        """CreateTrainingJob's request for this experiment, with these hyperparameters and extra tags."""
        t = self.x.training
        return {
            "TrainingJobName": name,
            "AlgorithmSpecification": {"TrainingImage": self._image, "TrainingInputMode": "File"},
            "RoleArn": self._role,
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {"S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": channels[channel],
                        "S3DataDistributionType": "FullyReplicated",
                    }},
                    "ContentType": "text/csv",
                    "CompressionType": "None",
                }
                for channel in ("train", "validation")
            ],
            "OutputDataConfig": {"S3OutputPath": channels["output"]},
            "ResourceConfig": {
                "InstanceCount": t.instance_count, "InstanceType": t.instance_type, "VolumeSizeInGB": t.volume_size_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": int(t.max_runtime_s)},
            "HyperParameters": dict(hyperparameters),
            "Tags": self._tags(run, **tags),
        }

    async def training_intent(self, run: Run, spec: dict[str, Any], **extra: Any) -> Resource:
        """The training job's ledger row, with its deadline: MaxRuntime plus slack from now."""
        t = self.x.training
        deadline = self.clock.now() + timedelta(seconds=t.max_runtime_s) + TRAINING_DEADLINE_SLACK
        return await self._intent(run, Kind.TRAINING_JOB, spec["TrainingJobName"], spec,
                                  instance_type=t.instance_type, instance_count=t.instance_count,
                                  deadline_at=deadline, **extra)

    async def _train(self, run: Run, channels: dict[str, str]) -> Resource:
        if self.x.sweep is not None:
            from jobman.sweep import Sweep

            return await Sweep(self, self.x.sweep, run, channels).best_trial()
        name = resource_name(self.x.name, run.number, Kind.TRAINING_JOB)
        job = await self.training_intent(run, self.training_spec(run, name, channels, self.x.training.hyperparameters))
        job = (await self._wait(job, poll_s=self.timing.training_poll_s, logs=True)).resources[0]
        if meaning(job.kind, job.status) is not Meaning.OK:
            raise RunFailed(f"training job {name} {job.status}: {job.failure_reason or 'no reason given'}")
        return job

    async def _expiry(self, run: Run) -> datetime:
        """One expiry for the whole chain (its TTL, or the transform's timeout), fixed when it is first
        recorded; a resumed run keeps it."""
        chain = [r for r in await self.ledger.resources(run_ids=[run.id], kinds=CHAIN) if chain_of(r) == (run.id, None)]
        recorded = [r.expires_at for r in chain if r.expires_at is not None]
        if recorded:
            return min(recorded)
        moment = self.clock.now() + timedelta(seconds=Evaluator.of(self.x).bound_s)
        return parse_utc_iso(utc_iso(moment)) or moment  # whole seconds, as the tag and at() carry it

    async def _deploy(self, run: Run, job: Resource) -> Resource:
        model_data = (job.details or {}).get("model_data")
        if not model_data:
            raise RunFailed(f"training job {job.name} completed without a model artifact")
        e = self.x.endpoint
        # Every endpoint has a TTL, kept or not: nothing runs unbounded. The endpoint, its config and its model
        # all carry it, so gc can reap any part of the chain as an orphan.
        expires_at = await self._expiry(run)
        if expires_at <= self.clock.now():
            raise RunFailed(self._expired_message(expires_at, "before the endpoint was deployed"))
        self.reporter.step(self._cost_line())
        expires_tag = {TAG_EXPIRES: utc_iso(expires_at)}
        names = {kind: resource_name(self.x.name, run.number, kind) for kind in CHAIN}
        await self._bound(run, expires_at, names)
        # One at a time: a config names its model, and SageMaker checks that the model exists.
        await self._model(run, names[Kind.MODEL], model_data, expires_at)
        config = await self._intent(run, Kind.ENDPOINT_CONFIG, names[Kind.ENDPOINT_CONFIG], {
            "EndpointConfigName": names[Kind.ENDPOINT_CONFIG],
            "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": names[Kind.MODEL],
                "InitialInstanceCount": e.initial_instance_count, "InstanceType": e.instance_type,
                "InitialVariantWeight": 1.0,
            }],
            "Tags": self._tags(run, **expires_tag),
        }, expires_at=expires_at)
        await self._wait_present(config)
        now = self.clock.now()
        endpoint_name = names[Kind.ENDPOINT]
        spec = {
            "EndpointName": endpoint_name, "EndpointConfigName": names[Kind.ENDPOINT_CONFIG],
            "Tags": self._tags(run, **expires_tag),
        }
        endpoint = await self._intent(
            run, Kind.ENDPOINT, endpoint_name, spec,
            instance_type=e.instance_type, instance_count=e.initial_instance_count,
            expires_at=expires_at, deadline_at=now + timedelta(seconds=e.wait_timeout_s),
        )
        waited = await self._wait(endpoint, poll_s=self.timing.endpoint_poll_s)
        endpoint = waited.resources[0]
        if endpoint.id in waited.expired:
            raise RunFailed(self._expired_message(expires_at, "before the endpoint was InService"))
        # A deadline this wait acted on, or one an earlier process acted on before this run was resumed.
        if endpoint.id in waited.deadlines or endpoint.desired is Desired.ABSENT:
            raise WaitTimeout(
                f"endpoint {endpoint_name} was not InService within {format_duration(e.wait_timeout_s)} "
                "(endpoint.wait_timeout); it is being deleted"
            )
        if endpoint.status != Status.IN_SERVICE:
            reason = endpoint.failure_reason or "no reason given"
            raise RunFailed(f"endpoint {endpoint_name} {endpoint.status}: {reason}")
        return endpoint

    async def _model(self, run: Run, name: str, model_data: str, expires_at: datetime) -> Resource:
        model = await self._intent(run, Kind.MODEL, name, {
            "ModelName": name,
            "ExecutionRoleArn": self._role,
            "PrimaryContainer": {"Image": self._image, "ModelDataUrl": model_data},
            "Tags": self._tags(run, **{TAG_EXPIRES: utc_iso(expires_at)}),
        }, expires_at=expires_at)
        return await self._wait_present(model)

    def _expired_message(self, expires_at: datetime, when: str) -> str:
        ev = Evaluator.of(self.x)
        bound = "endpoint chain's TTL" if ev.what == "endpoint" else "transform job's deadline"
        return f"the {bound} ({ev.bound_key} = {format_duration(ev.bound_s)}) passed at {utc_iso(expires_at)} {when}"

    def _cost_line(self) -> str:
        ev = Evaluator.of(self.x)
        worst = ev.worst_case(self.x.backend)
        what = f"{ev.what} {ev.instance_type} x {ev.instance_count} for at most {format_duration(ev.bound_s)}"
        if worst is None:
            return f"{what}: worst case unknown ({ev.instance_type} is not in the price table)"
        ceiling = self.x.endpoint.max_cost_usd
        limit = f" (ceiling ${ceiling:,.2f})" if ceiling is not None else ""
        free = " (the local backend is free)" if worst == 0 and self.x.backend == "local" else ""
        return f"{what}: worst case ${worst:,.2f}{limit}{free}"

    async def _bound(self, run: Run, expires_at: datetime, targets: dict[Kind, str]) -> None:
        """What ends the run's billed resources at `expires_at` even if jobman never runs again: schedules,
        or (ttl_enforcement = "gc") `jobman gc`, which the user is told to run."""
        if self.x.endpoint.ttl_enforcement == "schedule":
            await self._schedule_ttl(run, expires_at, targets)
        else:
            self.reporter.step(GC_ADVICE)

    async def _schedule_ttl(self, run: Run, expires_at: datetime, targets: dict[Kind, str]) -> None:
        """One-time schedules that end `targets` at the expiry, created before any of them, so none is ever
        up without them. A resumed run finds its rows and creates nothing twice."""
        await self.backend.ensure_schedule_group()
        tags = self._tag_map(run, **{TAG_EXPIRES: utc_iso(expires_at)})
        rows = []
        for kind, name in targets.items():
            at = fire_time(expires_at, kind, self.timing.ttl_stagger_s)
            spec = schedule_request(kind, name, at, role_arn=self._scheduler_role, tags=tags)
            rows.append(await self._intent(run, Kind.SCHEDULE, spec["Name"], spec, expires_at=at))
        waited = await self._converge(rows, poll_s=self.timing.endpoint_poll_s)
        ev = Evaluator.of(self.x)
        for row in waited.resources:
            if row.id in waited.expired:
                raise RunFailed(self._expired_message(expires_at, "before its schedules were created"))
            if row.status != Status.ENABLED:
                raise RunFailed(f"schedule {row.name} is {row.status}: the {ev.what}'s {ev.bound_key} would not hold")
        ends = "delete the endpoint" if ev.what == "endpoint" else "stop the transform job"
        self.reporter.step(f"TTL: schedules {ends} at {utc_iso(expires_at)} whether or not jobman runs")

    async def _evaluate_by_transform(
        self, run: Run, job: Resource, data: PreparedData, place: TransformPlace, out_dir: Path,
    ) -> dict[str, Any]:
        """Model, then a transform job over the test features; no endpoint config or endpoint ever exists."""
        model_data = (job.details or {}).get("model_data")
        if not model_data:
            raise RunFailed(f"training job {job.name} completed without a model artifact")
        ev = self.x.evaluation
        expires_at = await self._expiry(run)
        if expires_at <= self.clock.now():
            raise RunFailed(self._expired_message(expires_at, "before the transform job ended"))
        self.reporter.step(self._cost_line())
        model_name = resource_name(self.x.name, run.number, Kind.MODEL)
        job_name = resource_name(self.x.name, run.number, Kind.TRANSFORM_JOB)
        await self._bound(run, expires_at, {Kind.TRANSFORM_JOB: job_name, Kind.MODEL: model_name})
        await self._model(run, model_name, model_data, expires_at)
        rows = len(data.test_labels)
        if not await self._job_started(Kind.TRANSFORM_JOB, job_name):
            await self.backend.upload_file(str(data.test_features_csv), place.bucket, place.input_key)
        settings = TransformSettings(ev.transform_instance_type, ev.transform_instance_count,
                                     ev.max_concurrent_transforms, ev.max_payload_mb)
        spec = transform_request(job_name, model_name, place, settings,
                                 self._tags(run, **{TAG_EXPIRES: utc_iso(expires_at)}))
        self.reporter.step(f"transforming {rows} test rows with {job_name}")
        out = out_dir / "data" / "transform-output.csv"
        await self._transform(run, spec, settings=settings, place=place, deadline_at=expires_at,
                              bound=f"evaluation.transform_timeout = {format_duration(ev.transform_timeout_s)}",
                              rows=rows, into=out)
        predicted = read_predictions(out)
        return self._score(data, predicted, out_dir)

    async def _evaluate(self, endpoint: Resource, data: PreparedData, out_dir: Path) -> dict[str, Any]:
        ev = self.x.evaluation
        rows = len(data.test_labels)
        self.reporter.step(f"sending {rows} test rows to {endpoint.name}")
        options = InvokeOptions(
            max_payload_bytes=ev.max_payload_bytes, max_rows_per_chunk=ev.max_rows_per_chunk,
            concurrency=ev.concurrency,
        )

        async def invoke(body: bytes) -> bytes:
            return await self.backend.invoke_endpoint(endpoint.name, body, "text/csv")

        sink = io.BytesIO()
        with data.test_features_csv.open("rb") as src:
            summary = await invoke_stream(invoke, src, sink, options, on_progress=self.reporter.invoke_progress(rows))
        predicted = [float(p) for p in split_prediction_body(sink.getvalue())]
        metrics = self._score(data, predicted, out_dir)
        metrics["invoke"] = summary.to_dict()
        return metrics

    def _score(self, data: PreparedData, predicted: list[float], out_dir: Path) -> dict[str, Any]:
        """Metrics against the test labels, and `predictions.csv` and the scatter plot in the run's folder."""
        metrics: dict[str, Any] = regression_metrics(data.test_labels, predicted)
        try:
            write_predictions(out_dir / "predictions.csv", data.test_labels, predicted)
            scatter_plot(out_dir / "predicted_vs_actual.png", data.test_labels, predicted,
                         title=f"{self.x.name}: predicted vs actual (RMSE {metrics['rmse']:.2f})")
        except OSError as exc:  # a full disk, a folder where the file should go: the user's to fix
            raise ConfigError(f"cannot write the run's outputs in {out_dir}: {exc}") from exc
        return metrics

    # teardown

    async def teardown(self, run: Run) -> None:
        """Endpoint, then endpoint config, then model (the reconciler keeps the order); a running job is stopped."""
        chain = teardown_chain(await self.ledger.resources(run_ids=[run.id]))
        if not chain:
            return
        self.reporter.step(f"tearing down run {run.number}")
        await self.reconciler.tear_down(chain, poll_s=self.timing.endpoint_poll_s, on_pass=self.report_pass)
