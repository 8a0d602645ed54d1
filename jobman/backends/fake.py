"""An in-memory SageMaker for tests: the same protocol as the real backends, scripted transitions.

Training jobs are InProgress for `training_polls` observations, then Completed (or whatever
`training_outcome` says); transform jobs likewise for `transform_polls`, writing `<object>.out` with one
`predict(row)` a line when they complete; endpoints are Creating for `endpoint_polls` observations, then InService.
Schedules fire when a test calls `fire_due_schedules`, as EventBridge Scheduler would at their time.
Tests reach into `resources` to change state behind the controller's back, and read `calls`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobman.errors import BackendError, InvokeError, ResourceInUse, ResourceNotFound
from jobman.kinds import JOB_KINDS, KIND_API, SCHEDULE_GROUP, Kind
from jobman.states import CREATED_STATUS, Status
from jobman.tags import tags_in_description
from jobman.ttl import schedule_target

ACCOUNT = "111122223333"


@dataclass
class FakeResource:
    kind: Kind
    name: str
    request: dict[str, Any]
    arn: str
    created: datetime
    status: str | None
    polls: int = 0
    failure_reason: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class FakeBackend:
    def __init__(
        self, *, name: str = "fake", region: str = "us-east-1", training_polls: int = 2, endpoint_polls: int = 2,
        training_outcome: str = Status.COMPLETED, transform_polls: int = 2, now: Any = None,
    ) -> None:
        self.name, self.region = name, region
        self.training_polls, self.endpoint_polls = training_polls, endpoint_polls
        self.transform_polls = transform_polls
        self.training_outcome = training_outcome
        self.resources: dict[tuple[Kind, str], FakeResource] = {}
        self.objects: dict[str, bytes] = {}
        self.calls: Counter[str] = Counter()
        self.history: list[str] = []  # operations in the order they were called
        self.fail_next: dict[str, BackendError] = {}  # operation -> error raised once
        self.predict = lambda row: sum(float(v) for v in row.split(b","))
        # What a completed training job reports in FinalMetricDataList, from its hyperparameters.
        self.final_metrics: Any = lambda hp: {"validation:rmse": 1.0 + len(str(sorted(hp.items()))) % 7 / 10}
        self._now = now or (lambda: datetime.now(UTC))
        self.training_capacity: int | None = None  # more InProgress jobs than this: ResourceLimitExceeded
        self.peak_training = 0  # the most training jobs InProgress at once

    def _count(self, operation: str) -> None:
        self.calls[operation] += 1
        self.history.append(operation)
        error = self.fail_next.pop(operation, None)
        if error is not None:
            raise error

    def _get(self, kind: Kind, name: str) -> FakeResource:
        resource = self.resources.get((kind, name))
        if resource is None:
            raise ResourceNotFound(f"{kind.value} {name}: Could not find {kind.value} \"{name}\".")
        return resource

    def _advance(self, r: FakeResource) -> None:
        """One observation moves a pending resource one step along its script."""
        r.polls += 1
        if r.kind is Kind.TRAINING_JOB and r.status == Status.IN_PROGRESS and r.polls > self.training_polls:
            r.status = self.training_outcome
            if r.status == Status.FAILED:
                r.failure_reason = "AlgorithmError: scripted failure"
        elif r.kind is Kind.TRANSFORM_JOB and r.status == Status.IN_PROGRESS and r.polls > self.transform_polls:
            self._transform(r)
            r.status = Status.COMPLETED
        elif r.kind in JOB_KINDS and r.status == Status.STOPPING:
            r.status = Status.STOPPED
        elif r.kind is Kind.ENDPOINT and r.status == Status.CREATING and r.polls > self.endpoint_polls:
            r.status = Status.IN_SERVICE
        elif r.kind is Kind.ENDPOINT and r.status == Status.DELETING:
            del self.resources[(r.kind, r.name)]

    def _transform(self, r: FakeResource) -> None:
        source = r.request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        output = r.request["TransformOutput"]["S3OutputPath"].rstrip("/")
        for uri, body in list(self.objects.items()):
            if uri.startswith(source):
                rows = [line for line in body.split(b"\n") if line.strip()]
                name = uri.rsplit("/", 1)[-1]
                predictions = (repr(self.predict(row)).encode() + b"\n" for row in rows)
                self.objects[f"{output}/{name}.out"] = b"".join(predictions)

    def _summary(self, r: FakeResource) -> dict[str, Any]:
        api = KIND_API[r.kind]
        summary = {api.name_key: r.name, api.arn_key: r.arn, api.created_key: r.created}
        if api.status_key:
            summary[api.status_key] = r.status
        return summary

    async def account_id(self) -> str:
        self._count("get_caller_identity")
        return ACCOUNT

    async def ensure_bucket(self, bucket: str) -> None:
        self._count("ensure_bucket")

    async def upload_file(self, path: str, bucket: str, key: str) -> None:
        self._count("upload_file")
        self.objects[f"s3://{bucket}/{key}"] = Path(path).read_bytes()  # noqa: ASYNC240 - test files are tiny

    async def download_file(self, bucket: str, key: str, path: str) -> None:
        self._count("download_file")
        body = self.objects.get(f"s3://{bucket}/{key}")
        if body is None:
            raise ResourceNotFound(f"s3://{bucket}/{key}: NoSuchKey")
        Path(path).write_bytes(body)  # noqa: ASYNC240 - test files are tiny

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        self._count("delete_prefix")
        doomed = [uri for uri in self.objects if uri.startswith(f"s3://{bucket}/{prefix}")]
        for uri in doomed:
            del self.objects[uri]
        return len(doomed)

    async def create(self, kind: Kind, request: dict[str, Any]) -> dict[str, Any]:
        api = KIND_API[kind]
        self._count(api.create)
        name = request[api.name_key]
        if (kind, name) in self.resources:
            raise ResourceInUse(f"{kind.value} {name}: Cannot create already existing {kind.value}")
        running = sum(1 for r in self.resources.values()
                      if r.kind is Kind.TRAINING_JOB and r.status in (Status.IN_PROGRESS, Status.STOPPING))
        if kind is Kind.TRAINING_JOB and self.training_capacity is not None and running >= self.training_capacity:
            raise BackendError(f"{kind.value} {name}: ResourceLimitExceeded: The account-level service limit "
                               "for training job instances is exceeded", code="ResourceLimitExceeded")
        if kind is Kind.SCHEDULE:
            arn = f"arn:aws:scheduler:{self.region}:{ACCOUNT}:schedule/{SCHEDULE_GROUP}/{name}"
            tags = tags_in_description(request.get("Description"))
        else:
            arn = f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind.value.replace('_', '-')}/{name.lower()}"
            tags = {t["Key"]: t["Value"] for t in request.get("Tags", [])}
        status = CREATED_STATUS[kind] if api.status_key else None
        self.resources[(kind, name)] = FakeResource(kind, name, request, arn, self._now(), status, tags=tags)
        if kind is Kind.TRAINING_JOB:
            self.peak_training = max(self.peak_training, running + 1)
        return {api.arn_key: arn}

    async def describe(self, kind: Kind, name: str) -> dict[str, Any]:
        api = KIND_API[kind]
        self._count(api.describe)
        r = self._get(kind, name)
        self._advance(r)
        if (kind, name) not in self.resources:
            raise ResourceNotFound(f"{kind.value} {name}: Could not find it")
        out = {**r.request, **self._summary(r)}
        if r.failure_reason:
            out["FailureReason"] = r.failure_reason
        if kind is Kind.TRAINING_JOB and r.status == Status.COMPLETED:
            output = r.request["OutputDataConfig"]["S3OutputPath"]
            out["ModelArtifacts"] = {"S3ModelArtifacts": f"{output}/{name}/output/model.tar.gz"}
            metrics = self.final_metrics(r.request.get("HyperParameters", {}))
            out["FinalMetricDataList"] = [{"MetricName": k, "Value": v, "Timestamp": r.created}
                                          for k, v in metrics.items()]
        return out

    async def list_summaries(
        self, kind: Kind, *, name_contains: str | None = None, created_after: datetime | None = None
    ) -> list[dict[str, Any]]:
        found = []
        for r in list(self.resources.values()):
            if r.kind is not kind:
                continue
            if name_contains and name_contains not in r.name:
                continue
            if created_after and KIND_API[kind].sortable and r.created <= created_after:
                continue
            found.append(r)
        for _ in range(max(1, -(-len(found) // 100))):  # one call a page of 100, as SageMaker pages
            self._count(KIND_API[kind].list)
        summaries = []
        for r in found:
            self._advance(r)
            if (r.kind, r.name) in self.resources:
                summaries.append(self._summary(r))
        return summaries

    async def delete(self, kind: Kind, name: str) -> None:
        api = KIND_API[kind]
        assert api.delete is not None
        self._count(api.delete)
        r = self._get(kind, name)
        if kind is Kind.ENDPOINT:
            r.status = Status.DELETING
        else:
            del self.resources[(kind, name)]

    async def stop(self, kind: Kind, name: str) -> None:
        api = KIND_API[kind]
        assert api.stop is not None
        self._count(api.stop)
        r = self._get(kind, name)
        if r.status == Status.IN_PROGRESS:
            r.status = Status.STOPPING

    async def list_tags(self, arn: str) -> dict[str, str]:
        self._count("list_tags")
        for r in self.resources.values():
            if r.arn == arn:
                return dict(r.tags)
        raise ResourceNotFound(arn)

    async def ensure_schedule_group(self) -> None:
        self._count("ensure_schedule_group")

    def fire_due_schedules(self, now: datetime) -> list[str]:
        """What EventBridge Scheduler does at a schedule's time: call its target, then delete the schedule."""
        fired = []
        for r in [r for r in self.resources.values() if r.kind is Kind.SCHEDULE and r.status == Status.ENABLED]:
            at = datetime.fromisoformat(r.request["ScheduleExpression"][3:-1]).replace(tzinfo=UTC)
            if at > now:
                continue
            target = schedule_target(r.request)
            if target is not None and target in self.resources:
                if target[0] is Kind.ENDPOINT:
                    self.resources[target].status = Status.DELETING
                elif target[0] in JOB_KINDS:
                    if self.resources[target].status == Status.IN_PROGRESS:
                        self.resources[target].status = Status.STOPPING
                else:
                    del self.resources[target]
            del self.resources[(r.kind, r.name)]
            fired.append(r.name)
        return fired

    async def training_log(self, job_name: str, cursor: str | None) -> tuple[list[str], str | None]:
        self._count("get_log_events")
        r = self.resources.get((Kind.TRAINING_JOB, job_name))
        seen = int(cursor or 0)
        lines = [f"[{i}]#011train-rmse:{10 - i}" for i in range(r.polls if r else 0)]
        return lines[seen:], str(len(lines))

    async def invoke_endpoint(self, endpoint_name: str, body: bytes, content_type: str = "text/csv") -> bytes:
        self._count("invoke_endpoint")
        r = self.resources.get((Kind.ENDPOINT, endpoint_name))
        if r is None or r.status != Status.IN_SERVICE:
            raise InvokeError(f"ValidationError: endpoint {endpoint_name} is not InService", code="ValidationError")
        rows = [line for line in body.split(b"\n") if line.strip()]
        return b"\n".join(repr(self.predict(row)).encode() for row in rows) + b"\n"

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> FakeBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
