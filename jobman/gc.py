"""Garbage collection: endpoints past their TTL, and orphans the ledger does not know.

1. Expired: a ledger endpoint whose `expires_at` has passed and that still exists is torn down with
   its endpoint config and model (desired := absent, then the reconciler converges); a transform job
   still running past its deadline is stopped.
2. Orphans: resources on a backend tagged `jobman:managed=true` that no ledger row names (a lost or
   different ledger file) and whose `jobman:expires-at` has passed. They are first adopted into the
   ledger (experiment from their tag, a run marked "orphaned", desired absent) so that the reconciler
   deletes them like anything else and the ledger keeps the record. Untagged resources are never touched.

Where it looks: the backends and regions the ledger names, `local`, and AWS's default region when AWS
credentials are available (a lost ledger must not hide an account full of expired endpoints).
A gc pass holds the ledger's "gc" lease (see leases.py), so two gc processes at once, on one machine or on
several sharing a PostgreSQL ledger, delete each resource once: the second waits, then finds the work done.
A dry run changes nothing: no ledger row, no lease, and no local server is started to look.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from jobman.backends.base import Backend
from jobman.clock import Clock, parse_utc_iso
from jobman.errors import BackendError
from jobman.fleet import FleetReport, OpenBackend, Target, elsewhere, group_by_target, live, opened, runs_by_id
from jobman.identity import current_host, current_user, site_for
from jobman.kinds import CHAIN, JOB_KINDS, KIND_API, TEARDOWN_ORDER, Kind
from jobman.leases import Note, held
from jobman.ledger.store import Ledger, Observation, Resource
from jobman.reconciler import Reconciler, chain_of, teardown_chain
from jobman.states import RunStatus, Status
from jobman.tags import TAG_EXPERIMENT, TAG_EXPIRES, TAG_MANAGED
from jobman.timing import Timing

ORPHANS_EXPERIMENT = "orphans"  # where orphans without a usable experiment tag are recorded


@dataclass(frozen=True)
class Candidate:
    kind: Kind
    name: str
    target: Target
    expires_at: datetime | None
    orphan: bool
    experiment: str
    arn: str | None = None
    status: str | None = None
    created_at: datetime | None = None


@dataclass
class GcReport(FleetReport):
    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where gc did not look, and why


async def expired_in_ledger(ledger: Ledger, now: datetime) -> list[Resource]:
    """The chains (endpoint, config, model, and their schedules) with any part still there past its expiry.

    A schedule may already have deleted the endpoint: what it left (config, model, a schedule that failed)
    goes too."""
    resources = [r for r in await ledger.resources() if live(r)]
    expired = {
        chain_of(r) for r in resources
        if r.kind in CHAIN and r.expires_at is not None and r.expires_at <= now and r.status != Status.ABSENT
    }
    ending = teardown_chain(resources)
    return ([r for r in ending if chain_of(r) in expired and r.kind in TEARDOWN_ORDER]
            + [r for r in ending if r.kind in JOB_KINDS and _overdue(r, now)])


def _overdue(job: Resource, now: datetime) -> bool:
    """A transform job running past its deadline: nobody is waiting for it, gc stops it. (A training job's
    deadline is its MaxRuntime plus slack; SageMaker stops it itself.)"""
    return job.kind is Kind.TRANSFORM_JOB and job.deadline_at is not None and job.deadline_at <= now


async def find_orphans(
    backend: Backend, target: Target, known: set[tuple[Kind, str]], now: datetime, notes: list[str]
) -> list[Candidate]:
    """Tagged, expired, unknown to the ledger: one List per kind, ListTags only for names the ledger lacks."""
    found: list[Candidate] = []
    for kind in TEARDOWN_ORDER:
        api = KIND_API[kind]
        try:
            summaries = await backend.list_summaries(kind)
        except BackendError as exc:
            if kind is not Kind.SCHEDULE or exc.retryable:
                raise
            # Users of ttl_enforcement = "gc" may have no EventBridge Scheduler permissions at all.
            notes.append(f"{target[0]}/{target[1]}: schedules not scanned: {exc}")
            continue
        for summary in summaries:
            name = summary[api.name_key]
            if (kind, name) in known:
                continue
            status = summary.get(api.status_key) if api.status_key else Status.PRESENT
            if status == Status.DELETING:
                continue
            tags = await backend.list_tags(summary[api.arn_key])
            if tags.get(TAG_MANAGED) != "true":
                continue  # not jobman's: never touched
            expires_at = parse_utc_iso(tags.get(TAG_EXPIRES, ""))
            if expires_at is None or expires_at > now:
                continue
            experiment = tags.get(TAG_EXPERIMENT) or ORPHANS_EXPERIMENT
            created = summary.get(api.created_key)
            found.append(Candidate(kind, name, target, expires_at, True, experiment, summary[api.arn_key], status,
                                   created if isinstance(created, datetime) else None))
    return found


async def adopt_orphans(ledger: Ledger, orphans: list[Candidate], now: datetime) -> list[Resource]:
    """Record orphans in the ledger (one "orphaned" run per experiment tag) so the reconciler can delete them."""
    adopted: list[Resource] = []
    runs: dict[tuple[str, Target], int] = {}
    for o in orphans:
        key = (o.experiment, o.target)
        if key not in runs:
            exp = await ledger.experiment(o.experiment, create_at=now)
            assert exp is not None
            run = await ledger.start_run(exp.id, digest="orphaned", backend=o.target[0], region=o.target[1],
                                         config_path="-", at=now, user=current_user(), host=current_host(),
                                         local_site=site_for(o.target[0]))
            await ledger.update_run(run.id, status=RunStatus.ORPHANED, message="adopted by jobman gc", finished_at=now)
            runs[key] = run.id
        # Created when the backend says, so the reconciler's creation-time filter still lists it.
        row = await ledger.add_resource(runs[key], o.kind, o.name, {}, at=o.created_at or now, expires_at=o.expires_at)
        row = await ledger.record(row.id, Observation(status=o.status or Status.PRESENT, arn=o.arn,
                                                      message="orphan: tagged by jobman, unknown to this ledger"),
                                  at=now)
        adopted.append(row)
    return adopted


async def collect(
    ledger: Ledger | None, open_backend: OpenBackend, clock: Clock, targets: set[Target]
) -> GcReport:
    """What a gc pass would delete, touching nothing (no ledger at all: a dry run before the first run)."""
    now = clock.now()
    report = GcReport()
    expired = await expired_in_ledger(ledger, now) if ledger is not None else []
    known: set[tuple[Kind, str]] = set()
    if ledger is not None:
        runs = await runs_by_id(ledger)
        experiment_names = {e.id: e.name for e in await ledger.experiments()}
        for r in expired:
            run = runs[r.run_id]
            if elsewhere(run):
                continue  # on another machine's local cloud: that machine's gc reaps it
            ends_at = r.expires_at or r.deadline_at  # a job's deadline is its TTL
            report.candidates.append(Candidate(r.kind, r.name, (run.backend, run.region), ends_at, False,
                                               experiment_names[run.experiment_id], r.arn, r.status))
        known = {(r.kind, r.name) for r in await ledger.resources()}
        targets = targets | set((await group_by_target(ledger, expired)).keys())
    for target in sorted(targets):
        try:
            async with opened(open_backend, target) as backend:
                report.candidates.extend(await find_orphans(backend, target, known, now, report.notes))
        except BackendError as exc:
            if exc.code != "NotRunning":
                raise
            report.notes.append(f"{target[0]}/{target[1]}: not scanned for orphans: {exc}")
    return report


async def collect_garbage(
    ledger: Ledger, open_backend: OpenBackend, clock: Clock, targets: set[Target], *, dry_run: bool,
    on_wait: Note | None = None,
) -> GcReport:
    if dry_run:
        return await collect(ledger, open_backend, clock, targets)
    async with held(ledger, "gc", on_wait=on_wait):  # a second gc waits here, then finds the work done
        report = await collect(ledger, open_backend, clock, targets)
        now = clock.now()
        adopted = await adopt_orphans(ledger, [c for c in report.candidates if c.orphan], now)
        expired = await expired_in_ledger(ledger, now)
        for target, group in (await group_by_target(ledger, expired + adopted)).items():
            async with opened(open_backend, target) as backend:
                poll_s = Timing.for_backend(target[0]).endpoint_poll_s
                await Reconciler(ledger, backend, clock).tear_down(group, poll_s=poll_s, on_pass=report.absorb)
        return report


async def known_targets(ledger: Ledger) -> set[Target]:
    return {(run.backend, run.region) for run in (await runs_by_id(ledger)).values()}


async def default_targets(
    ledger: Ledger | None, local_regions: list[str], aws_region: Callable[[], str]
) -> tuple[set[Target], list[str]]:
    """Where gc looks when not told: the ledger's backends and regions, `local` (each region it holds state
    for), and AWS's default region when there are credentials; `aws_region` raises BackendError otherwise,
    and its message becomes a note that says how to scan AWS."""
    targets = await known_targets(ledger) if ledger is not None else set()
    targets |= {("local", region) for region in local_regions}
    notes = []
    try:
        targets.add(("sagemaker", aws_region()))
    except BackendError as exc:
        notes.append(f"AWS not scanned: {exc}; scan it with `jobman gc --backend sagemaker --region REGION`")
    return targets, notes

