"""`jobman transform`: bulk predictions for a user's CSV with a model the ledger knows, by Batch Transform.

The model comes from a run's training job (named by run, `experiment/rN`, or model name). Each command
makes its own model and transform job, numbered within the run (`<exp>-r<N>-b<k>-model`, `-b<k>-transform`),
recorded as intent before each create like everything else; both are torn down, and the S3 objects removed
(unless kept), however the command ends. The output file appears whole or not at all.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jobman.batch import TransformPlace, TransformSettings, copy_rows, transform_request
from jobman.clock import utc_iso
from jobman.config import EvaluationConfig
from jobman.durations import format_duration
from jobman.echo import cut, echo, one_line
from jobman.errors import ConfigError, JobmanError
from jobman.kinds import KIND_API, Kind
from jobman.ledger.store import Ledger, Resource, Run
from jobman.names import batch_name
from jobman.outputs import atomic_output
from jobman.reconciler import teardown_chain
from jobman.states import Status
from jobman.tags import TAG_EXPIRES
from jobman.trials import best_of, trials_of
from jobman.workflow import Workflow

_RUN_REF = re.compile(r"^(?P<experiment>[^/]+)/r(?P<number>\d+)$")


@dataclass(frozen=True)
class BatchOptions:
    header: bool = False
    instance_type: str = EvaluationConfig.transform_instance_type
    instance_count: int = 1
    timeout_s: float = EvaluationConfig.transform_timeout_s
    keep_s3: bool = False
    max_concurrent: int = EvaluationConfig.max_concurrent_transforms
    max_payload_mb: int = EvaluationConfig().max_payload_mb


@dataclass(frozen=True)
class BatchOutcome:
    job: Resource
    rows: int


async def resolve_source(ledger: Ledger, ref: str) -> tuple[Run, Resource]:
    """The run and its completed training job that REF names: `experiment/rN`, an experiment (its latest run
    with a trained model), or a model name the ledger knows."""
    shown = cut(one_line(ref))  # as the errors show it: a command-line argument may be long
    match = _RUN_REF.match(ref)
    if match:
        runs = await _runs_of(ledger, match["experiment"], shown)
        chosen = [r for r in runs if r.number == int(match["number"])]
        if not chosen:
            raise ConfigError(f"{shown}: experiment {echo(match['experiment'])} has no run {match['number']}")
        return chosen[0], await _trained(ledger, chosen[0], shown)
    model = await ledger.resource_by_name(Kind.MODEL, ref)
    if model is not None:
        run = await ledger.run(model.run_id)
        return run, await _trained(ledger, run, shown)
    for run in reversed(await _runs_of(ledger, ref, shown)):
        jobs = await ledger.resources(run_ids=[run.id], kinds=[Kind.TRAINING_JOB])
        if any(_model_data(j) for j in jobs):
            return run, await _trained(ledger, run, shown)
    raise ConfigError(f"{shown}: no run of experiment {echo(ref)} has a trained model")


async def _runs_of(ledger: Ledger, experiment: str, shown: str) -> list[Run]:
    exp = await ledger.experiment(experiment)
    if exp is None:
        raise ConfigError(f"{shown}: not a run (experiment/rN), experiment or model name in the ledger")
    return await ledger.runs(exp.id)


async def _trained(ledger: Ledger, run: Run, shown: str) -> Resource:
    """The run's trained job: its only one, or a sweep's best trial (the one the run deployed)."""
    found = await ledger.resources(run_ids=[run.id], kinds=[Kind.TRAINING_JOB])
    best = best_of(trials_of(found))
    if best is not None and _model_data(best.resource):
        return best.resource
    jobs = [j for j in found if _model_data(j)]
    if not jobs:
        raise ConfigError(f"{shown}: run {run.number} has no completed training job, so no model to transform with")
    return jobs[0]


def _model_data(job: Resource) -> str | None:
    return (job.details or {}).get("model_data") if job.status == Status.COMPLETED else None


class BatchPrediction(Workflow):
    async def execute(self, source: tuple[Run, Resource], input_csv: str, output: str,
                      options: BatchOptions) -> BatchOutcome:
        run, training = source
        with tempfile.TemporaryDirectory(prefix="jobman-transform-") as scratch:
            upload = Path(scratch) / "input.csv"
            rows = await asyncio.to_thread(_copy_input, input_csv, upload, options.header)
            if rows == 0:
                raise ConfigError(f"{input_csv}: no data rows to transform")
            number = await self._next_number(run)
            experiment = next(e.name for e in await self.ledger.experiments() if e.id == run.experiment_id)
            names = {kind: batch_name(experiment, run.number, number, kind)
                     for kind in (Kind.MODEL, Kind.TRANSFORM_JOB)}
            place = _place(training, number)
            created: list[str] = []
            try:
                predictions = Path(scratch) / "predictions.csv"
                job = await self._predict(run, training, names, place, options, upload, rows, predictions, created)
                await asyncio.to_thread(_write_output, predictions, output)
            finally:
                await self._clean_up(run, names, place, options, created)
        return BatchOutcome(job, rows)

    async def _predict(
        self, run: Run, training: Resource, names: dict[Kind, str], place: TransformPlace, options: BatchOptions,
        upload: Path, rows: int, into: Path, created: list[str],
    ) -> Resource:
        now = self.clock.now()
        deadline = now + timedelta(seconds=options.timeout_s)
        tags = [t for t in training.spec.get("Tags", []) if t["Key"] != TAG_EXPIRES]
        tags.append({"Key": TAG_EXPIRES, "Value": utc_iso(deadline)})
        model = await self._intent(run, Kind.MODEL, names[Kind.MODEL], {
            "ModelName": names[Kind.MODEL],
            "ExecutionRoleArn": training.spec["RoleArn"],
            "PrimaryContainer": {"Image": training.spec["AlgorithmSpecification"]["TrainingImage"],
                                 "ModelDataUrl": _model_data(training)},
            "Tags": tags,
        }, expires_at=deadline)
        created.append(names[Kind.MODEL])
        await self._wait_present(model)
        await self.backend.upload_file(str(upload), place.bucket, place.input_key)
        created.append(place.prefix)
        settings = TransformSettings(options.instance_type, options.instance_count, options.max_concurrent,
                                     options.max_payload_mb)
        spec = transform_request(names[Kind.TRANSFORM_JOB], names[Kind.MODEL], place, settings, tags)
        self.reporter.step(f"transforming {rows:,} rows with {names[Kind.TRANSFORM_JOB]} "
                           f"({options.instance_type} x {options.instance_count})")
        return await self._transform(run, spec, settings=settings, place=place, deadline_at=deadline,
                                     bound=f"--timeout {format_duration(options.timeout_s)}", rows=rows,
                                     into=into)

    async def _clean_up(self, run: Run, names: dict[Kind, str], place: TransformPlace, options: BatchOptions,
                        created: list[str]) -> None:
        """Tear down the model (and a job still running), then remove the S3 objects unless they are kept.
        An error here is reported after the rest is done, never instead of the command's own error."""
        problems: list[str] = []
        rows = [r for r in await self.ledger.resources(run_ids=[run.id]) if r.name in names.values()]
        try:
            await self.reconciler.tear_down(teardown_chain(rows), poll_s=self.timing.endpoint_poll_s,
                                            on_pass=self.report_pass)
        except JobmanError as exc:
            problems.append(str(exc))
        if place.prefix in created and not options.keep_s3:
            try:
                await self.backend.delete_prefix(place.bucket, place.prefix + "/")
            except JobmanError as exc:
                problems.append(str(exc))
        for problem in problems:
            self.reporter.step(f"clean-up incomplete: {problem}")

    async def _next_number(self, run: Run) -> int:
        """The next free k among the run's `-b<k>-` transform jobs and models (a killed command used its k)."""
        suffixes = "|".join(KIND_API[k].suffix for k in (Kind.MODEL, Kind.TRANSFORM_JOB))
        pattern = re.compile(rf"-b(\d+)-(?:{suffixes})$")
        used = [int(m[1]) for r in await self.ledger.resources(run_ids=[run.id]) if (m := pattern.search(r.name))]
        return max(used, default=0) + 1


def _place(training: Resource, number: int) -> TransformPlace:
    """Beside the run's own data: `s3://<bucket>/<prefix>/r<N>/batch-<k>/`."""
    output: str = training.spec["OutputDataConfig"]["S3OutputPath"]
    bucket, _, key = output.removeprefix("s3://").partition("/")
    run_prefix = key.rstrip("/").removesuffix("/output")
    return TransformPlace(bucket, f"{run_prefix}/batch-{number}")



def _copy_input(input_csv: str, upload: Path, header: bool) -> int:
    with open(input_csv, "rb") as src, upload.open("wb") as dst:
        return copy_rows(src, dst, header=header, source=input_csv)


def _write_output(predictions: Path, output: str) -> None:
    with predictions.open("rb") as src, atomic_output(output) as dst:
        shutil.copyfileobj(src, dst)
