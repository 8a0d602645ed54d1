"""All ledger reads and writes. Rows never leave this module: callers get plain frozen dataclasses."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from jobman.errors import LedgerConflict, NotInLedger
from jobman.kinds import JOB_KINDS, Kind
from jobman.ledger.boundary import translated
from jobman.ledger.db import sessionmaker
from jobman.ledger.location import Place
from jobman.ledger.models import Base, EventModel, ExperimentModel, LeaseModel, ResourceModel, RunModel
from jobman.ledger.records import Event, Experiment, Lease, Observation, Resource, Run, RunClaim
from jobman.ledger.shield import uncancellable
from jobman.states import JOB_FINISHED, Desired, RunStatus, Status

__all__ = ["Event", "Experiment", "Lease", "Ledger", "Observation", "Resource", "Run", "RunClaim"]

D = TypeVar("D")
M = TypeVar("M", bound=Base)
P = ParamSpec("P")
T = TypeVar("T")
CONFLICT_RETRIES = 6


def transaction(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A ledger call: run to completion (see shield.py), and retried from the start when the database broke a
    tie between it and another process's transaction (a deadlock or serialization failure on PostgreSQL)."""

    @functools.wraps(method)
    async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(CONFLICT_RETRIES):
            try:
                return await method(*args, **kwargs)
            except LedgerConflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)
        raise AssertionError("unreachable")

    return uncancellable(retried)


def _plain(cls: type[D], row: Base) -> D:
    values = {f.name: getattr(row, f.name) for f in fields(cls)}  # type: ignore[arg-type]
    if cls is Resource:
        values["kind"] = Kind(values["kind"])
        values["desired"] = Desired(values["desired"])
    return cls(**values)


