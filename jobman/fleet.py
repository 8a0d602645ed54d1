"""Operations over everything in the ledger: group resources by the backend they live on, reconcile, stop.

A ledger can hold runs on several backends and regions; each group is observed and acted on through
its own backend, opened once per operation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from jobman.backends.base import Backend
from jobman.clock import Clock
from jobman.config import AwsConfig
from jobman.errors import BackendError, ConfigError
from jobman.identity import local_site
from jobman.kinds import TEARDOWN_ORDER, Kind
from jobman.leases import Note, held
from jobman.ledger.store import Ledger, Resource, Run
from jobman.reconciler import PassResult, Reconciler, teardown_chain
from jobman.states import Desired, RunStatus, Status
from jobman.timing import Timing

Target = tuple[str, str]  # (backend name, region)
OpenBackend = Callable[[str, AwsConfig], Awaitable[Backend]]


@dataclass
class FleetReport:
    actions: list[str] = field(default_factory=list)
    changes: list[tuple[Resource, Resource]] = field(default_factory=list)  # (before, after)
    errors: list[str] = field(default_factory=list)

    async def absorb(self, result: PassResult) -> None:
        self.changes.extend((b, a) for b, a in result.changes if b.status != a.status)
        self.actions.extend(result.actions)
        self.errors.extend(f"{r.kind.value} {r.name}: {e}" for r, e in result.errors)


async def runs_by_id(ledger: Ledger) -> dict[int, Run]:
    return {run.id: run for run in await ledger.all_runs()}


def elsewhere(run: Run) -> bool:
    """A run on another machine's local cloud (or another JOBMAN_HOME's): only there can it be looked at."""
    return run.local_site is not None and run.local_site != local_site()


async def group_by_target(ledger: Ledger, resources: list[Resource]) -> dict[Target, list[Resource]]:
    """Resources by the backend and region they live on; those on another machine's local cloud are left out."""
    runs = {run.id: run for run in await ledger.runs_with_ids({r.run_id for r in resources})}
    groups: dict[Target, list[Resource]] = {}
    for r in resources:
        run = runs[r.run_id]
        if not elsewhere(run):
            groups.setdefault((run.backend, run.region), []).append(r)
    return groups


@asynccontextmanager
async def opened(open_backend: OpenBackend, target: Target) -> AsyncIterator[Backend]:
    async with await open_backend(target[0], AwsConfig(region=target[1])) as backend:
        yield backend


async def endpoint_target(ledger: Ledger, endpoint: str, fallback: Target) -> Target:
    """Where an endpoint lives: its run's backend and region when the ledger knows it, else `fallback`."""
    known = await ledger.resource_by_name(Kind.ENDPOINT, endpoint)
    if known is None:
        return fallback
    run = await ledger.run(known.run_id)
    return run.backend, run.region


def live(r: Resource) -> bool:
    """Worth observing: anything not both unwanted and gone."""
    return not (r.desired is Desired.ABSENT and r.status == Status.ABSENT)


async def reconcile_all(
    ledger: Ledger, open_backend: OpenBackend, clock: Clock, *, on_wait: Note | None = None
) -> FleetReport:
    """One pass over every live resource in the ledger: record drift, act on deadlines, finish teardowns."""
    report = FleetReport()
    async with held(ledger, "reconcile", on_wait=on_wait):  # one pass at a time, on every machine
        tracked = await ledger.resources_to_observe()
        for target, group in (await group_by_target(ledger, tracked)).items():
            async with opened(open_backend, target) as backend:
                await report.absorb(await Reconciler(ledger, backend, clock).reconcile(group))
    return report


REFRESH_TIMEOUT_S = 20.0


async def refresh_expired(ledger: Ledger, open_backend: OpenBackend, clock: Clock) -> list[str]:
    """Observe, without acting, what is past its expiry but not yet seen gone, so that `jobman status` shows
    what the TTL's schedules did while no jobman process ran. Returns a note for each backend not reached."""
    now = clock.now()
    stale = await ledger.expired_resources(TEARDOWN_ORDER, now)
    notes = []
    for target, group in (await group_by_target(ledger, stale)).items():
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_S), opened(open_backend, target) as backend:
                await Reconciler(ledger, backend, clock).reconcile(group, act=False)
        except (BackendError, TimeoutError) as exc:
            notes.append(f"{target[0]}/{target[1]}: expired resources not refreshed: {exc or 'no answer in time'}")
    return notes


async def stop_experiment(ledger: Ledger, open_backend: OpenBackend, clock: Clock, name: str) -> FleetReport:
    """Tear down every run of the experiment: endpoint chain deleted, a running training job stopped."""
    exp = await ledger.experiment(name)
    if exp is None:
        known = ", ".join(e.name for e in await ledger.experiments()) or "none"
        raise ConfigError(f"experiment {name!r} is not in the ledger (known: {known})")
    report = FleetReport()
    runs = await ledger.runs(exp.id)
    chain = [r for r in teardown_chain(await ledger.resources(run_ids=[run.id for run in runs])) if live(r)]
    for target, group in (await group_by_target(ledger, chain)).items():
        async with opened(open_backend, target) as backend:
            poll_s = Timing.for_backend(target[0]).endpoint_poll_s
            await Reconciler(ledger, backend, clock).tear_down(group, poll_s=poll_s, on_pass=report.absorb)
    for run in runs:
        if not run.finished:
            await ledger.update_run(run.id, status=RunStatus.STOPPED, message="stopped by jobman stop",
                                    finished_at=clock.now())
    return report
