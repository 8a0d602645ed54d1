"""Observe actual state in bulk, compare with the ledger's desired state, act, record.

The reconciler is the only caller of control-plane mutations (create, delete, stop). One pass:
1. observe: one paginated List per kind (filtered by name prefix and creation time) for all tracked
   resources, then Describe only what changed or still lacks detail (failure reason, artifacts);
2. act: create what is desired and missing, tear down what is unwanted (endpoints, then configs,
   then models), stop a training job past its deadline, delete an endpoint stuck past its deadline;
3. record: every observed change of status becomes an event in the ledger.
One resource's error is collected, never allowed to stop the pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobman.backends.base import Backend
from jobman.clock import Clock
from jobman.durations import format_duration
from jobman.errors import BackendError, ResourceInUse, ResourceNotFound, WaitTimeout
from jobman.kinds import CHAIN, JOB_KINDS, KIND_API, TEARDOWN_ORDER, Kind
from jobman.ledger.store import Ledger, Observation, Resource
from jobman.names import batch_of
from jobman.states import (
    BILLED_STATUSES,
    CREATED_STATUS,
    JOB_FINISHED,
    Desired,
    Meaning,
    Status,
    is_settled,
    meaning,
)
from jobman.tags import TAG_CONFIG

TEARDOWN_TIMEOUT_S = 1800.0
CREATION_SKEW = timedelta(minutes=10)  # ledger time is taken before Create; allow for clock skew
DRIFT = "not found on the backend: deleted outside jobman"


@dataclass
class PassResult:
    resources: dict[int, Resource] = field(default_factory=dict)  # state after the pass, by id
    actions: list[str] = field(default_factory=list)
    errors: list[tuple[Resource, BackendError]] = field(default_factory=list)
    changes: list[tuple[Resource, Resource]] = field(default_factory=list)  # (before, after), in the order made
    deadlines: set[int] = field(default_factory=set)  # resources whose deadline passed (and was acted on)
    expired: set[int] = field(default_factory=set)  # resources given up because their chain's TTL passed

    def get(self, resource: Resource) -> Resource:
        return self.resources.get(resource.id, resource)

    def update(self, before: Resource, after: Resource) -> None:
        self.resources[after.id] = after
        if (before.status, before.desired) != (after.status, after.desired):
            self.changes.append((before, after))


@dataclass
class Converged:
    """Where a wait ended: each resource's last state, what passed its deadline or its TTL meanwhile, and the
    resources given up on for a permanent error (the others were still waited for)."""

    resources: list[Resource]
    deadlines: set[int] = field(default_factory=set)
    expired: set[int] = field(default_factory=set)
    failed: list[tuple[Resource, BackendError]] = field(default_factory=list)


OnPass = Callable[[PassResult], Awaitable[None]]


def _needs_observation(r: Resource) -> bool:
    if r.status == Status.ABSENT and r.desired is Desired.ABSENT:
        return False
    # A finished job never changes again once its details are recorded.
    finished = r.kind in JOB_KINDS and r.status in JOB_FINISHED
    return not (finished and r.details and "described" in r.details)


def _common_prefix(names: Iterable[str]) -> str:
    return os.path.commonprefix(list(names))


class Reconciler:
    def __init__(self, ledger: Ledger, backend: Backend, clock: Clock, *, concurrency: int = 16) -> None:
        self.ledger, self.backend, self.clock = ledger, backend, clock
        self._limit = asyncio.Semaphore(concurrency)

    async def reconcile(self, resources: list[Resource], *, create: bool = False, act: bool = True) -> PassResult:
        """One pass over `resources`. With `create`, missing desired resources are (re)created; without
        `act`, the pass only observes and records (what `jobman status` does for expired resources)."""
        result = PassResult()
        tracked = [r for r in resources if _needs_observation(r)]
        observed = await self._observe(tracked, result)
        current = {r.id: r for r in resources}
        unchanged = {r.id for r in tracked if r.id in observed and not _changes(r, observed[r.id])}
        await self.ledger.touch(sorted(unchanged), at=self.clock.now())  # one statement for the quiet majority
        result.resources.update(current)
        for r in tracked:
            if r.id in observed and r.id not in unchanged:
                current[r.id] = await self._record(r, observed[r.id], result)
        # Gone after its expiry: the TTL did its work (a schedule fired); the rest of the chain goes too.
        expired = {chain_of(r) for r in tracked if _expired_and_gone(current[r.id], self.clock.now())}
        await self._expire_chains(expired, result, "its TTL expired and part of the chain is gone")
        if not act:
            return result
        unseen = {r.id for r, _ in result.errors}  # not observed this pass: acting would be blind
        tracked = [r for r in tracked if r.id not in unseen]
        await self._act_present([result.get(r) for r in tracked], result, create=create)
        await self._act_absent_in_order([result.get(r) for r in tracked], result)
        return result

    async def _expire_chains(self, chains: set[Chain], result: PassResult, why: str) -> None:
        """Mark the endpoint `chains` (each with its schedules) unwanted, so teardown finishes them."""
        if not chains:
            return
        now = self.clock.now()
        chain = [r for r in await self.ledger.resources(run_ids={run_id for run_id, _ in chains})
                 if chain_of(r) in chains and r.kind in TEARDOWN_ORDER and r.desired is Desired.PRESENT]
        if not chain:
            return
        await self.ledger.set_desired([r.id for r in chain], Desired.ABSENT, at=now)
        for r in chain:
            await self.ledger.note(r.id, why, at=now)
            result.update(result.get(r), await self.ledger.resource(r.id))
            result.expired.add(r.id)

    async def converge(
        self,
        resources: list[Resource],
        *,
        poll_s: float,
        create: bool = False,
        timeout_s: float | None = None,
        done: Callable[[Resource], bool] | None = None,
        on_pass: OnPass | None = None,
    ) -> Converged:
        """Reconcile `resources` until each is `done` (default: settled), calling `on_pass` after every pass.

        A resource that fails for good (access denied, say) stops being waited for and is reported in
        `failed`; the others still converge. Past `timeout_s`, WaitTimeout names what is left.
        """
        finished = done or settled
        latest = {r.id: r for r in resources}
        current = list(resources)
        outcome = Converged(list(resources))
        deadline = self.clock.now() + timedelta(seconds=timeout_s) if timeout_s is not None else None
        while True:
            result = await self.reconcile(current, create=create)
            if on_pass is not None:
                await on_pass(result)
            outcome.deadlines |= result.deadlines
            outcome.expired |= result.expired
            failed = [(r, e) for r, e in result.errors if not e.retryable]
            outcome.failed += failed
            latest.update((r.id, result.get(r)) for r in current)
            outcome.resources = [latest[r.id] for r in resources]
            current = [latest[r.id] for r in current if not finished(latest[r.id])]
            current = _without_given_up(current, {r.id for r, _ in failed})
            if not current:
                return outcome
            if deadline is not None and self.clock.now() > deadline:
                left = ", ".join(f"{r.name} ({r.status})" for r in current)
                raise WaitTimeout(f"{left}: not settled within {format_duration(timeout_s or 0)}")
            await self.clock.sleep(poll_s)

    async def tear_down(
        self, resources: list[Resource], *, poll_s: float, timeout_s: float = TEARDOWN_TIMEOUT_S,
        on_pass: OnPass | None = None,
    ) -> list[Resource]:
        """Mark `resources` unwanted and converge until all are gone (or stopped).

        A delete that fails for good is raised after the rest of the teardown has converged.
        """
        if not resources:
            return []
        await self.ledger.set_desired([r.id for r in resources], Desired.ABSENT, at=self.clock.now())
        current = [await self.ledger.resource(r.id) for r in resources]
        try:
            outcome = await self.converge(current, poll_s=poll_s, timeout_s=timeout_s, on_pass=on_pass)
        except WaitTimeout as exc:
            raise WaitTimeout(f"teardown did not finish: {exc}") from None
        if outcome.failed:
            raise BackendError("teardown incomplete: " + "; ".join(str(e) for _, e in outcome.failed),
                               code="TeardownFailed")
        return outcome.resources

    # observe

    async def _observe(self, tracked: list[Resource], result: PassResult) -> dict[int, Observation]:
        by_kind: dict[Kind, list[Resource]] = {}
        for r in tracked:
            by_kind.setdefault(r.kind, []).append(r)
        found: dict[int, Observation] = {}

        async def observe_kind(kind: Kind, group: list[Resource]) -> None:
            try:
                summaries = await self.backend.list_summaries(
                    kind,
                    name_contains=_common_prefix(r.name for r in group) or None,
                    created_after=min(r.created_at for r in group) - CREATION_SKEW,
                )
            except BackendError as exc:
                result.errors.extend((r, exc) for r in group)
                return
            api = KIND_API[kind]
            listed = {s[api.name_key]: s for s in summaries}
            await self._gather(group, lambda r, res: self._observe_one(r, listed, found), result)

        await asyncio.gather(*(observe_kind(k, g) for k, g in by_kind.items()))
        return found

    async def _observe_one(self, r: Resource, listed: dict[str, dict[str, Any]], found: dict[int, Observation]) -> None:
        api = KIND_API[r.kind]
        summary = listed.get(r.name)
        if summary is None:
            if r.status in (Status.PENDING, Status.ABSENT):
                found[r.id] = Observation(status=r.status)
                return
            # List can lag behind a Create; only a Describe saying "not found" means gone.
            try:
                summary = await self.backend.describe(r.kind, r.name)
            except ResourceNotFound:
                found[r.id] = Observation(status=Status.ABSENT, message=self._gone_message(r))
                return
        if r.status == Status.PENDING:
            # Intent recorded, then a crash or a lost reply: the name exists. Adopt it only if it is ours.
            await self._check_owner(r, summary.get(api.arn_key))
        status = str(summary[api.status_key]) if api.status_key else Status.PRESENT
        observation = Observation(status=status, arn=summary.get(api.arn_key))
        if self._wants_detail(r, status):
            observation = await self._describe(r, status)
        found[r.id] = observation

    def _gone_message(self, r: Resource) -> str | None:
        """Why a resource is gone: asked for (no message), its TTL (a schedule fired), or drift."""
        if r.desired is Desired.ABSENT:
            return None
        if r.expires_at is not None and r.expires_at <= self.clock.now():
            if r.kind is Kind.SCHEDULE:
                return "fired at its time and deleted itself"
            return "expired: deleted by its TTL schedule"
        return DRIFT

    @staticmethod
    def _wants_detail(r: Resource, status: str) -> bool:
        if status != r.status:
            return True
        if r.kind in JOB_KINDS and status in JOB_FINISHED:
            return not (r.details and "described" in r.details)
        return meaning(r.kind, status) is Meaning.FAILED and not r.failure_reason

    async def _describe(self, r: Resource, listed_status: str) -> Observation:
        api = KIND_API[r.kind]
        try:
            d = await self.backend.describe(r.kind, r.name)
        except ResourceNotFound:
            return Observation(status=Status.ABSENT, message=self._gone_message(r))
        status = str(d[api.status_key]) if api.status_key else Status.PRESENT
        details: dict[str, Any] = {}
        if r.kind is Kind.TRAINING_JOB:
            details = {
                "secondary_status": d.get("SecondaryStatus"),
                "model_data": (d.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
                "training_start": _iso(d.get("TrainingStartTime")),
                "training_end": _iso(d.get("TrainingEndTime")),
                "billable_s": d.get("BillableTimeInSeconds"),
                "final_metrics": _final_metrics(d.get("FinalMetricDataList")),
            }
        elif r.kind is Kind.TRANSFORM_JOB:
            details = {
                "transform_start": _iso(d.get("TransformStartTime")),
                "transform_end": _iso(d.get("TransformEndTime")),
                "output_path": (d.get("TransformOutput") or {}).get("S3OutputPath"),
            }
        elif r.kind is Kind.ENDPOINT:
            details = {"creation_time": _iso(d.get("CreationTime"))}
        if r.kind in JOB_KINDS and status in JOB_FINISHED:
            details["described"] = True
        return Observation(
            status=status,
            arn=d.get(api.arn_key),
            failure_reason=d.get("FailureReason"),
            details={k: v for k, v in details.items() if v is not None},
        )

    async def _record(self, r: Resource, obs: Observation, result: PassResult) -> Resource:
        """One observation, one transaction: the status, its event, and what follows from it for billing
        and deadlines."""
        now = self.clock.now()
        updated = await self.ledger.record(r.id, obs, at=now, **_bookkeeping(r, obs, now))
        result.update(r, updated)
        return updated

    # act

    async def _act_present(self, resources: list[Resource], result: PassResult, *, create: bool) -> None:
        wanted = [r for r in resources if r.desired is Desired.PRESENT]
        now = self.clock.now()
        for r in wanted:
            # Pending, transient or unknown past the deadline: an unknown status never waits forever.
            late = meaning(r.kind, r.status) in (Meaning.PENDING, Meaning.TRANSIENT, Meaning.UNKNOWN)
            if r.deadline_at is not None and now > r.deadline_at and late:
                await self._deadline_passed(r, result)
        if create:
            missing = [result.get(r) for r in wanted]
            missing = [r for r in missing
                       if r.desired is Desired.PRESENT and r.status in (Status.PENDING, Status.ABSENT)]
            await self._gather(missing, self._create, result)

    async def _deadline_passed(self, r: Resource, result: PassResult) -> None:
        now = self.clock.now()
        result.deadlines.add(r.id)
        if r.kind in JOB_KINDS and r.status not in (Status.PENDING, Status.STOPPING):
            await self.ledger.note(r.id, f"deadline passed: stopping the {_noun(r.kind)}", at=now)
            try:
                await self.backend.stop(r.kind, r.name)
                result.actions.append(f"stopped {_noun(r.kind)} {r.name} (deadline passed)")
            except ResourceNotFound:
                pass
            except BackendError as exc:
                result.errors.append((r, exc))
        elif r.kind is Kind.ENDPOINT:
            await self.ledger.note(r.id, f"deadline passed while {r.status}: deleting the endpoint", at=now)
            await self.ledger.set_desired([r.id], Desired.ABSENT, at=now)
            result.update(r, await self.ledger.resource(r.id))

    async def _create(self, r: Resource, result: PassResult) -> None:
        api = KIND_API[r.kind]
        if r.kind is Kind.SCHEDULE and r.expires_at is not None and r.expires_at <= self.clock.now():
            # A fire time in the past is never sent: jobman deletes the chain itself instead.
            why = "not created: its time had passed; jobman deletes the chain"
            await self._record(r, Observation(status=Status.ABSENT, message=why), result)
            await self._expire_chains({chain_of(r)}, result, "its TTL passed before its schedule was created")
            result.actions.append(f"expired {r.name} before creating it: tearing the chain down")
            return
        try:
            response = await self.backend.create(r.kind, r.spec)
            obs = Observation(status=CREATED_STATUS[r.kind], arn=response.get(api.arn_key))
            result.actions.append(f"created {r.kind.value} {r.name}")
        except ResourceInUse:
            obs = await self._adopt(r)
            result.actions.append(f"adopted {r.kind.value} {r.name}")
        await self._record(r, obs, result)

    async def _adopt(self, r: Resource) -> Observation:
        """A create met its own name: keep it if it carries this run's tags (a retried or resumed create)."""
        obs = await self._describe(r, r.status)
        await self._check_owner(r, obs.arn)
        return obs

    async def _check_owner(self, r: Resource, arn: str | None) -> None:
        tags = await self.backend.list_tags(arn) if arn else {}
        mine = {t["Key"]: t["Value"] for t in r.spec.get("Tags", [])}
        if tags.get(TAG_CONFIG) != mine.get(TAG_CONFIG):
            raise BackendError(
                f"{r.kind.value} {r.name} exists on the backend but was not created by this run "
                f"(tag {TAG_CONFIG}={tags.get(TAG_CONFIG)!r}); delete it or start a new run",
                code="NameTaken",
            )

    async def _act_absent_in_order(self, resources: list[Resource], result: PassResult) -> None:
        """Teardown in SageMaker's order: a run's endpoint config goes only once its endpoint is gone,
        its model only once the config is gone. Jobs are stopped independently."""
        blocked_runs: set[int] = set()
        for kind in TEARDOWN_ORDER:
            group = [r for r in resources if r.kind is kind and r.run_id not in blocked_runs]
            await self._gather([r for r in group if r.desired is Desired.ABSENT], self._act_absent, result)
            blocked_runs |= {r.run_id for r in group if result.get(r).status != Status.ABSENT}
        jobs = [r for r in resources if r.kind in JOB_KINDS and r.desired is Desired.ABSENT]
        await self._gather(jobs, self._act_absent, result)

    async def _act_absent(self, r: Resource, result: PassResult) -> None:
        now = self.clock.now()
        if r.kind in JOB_KINDS:
            if meaning(r.kind, r.status) is Meaning.PENDING and r.status not in (Status.PENDING, Status.STOPPING):
                await self.ledger.update_resource(r.id, at=now, stop_requested=True)
                await self.backend.stop(r.kind, r.name)
                result.actions.append(f"stopped {_noun(r.kind)} {r.name}")
                await self._record(r, Observation(status=Status.STOPPING), result)
            elif r.status == Status.PENDING:  # never created: nothing to stop
                await self._record(r, Observation(status=Status.ABSENT, message="never created"), result)
            return
        if r.status == Status.ABSENT or (r.kind is Kind.ENDPOINT and r.status == Status.DELETING):
            return
        if r.kind is Kind.ENDPOINT and not await self.ledger.claim_deletion(r.id, at=now):
            return  # another jobman process (a concurrent gc or run) is deleting it
        try:
            await self.backend.delete(r.kind, r.name)
            status = Status.DELETING if r.kind is Kind.ENDPOINT else Status.ABSENT
            result.actions.append(f"deleted {r.kind.value} {r.name}")
        except ResourceNotFound:
            status = Status.ABSENT
        await self._record(r, Observation(status=status), result)

    async def _gather(
        self,
        resources: list[Resource],
        action: Callable[[Resource, PassResult], Awaitable[None]],
        result: PassResult,
    ) -> None:
        async def guarded(r: Resource) -> None:
            async with self._limit:
                try:
                    await action(r, result)
                except BackendError as exc:
                    result.errors.append((r, exc))

        await asyncio.gather(*(guarded(r) for r in resources))


