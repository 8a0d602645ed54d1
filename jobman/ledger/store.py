"""All ledger reads and writes. Rows never leave this module: callers get plain frozen dataclasses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from jobman.errors import NotInLedger
from jobman.kinds import Kind
from jobman.ledger.boundary import translated
from jobman.ledger.db import sessionmaker
from jobman.ledger.location import Place
from jobman.ledger.models import Base, EventModel, ExperimentModel, ResourceModel, RunModel
from jobman.ledger.shield import uncancellable
from jobman.states import Desired, RunStatus, Status

D = TypeVar("D")
M = TypeVar("M", bound=Base)


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Run:
    id: int
    experiment_id: int
    number: int
    digest: str
    backend: str
    region: str
    config_path: str
    status: str
    message: str | None
    output_dir: str | None
    metrics: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status != RunStatus.RUNNING


@dataclass(frozen=True)
class Resource:
    id: int
    run_id: int
    kind: Kind
    name: str
    arn: str | None
    desired: Desired
    status: str
    failure_reason: str | None
    spec: dict[str, Any]
    details: dict[str, Any] | None
    instance_type: str | None
    instance_count: int | None
    stop_requested: bool
    expires_at: datetime | None
    deadline_at: datetime | None
    billed_from: datetime | None
    billed_until: datetime | None
    created_at: datetime
    updated_at: datetime
    observed_at: datetime | None


@dataclass(frozen=True)
class Event:
    id: int
    resource_id: int
    at: datetime
    from_status: str | None
    to_status: str
    message: str | None


@dataclass(frozen=True)
class Observation:
    """What one look at the backend found for one resource."""

    status: str
    arn: str | None = None
    failure_reason: str | None = None
    details: dict[str, Any] | None = None
    message: str | None = None  # why, when the change needs explaining (drift, deadline, ...)


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

    @uncancellable
    async def experiment(self, name: str, *, create_at: datetime | None = None) -> Experiment | None:
        async with self._session() as s:
            row = await s.scalar(select(ExperimentModel).where(ExperimentModel.name == name))
            if row is None and create_at is not None:
                row = ExperimentModel(name=name, created_at=create_at)
                s.add(row)
                await s.flush()
            return None if row is None else _plain(Experiment, row)

    @uncancellable
    async def experiments(self) -> list[Experiment]:
        async with self._session() as s:
            rows = await s.scalars(select(ExperimentModel).order_by(ExperimentModel.name))
            return [_plain(Experiment, r) for r in rows]

    @uncancellable
    async def latest_run(self, experiment_id: int) -> Run | None:
        async with self._session() as s:
            row = await s.scalar(
                select(RunModel).where(RunModel.experiment_id == experiment_id).order_by(RunModel.number.desc())
            )
            return None if row is None else _plain(Run, row)

    @uncancellable
    async def runs(self, experiment_id: int) -> list[Run]:
        async with self._session() as s:
            rows = await s.scalars(
                select(RunModel).where(RunModel.experiment_id == experiment_id).order_by(RunModel.number)
            )
            return [_plain(Run, r) for r in rows]

    @uncancellable
    async def run(self, run_id: int) -> Run:
        async with self._session() as s:
            row = await self._get(s, RunModel, run_id)
            return _plain(Run, row)

    @uncancellable
    async def start_run(
        self, experiment_id: int, *, digest: str, backend: str, region: str, config_path: str, at: datetime
    ) -> Run:
        async with self._session() as s:
            last = await s.scalar(select(func.max(RunModel.number)).where(RunModel.experiment_id == experiment_id))
            row = RunModel(
                experiment_id=experiment_id, number=(last or 0) + 1, digest=digest, backend=backend,
                region=region, config_path=config_path, status=RunStatus.RUNNING, started_at=at,
            )
            s.add(row)
            await s.flush()
            return _plain(Run, row)

    @uncancellable
    async def update_run(self, run_id: int, **values: Any) -> Run:
        async with self._session() as s:
            row = await self._get(s, RunModel, run_id)
            for key, value in values.items():
                setattr(row, key, value)
            return _plain(Run, row)

    # resources

    @uncancellable
    async def add_resource(
        self, run_id: int, kind: Kind, name: str, spec: dict[str, Any], *, at: datetime,
        instance_type: str | None = None, instance_count: int | None = None,
        expires_at: datetime | None = None, deadline_at: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> Resource:
        """Record the intent to create (desired=present, status Pending); idempotent on (kind, name)."""
        async with self._session() as s:
            row = await s.scalar(select(ResourceModel).where(ResourceModel.kind == kind, ResourceModel.name == name))
            if row is None:
                row = ResourceModel(
                    run_id=run_id, kind=kind.value, name=name, desired=Desired.PRESENT.value, status=Status.PENDING,
                    spec=spec, instance_type=instance_type, instance_count=instance_count,
                    stop_requested=False, expires_at=expires_at, deadline_at=deadline_at,
                    created_at=at, updated_at=at, details=details,
                )
                s.add(row)
                await s.flush()
                s.add(EventModel(resource_id=row.id, at=at, from_status=None, to_status=Status.PENDING,
                                 message="intent"))
            return _plain(Resource, row)

    @uncancellable
    async def resource(self, resource_id: int) -> Resource:
        async with self._session() as s:
            return _plain(Resource, await self._get(s, ResourceModel, resource_id))

    @uncancellable
    async def resource_by_name(self, kind: Kind, name: str) -> Resource | None:
        async with self._session() as s:
            row = await s.scalar(select(ResourceModel).where(ResourceModel.kind == kind, ResourceModel.name == name))
            return None if row is None else _plain(Resource, row)

    @uncancellable
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

    @uncancellable
    async def update_resource(self, resource_id: int, *, at: datetime, **values: Any) -> Resource:
        async with self._session() as s:
            row = await self._get(s, ResourceModel, resource_id)
            for key, value in values.items():
                setattr(row, key, value.value if isinstance(value, Desired | Kind) else value)
            row.updated_at = at
            return _plain(Resource, row)

    @uncancellable
    async def set_desired(self, resource_ids: Iterable[int], desired: Desired, *, at: datetime) -> None:
        async with self._session() as s:
            for resource_id in resource_ids:
                row = await self._get(s, ResourceModel, resource_id)
                row.desired = desired.value
                row.updated_at = at

    @uncancellable
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

    @uncancellable
    async def touch(self, resource_ids: list[int], *, at: datetime) -> None:
        """Observed, unchanged: only the observation time moves."""
        if not resource_ids:
            return
        async with self._session() as s:
            await s.execute(update(ResourceModel).where(ResourceModel.id.in_(resource_ids)).values(observed_at=at))

    @uncancellable
    async def claim_deletion(self, resource_id: int, *, at: datetime) -> bool:
        """Mark a resource Deleting unless another process already did: one writer wins (BEGIN IMMEDIATE)."""
        async with self._session() as s:
            row = await self._get(s, ResourceModel, resource_id)
            if row.status in (Status.DELETING, Status.ABSENT):
                return False
            s.add(EventModel(resource_id=row.id, at=at, from_status=row.status, to_status=Status.DELETING,
                             message="delete requested"))
            row.status = Status.DELETING
            row.updated_at = at
            return True

    @uncancellable
    async def note(self, resource_id: int, message: str, *, at: datetime) -> None:
        """An event that is not a status change: a deadline action, a drift, a stop request."""
        async with self._session() as s:
            row = await self._get(s, ResourceModel, resource_id)
            s.add(EventModel(resource_id=row.id, at=at, from_status=row.status, to_status=row.status, message=message))

    @uncancellable
    async def events(self, resource_id: int) -> list[Event]:
        async with self._session() as s:
            query = select(EventModel).where(EventModel.resource_id == resource_id).order_by(EventModel.id)
            rows = await s.scalars(query)
            return [_plain(Event, r) for r in rows]