class Ledger:
    """One ledger; every method is one short transaction (BEGIN IMMEDIATE on SQLite, a plain BEGIN when opened
    read-only) that runs to its end even when the calling task is cancelled."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = sessionmaker(engine)
        self._place = Place.of(engine.url)

    @property
    def readonly(self) -> bool:
        """Opened read-only (see `open_engine`): reads work, every write is a LedgerReadOnly."""
        return self._place.opened_readonly

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the body ends, rolled back when it raises. Database errors leave as
        jobman's LedgerError. Every public method that uses it is `uncancellable` (see shield.py)."""
        with translated(self._place):
            async with self._sessions() as session, session.begin():
                yield session

    async def _get(self, s: AsyncSession, model: type[M], row_id: int) -> M:
        row = await s.get(model, row_id)
        if row is None:
            what = model.__tablename__.removesuffix("s")
            raise NotInLedger(f"{what} {row_id} is not in the ledger {self._place}")
        return row

    # experiments and runs

    @transaction
    async def experiment(self, name: str, *, create_at: datetime | None = None) -> Experiment | None:
        async with self._session() as s:
            if create_at is not None:
                return _plain(Experiment, await self._experiment_row(s, name, create_at))
            row = await s.scalar(select(ExperimentModel).where(ExperimentModel.name == name))
            return None if row is None else _plain(Experiment, row)

    @staticmethod
    async def _experiment_row(
        s: AsyncSession, name: str, create_at: datetime, *, lock: bool = False
    ) -> ExperimentModel:
        """The experiment's row, made if missing; with `lock`, row-locked to the end of the transaction
        (PostgreSQL; SQLite's BEGIN IMMEDIATE already orders every writer)."""
        query = select(ExperimentModel).where(ExperimentModel.name == name)
        if lock:
            query = query.with_for_update()
        row = await s.scalar(query)
        if row is not None:
            return row
        try:
            async with s.begin_nested():  # a savepoint: losing a race to make it leaves the transaction usable
                s.add(ExperimentModel(name=name, created_at=create_at))
        except IntegrityError:
            pass  # another process made it meanwhile
        row = await s.scalar(query)
        assert row is not None
        return row

    @transaction
    async def experiments(self) -> list[Experiment]:
        async with self._session() as s:
            rows = await s.scalars(select(ExperimentModel).order_by(ExperimentModel.name))
            return [_plain(Experiment, r) for r in rows]

    @transaction
    async def runs_with_ids(self, run_ids: Iterable[int]) -> list[Run]:
        async with self._session() as s:
            rows = await s.scalars(select(RunModel).where(RunModel.id.in_(sorted(set(run_ids)))))
            return [_plain(Run, r) for r in rows]

    @transaction
    async def all_runs(self) -> list[Run]:
        """Every run of every experiment, in one query."""
        async with self._session() as s:
            rows = await s.scalars(select(RunModel).order_by(RunModel.experiment_id, RunModel.number))
            return [_plain(Run, r) for r in rows]

    @transaction
    async def open_run(
        self, name: str, *, digest: str, backend: str, region: str, config_path: str, at: datetime,
        holder: str, lease_s: float, user: str, host: str, local_site: str | None = None,
        waited_on: int | None = None, replacing: str | None = None, lease_at: datetime | None = None,
    ) -> RunClaim:
        """`jobman run`'s one decision, in one transaction with the experiment's row locked, so that two
        processes on any machines starting the same experiment at once make one run: resume the latest run if it is
        unfinished, made from this file in this place, and nobody else holds it; otherwise start the next one
        (an unfinished latest run that nobody holds is then superseded). The caller holds the run it gets
        until `release_run`, renewing the hold (`renew_run`) before `lease_s` runs out.

        `waited_on`: the run a busy answer named, which this caller then waited for. If that run is still the
        latest and has finished meanwhile, it is the answer (busy, finished): its holder ran this very file.
        `replacing`: a holder known to have stopped (a dead process on this machine), whose hold need not run out.
        `at` is what the run records (the caller's clock); holds are timed from `lease_at` (the wall clock every
        machine shares; `at` when not given)."""
        lease_at = lease_at or at
        until = lease_at + timedelta(seconds=lease_s)
        async with self._session() as s:
            exp = await self._experiment_row(s, name, at, lock=True)
            latest = await s.scalar(
                select(RunModel).where(RunModel.experiment_id == exp.id).order_by(RunModel.number.desc()).limit(1)
            )
            superseded = None
            same = latest is not None and (latest.digest, latest.backend, latest.region, latest.local_site) == (
                digest, backend, region, local_site
            )
            if latest is not None and latest.id == waited_on and latest.status != RunStatus.RUNNING and same:
                return RunClaim(_plain(Run, latest), busy=True)
            if latest is not None and latest.status == RunStatus.RUNNING:
                current = _plain(Run, latest)
                if current.held_at(lease_at) and current.held_by not in (holder, replacing):
                    return RunClaim(current, busy=True)
                if same:
                    latest.held_by, latest.held_until = holder, until
                    return RunClaim(_plain(Run, latest), resumed=True)
                latest.status, latest.finished_at = RunStatus.SUPERSEDED, at
                latest.held_by = latest.held_until = None
                superseded = current
            row = RunModel(
                experiment_id=exp.id, number=(latest.number if latest else 0) + 1, digest=digest, backend=backend,
                region=region, config_path=config_path, status=RunStatus.RUNNING, started_at=at,
                started_by_user=user, started_by_host=host, held_by=holder, held_until=until, local_site=local_site,
            )
            s.add(row)
            await s.flush()
            return RunClaim(_plain(Run, row), superseded=superseded)

    @transaction
    async def renew_run(self, run_id: int, *, holder: str, until: datetime) -> bool:
        """Extend this process's hold on a run; False when it no longer holds it (its hold ran out and another
        process took the run over)."""
        async with self._session() as s:
            done = await s.execute(
                update(RunModel).where(RunModel.id == run_id, RunModel.held_by == holder).values(held_until=until)
            )
            return _count(done) == 1

    @transaction
    async def release_run(self, run_id: int, *, holder: str) -> None:
        async with self._session() as s:
            await s.execute(update(RunModel).where(RunModel.id == run_id, RunModel.held_by == holder)
                            .values(held_by=None, held_until=None))

    @transaction
    async def latest_run(self, experiment_id: int) -> Run | None:
        async with self._session() as s:
            row = await s.scalar(
                select(RunModel).where(RunModel.experiment_id == experiment_id).order_by(RunModel.number.desc())
            )
            return None if row is None else _plain(Run, row)

    @transaction
    async def runs(self, experiment_id: int) -> list[Run]:
        async with self._session() as s:
            rows = await s.scalars(
                select(RunModel).where(RunModel.experiment_id == experiment_id).order_by(RunModel.number)
            )
            return [_plain(Run, r) for r in rows]

    @transaction
    async def run(self, run_id: int) -> Run:
        async with self._session() as s:
            row = await self._get(s, RunModel, run_id)
            return _plain(Run, row)

    @transaction
    async def start_run(
        self, experiment_id: int, *, digest: str, backend: str, region: str, config_path: str, at: datetime,
        user: str | None = None, host: str | None = None, local_site: str | None = None,
    ) -> Run:
        """A new run, not held by anyone (gc's record of adopted orphans); `jobman run` uses `open_run`."""
        async with self._session() as s:
            await s.scalar(select(ExperimentModel.id).where(ExperimentModel.id == experiment_id).with_for_update())
            last = await s.scalar(select(func.max(RunModel.number)).where(RunModel.experiment_id == experiment_id))
            row = RunModel(
                experiment_id=experiment_id, number=(last or 0) + 1, digest=digest, backend=backend,
                region=region, config_path=config_path, status=RunStatus.RUNNING, started_at=at,
                started_by_user=user, started_by_host=host, local_site=local_site,
            )
            s.add(row)
            await s.flush()
            return _plain(Run, row)

    @transaction
    async def update_run(self, run_id: int, **values: Any) -> Run:
        async with self._session() as s:
            row = await self._get(s, RunModel, run_id)
            for key, value in values.items():
                setattr(row, key, value)
            return _plain(Run, row)

    # resources

    @transaction
    async def add_resource(
        self, run_id: int, kind: Kind, name: str, spec: dict[str, Any], *, at: datetime,
        instance_type: str | None = None, instance_count: int | None = None,
        expires_at: datetime | None = None, deadline_at: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> Resource:
        """Record the intent to create (desired=present, status Pending); idempotent on (kind, name)."""
        query = select(ResourceModel).where(ResourceModel.kind == kind, ResourceModel.name == name)
        async with self._session() as s:
            row = await s.scalar(query)
            if row is not None:
                return _plain(Resource, row)
            try:
                async with s.begin_nested():  # a savepoint: another process may record the same intent at once
                    row = ResourceModel(
                        run_id=run_id, kind=kind.value, name=name, desired=Desired.PRESENT.value,
                        status=Status.PENDING, spec=spec, instance_type=instance_type, instance_count=instance_count,
                        stop_requested=False, expires_at=expires_at, deadline_at=deadline_at,
                        created_at=at, updated_at=at, details=details,
                    )
                    s.add(row)
                    await s.flush()
                    s.add(EventModel(resource_id=row.id, at=at, from_status=None, to_status=Status.PENDING,
                                     message="intent"))
            except IntegrityError:
                row = await s.scalar(query)
                assert row is not None
            return _plain(Resource, row)

    @transaction
    async def resource(self, resource_id: int) -> Resource:
        async with self._session() as s:
            return _plain(Resource, await self._get(s, ResourceModel, resource_id))

    @transaction
    async def resource_by_name(self, kind: Kind, name: str) -> Resource | None:
        async with self._session() as s:
            row = await s.scalar(select(ResourceModel).where(ResourceModel.kind == kind, ResourceModel.name == name))
            return None if row is None else _plain(Resource, row)

    @transaction
    async def resources(
        self, *, run_ids: Iterable[int] | None = None, kinds: Iterable[Kind] | None = None
    ) -> list[Resource]:
        query = select(ResourceModel).order_by(ResourceModel.id)
        if run_ids is not None:
            query = query.where(ResourceModel.run_id.in_(list(run_ids)))
        if kinds is not None:
            query = query.where(ResourceModel.kind.in_([k.value for k in kinds]))
        async with self._session() as s:
            return [_plain(Resource, r) for r in await s.scalars(query)]

    @transaction
    async def resources_to_observe(self) -> list[Resource]:
        """What a reconcile pass looks at, chosen in the database so that history costs nothing: not what is both
        unwanted and gone, nor a finished job already described (it never changes again)."""
        finished_job = and_(
            ResourceModel.kind.in_(sorted(k.value for k in JOB_KINDS)),
            ResourceModel.status.in_(sorted(JOB_FINISHED)),
            ResourceModel.details["described"].as_boolean().is_(True),
        )
        query = select(ResourceModel).where(
            or_(ResourceModel.desired != Desired.ABSENT.value, ResourceModel.status != Status.ABSENT),
            ~finished_job,
        ).order_by(ResourceModel.id)
        async with self._session() as s:
            return [_plain(Resource, r) for r in await s.scalars(query)]

    @staticmethod
    def _expired(kinds: Iterable[Kind], now: datetime) -> tuple[ColumnElement[bool], ...]:
        """Resources of `kinds` past their expiry and not seen gone (ix_resources_expires_at serves it)."""
        return (ResourceModel.expires_at <= now, ResourceModel.status != Status.ABSENT,
                ResourceModel.kind.in_([k.value for k in kinds]))

    @transaction
    async def any_expired(self, kinds: Iterable[Kind], now: datetime) -> bool:
        """Whether any resource of `kinds` is past its expiry and not seen gone: one indexed query."""
        async with self._session() as s:
            return await s.scalar(select(ResourceModel.id).where(*self._expired(kinds, now)).limit(1)) is not None

    @transaction
    async def expired_resources(self, kinds: Iterable[Kind], now: datetime) -> list[Resource]:
        query = select(ResourceModel).where(*self._expired(kinds, now)).order_by(ResourceModel.id)
        async with self._session() as s:
            return [_plain(Resource, r) for r in await s.scalars(query)]

    @transaction
    async def update_resource(self, resource_id: int, *, at: datetime, **values: Any) -> Resource:
        async with self._session() as s:
            row = await self._get(s, ResourceModel, resource_id)
            for key, value in values.items():
                setattr(row, key, value.value if isinstance(value, Desired | Kind) else value)
            row.updated_at = at
            return _plain(Resource, row)

    @transaction
    async def set_desired(self, resource_ids: Iterable[int], desired: Desired, *, at: datetime) -> None:
        async with self._session() as s:
            for resource_id in sorted(set(resource_ids)):  # one order for every process: no deadlock
                row = await self._get(s, ResourceModel, resource_id)
                row.desired = desired.value
                row.updated_at = at

    @transaction
    async def record(self, resource_id: int, observation: Observation, *, at: datetime, **values: Any) -> Resource:
        """Store what was observed, and `values` that follow from it (billing, deadline), in one transaction;
        a change of status appends an event."""
        async with self._session() as s:
            row = await self._get(s, ResourceModel, resource_id)
            for key, value in values.items():
                setattr(row, key, value)
            if observation.status != row.status:
                s.add(EventModel(
                    resource_id=row.id, at=at, from_status=row.status, to_status=observation.status,
                    message=observation.message or observation.failure_reason,
                ))
                row.status = observation.status
                row.updated_at = at
            if observation.arn:
                row.arn = observation.arn
            if observation.failure_reason is not None:
                row.failure_reason = observation.failure_reason
            if observation.details:
                row.details = {**(row.details or {}), **observation.details}
            row.observed_at = at
            return _plain(Resource, row)

    @transaction
    async def touch(self, resource_ids: list[int], *, at: datetime) -> None:
        """Observed, unchanged: only the observation time moves."""
        if not resource_ids:
            return
        async with self._session() as s:
            await s.execute(update(ResourceModel).where(ResourceModel.id.in_(sorted(resource_ids)))
                            .values(observed_at=at))

    @transaction
    async def claim_deletion(self, resource_id: int, *, at: datetime) -> bool:
        """Mark a resource Deleting unless another process already did: one writer wins, on any machine. A
        conditional UPDATE checked by its row count: PostgreSQL makes a second writer wait for the first to commit,
        then finds the condition false; SQLite orders the writers with BEGIN IMMEDIATE."""
        async with self._session() as s:
            before = await self._get(s, ResourceModel, resource_id)
            claimed = await s.execute(
                update(ResourceModel)
                .where(ResourceModel.id == resource_id, ResourceModel.status.not_in([Status.DELETING, Status.ABSENT]))
                .values(status=Status.DELETING, updated_at=at)
                .execution_options(synchronize_session=False)
            )
            if _count(claimed) == 0:
                return False
            s.add(EventModel(resource_id=resource_id, at=at, from_status=before.status, to_status=Status.DELETING,
                             message="delete requested"))
            return True

    @transaction
    async def note(self, resource_id: int, message: str, *, at: datetime) -> None:
        """An event that is not a status change: a deadline action, a drift, a stop request."""
        async with self._session() as s:
            row = await self._get(s, ResourceModel, resource_id)
            s.add(EventModel(resource_id=row.id, at=at, from_status=row.status, to_status=row.status, message=message))

    @transaction
    async def events(self, resource_id: int) -> list[Event]:
        async with self._session() as s:
            query = select(EventModel).where(EventModel.resource_id == resource_id).order_by(EventModel.id)
            rows = await s.scalars(query)
            return [_plain(Event, r) for r in rows]

    # leases: a lock held longer than a transaction, in the database, for every machine that shares the ledger

    @transaction
    async def acquire_lease(
        self, name: str, *, holder: str, at: datetime, lease_s: float, replacing: str | None = None
    ) -> Lease:
        """Take the lease if it is free, expired, already this holder's, or `replacing`'s (a holder known to have
        stopped); returns the lease as it now stands (held by someone else when it was not free)."""
        until = at + timedelta(seconds=lease_s)
        takeable = [holder] if replacing is None else [holder, replacing]
        async with self._session() as s:
            taken = await s.execute(
                update(LeaseModel)
                .where(LeaseModel.name == name, or_(LeaseModel.expires_at <= at, LeaseModel.holder.in_(takeable)))
                .values(holder=holder, acquired_at=at, expires_at=until)
            )
            if _count(taken) == 0 and await s.get(LeaseModel, name) is None:
                try:
                    async with s.begin_nested():
                        s.add(LeaseModel(name=name, holder=holder, acquired_at=at, expires_at=until))
                except IntegrityError:
                    pass  # another process took it first
            row = await s.scalar(select(LeaseModel).where(LeaseModel.name == name).execution_options(
                populate_existing=True))
            assert row is not None
            return _plain(Lease, row)

    @transaction
    async def renew_lease(self, name: str, *, holder: str, until: datetime) -> bool:
        """False when the holder lost the lease (it ran out and another process took it)."""
        async with self._session() as s:
            done = await s.execute(
                update(LeaseModel).where(LeaseModel.name == name, LeaseModel.holder == holder)
                .values(expires_at=until)
            )
            return _count(done) == 1

    @transaction
    async def release_lease(self, name: str, *, holder: str) -> None:
        async with self._session() as s:
            await s.execute(delete(LeaseModel).where(LeaseModel.name == name, LeaseModel.holder == holder))


def _count(result: Any) -> int:
    """Rows an UPDATE or DELETE matched."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