def _changes(r: Resource, obs: Observation) -> bool:
    """Whether recording `obs` would change the row (beyond the time it was observed)."""
    return (
        obs.status != r.status
        or bool(obs.arn and obs.arn != r.arn)
        or (obs.failure_reason is not None and obs.failure_reason != r.failure_reason)
        or bool(obs.details and any((r.details or {}).get(k) != v for k, v in obs.details.items()))
    )


def _bookkeeping(r: Resource, obs: Observation, now: datetime) -> dict[str, Any]:
    """What an observation changes besides the status: the deadline and the billed interval."""
    values: dict[str, Any] = {}
    if r.deadline_at is not None and meaning(r.kind, obs.status) in (Meaning.OK, Meaning.FAILED):
        # A deadline bounds the way to the first settled state; a kept endpoint that is later
        # Updating or OutOfService is not "late".
        values["deadline_at"] = None
    billed = BILLED_STATUSES.get(r.kind, frozenset())
    if obs.status in billed and r.billed_from is None:
        values["billed_from"] = now
    if obs.status not in billed and r.billed_from is not None and r.billed_until is None:
        values["billed_until"] = now
    if obs.status in billed and r.billed_until is not None:
        values["billed_until"] = None  # recreated after drift: billed again
    return values


def _without_given_up(resources: list[Resource], given_up: set[int]) -> list[Resource]:
    """Stop waiting for resources that failed for good. A chain whose part could not be deleted keeps its
    schedules: they are what still bounds it (the cloud may delete it with the schedules' role)."""
    if not given_up:
        return resources
    held_runs = {r.run_id for r in resources if r.id in given_up and r.kind in CHAIN}
    return [r for r in resources
            if r.id not in given_up and not (r.kind is Kind.SCHEDULE and r.run_id in held_runs)]


