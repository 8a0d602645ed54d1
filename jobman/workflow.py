"""What every flow that creates resources shares: intent before action, waits through the reconciler, and
the console it reports to. `jobman run` (run.py) and `jobman transform` (batch_flow.py) are built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from jobman.backends.base import Backend
from jobman.batch import TransformPlace, TransformSettings, check_prediction_lines
from jobman.clock import Clock
from jobman.errors import RunFailed, WaitTimeout
from jobman.kinds import Kind
from jobman.ledger.store import Ledger, Resource, Run
from jobman.reconciler import Converged, PassResult, Reconciler, settled
from jobman.states import Desired, Status
from jobman.timing import Timing


class Reporter(Protocol):
    """How a flow tells the console what happens; the CLI implements it with rich."""

    def step(self, message: str) -> None: ...

    def log_line(self, line: str) -> None: ...

    def status(self, resource: Resource) -> None: ...

    def invoke_progress(self, total_rows: int) -> Callable[[int], None]: ...


class SilentReporter:
    def step(self, message: str) -> None:
        pass

    def log_line(self, line: str) -> None:
        pass

    def status(self, resource: Resource) -> None:
        pass

    def invoke_progress(self, total_rows: int) -> Callable[[int], None]:
        return lambda rows: None


def _stuck_out_of_service(r: Resource) -> bool:
    """An endpoint on its way to InService goes Creating -> InService or Failed; OutOfService there means its
    instances were taken away (on the local backend: `jobman local stop --endpoints`) and will not return."""
    return r.kind is Kind.ENDPOINT and r.desired is Desired.PRESENT and r.status == Status.OUT_OF_SERVICE


class Workflow:
    def __init__(
        self, ledger: Ledger, backend: Backend, *, clock: Clock, reporter: Reporter | None, timing: Timing,
    ) -> None:
        self.ledger, self.backend, self.clock, self.timing = ledger, backend, clock, timing
        self.reporter = reporter or SilentReporter()
        self.reconciler = Reconciler(ledger, backend, clock)

    async def _intent(self, run: Run, kind: Kind, name: str, spec: dict[str, Any], **extra: Any) -> Resource:
        """The ledger row before the Create call; on resume, the row the run already has."""
        existing = await self.ledger.resource_by_name(kind, name)
        if existing is not None:
            return existing
        return await self.ledger.add_resource(run.id, kind, name, spec, at=self.clock.now(), **extra)

    async def _wait(self, resource: Resource, *, poll_s: float, logs: bool = False) -> Converged:
        return await self._converge([resource], poll_s=poll_s, logs=logs)

    async def _wait_present(self, resource: Resource) -> Resource:
        resource = (await self._wait(resource, poll_s=self.timing.endpoint_poll_s)).resources[0]
        if resource.status != Status.PRESENT:
            raise RunFailed(f"{resource.kind.value} {resource.name} is {resource.status}")
        return resource

    async def _converge(self, resources: list[Resource], *, poll_s: float, logs: bool = False) -> Converged:
        """Converge until each resource is settled; deadlines and their actions live in the ledger rows.
        With `logs`, the first resource's training log streams to the reporter meanwhile."""
        cursor: list[str | None] = [None]

        async def on_pass(result: PassResult) -> None:
            await self.report_pass(result)
            job = result.get(resources[0])
            if logs and job.status not in (Status.ABSENT, Status.PENDING):
                lines, cursor[0] = await self.backend.training_log(job.name, cursor[0])
                for line in lines:
                    self.reporter.log_line(line)

        outcome = await self.reconciler.converge(
            resources, poll_s=poll_s, create=True, on_pass=on_pass,
            done=lambda r: settled(r) or _stuck_out_of_service(r),
        )
        if outcome.failed:
            raise outcome.failed[0][1]
        return outcome

    async def report_pass(self, result: PassResult) -> None:
        for _, after in result.changes:  # in the order they happened
            self.reporter.status(after)
        for resource, error in result.errors:
            if error.retryable:
                self.reporter.step(f"{resource.name}: {error} (will retry)")

    async def _transform(
        self, run: Run, spec: dict[str, Any], *, settings: TransformSettings, place: TransformPlace,
        deadline_at: datetime, bound: str, rows: int, into: Path,
    ) -> Resource:
        """Run a transform job to its end (stopped past `deadline_at`) and fetch its output into `into`,
        checked for one prediction a row."""
        name = spec["TransformJobName"]
        job = await self._intent(run, Kind.TRANSFORM_JOB, name, spec, instance_type=settings.instance_type,
                                 instance_count=settings.instance_count, deadline_at=deadline_at)
        waited = await self._wait(job, poll_s=self.timing.training_poll_s)
        job = waited.resources[0]
        if job.status != Status.COMPLETED:
            if job.id in waited.deadlines or self.clock.now() > deadline_at:
                raise WaitTimeout(f"transform job {name} did not complete within {bound}; it was stopped")
            raise RunFailed(f"transform job {name} {job.status}: {job.failure_reason or 'no reason given'}")
        into.parent.mkdir(parents=True, exist_ok=True)
        await self.backend.download_file(place.bucket, place.output_key, str(into))
        check_prediction_lines(into, rows, f"transform job {name}")
        return job

    async def _job_started(self, kind: Kind, name: str) -> bool:
        """Whether a job of this name was created already (a resumed flow does not upload its input again)."""
        row = await self.ledger.resource_by_name(kind, name)
        return row is not None and row.status != Status.PENDING