def _expired_and_gone(r: Resource, now: datetime) -> bool:
    return (r.kind in TEARDOWN_ORDER and r.status == Status.ABSENT and r.desired is Desired.PRESENT
            and r.expires_at is not None and r.expires_at <= now)


Chain = tuple[int, int | None]  # (run id, the `jobman transform` number, or None for the run's own chain)


def chain_of(r: Resource) -> Chain:
    """The endpoint chain a resource belongs to, which shares one expiry: the run's own (endpoint, config, model
    and schedules), or a model that one `jobman transform` of the run made, standing alone with its own deadline."""
    return r.run_id, batch_of(r.name)


def teardown_chain(resources: Iterable[Resource]) -> list[Resource]:
    """What tearing down means: the endpoint chain, and any job still running."""
    return [
        r for r in resources
        if r.kind in TEARDOWN_ORDER or (r.kind in JOB_KINDS and meaning(r.kind, r.status) is Meaning.PENDING)
    ]


def settled(r: Resource) -> bool:
    return is_settled(r.kind, r.status, r.desired, stop_requested=r.stop_requested)


def _noun(kind: Kind) -> str:
    return kind.value.replace("_", " ")


def _final_metrics(metrics: Any) -> dict[str, float] | None:
    """DescribeTrainingJob's FinalMetricDataList as {name: value}: what a sweep's objective is read from."""
    if not metrics:
        return None
    return {str(m["MetricName"]): float(m["Value"]) for m in metrics if "MetricName" in m and "Value" in m}


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value is not None else None)
