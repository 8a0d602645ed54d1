"""What the ledger hands out: plain frozen dataclasses, one per kind of row (rows never leave the ledger)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobman.kinds import Kind
from jobman.states import Desired, RunStatus


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
    started_by_user: str | None
    started_by_host: str | None
    held_by: str | None  # the process working on it now, while `held_until` is ahead
    held_until: datetime | None
    local_site: str | None  # a local-backend run: the machine and JOBMAN_HOME its resources live in

    @property
    def finished(self) -> bool:
        return self.status != RunStatus.RUNNING

    @property
    def started_by(self) -> str | None:
        """"alice@build-3"; None for a run recorded before jobman kept who started it."""
        if self.started_by_user is None:
            return None
        return f"{self.started_by_user}@{self.started_by_host}" if self.started_by_host else self.started_by_user

    def held_at(self, now: datetime) -> bool:
        return self.held_by is not None and self.held_until is not None and self.held_until > now


@dataclass(frozen=True)
class RunClaim:
    """What `open_run` decided. `busy`: another process holds `run` (or, when `run` has finished, held it while
    this caller waited) and nothing changed; otherwise this process now holds `run`, `resumed` or new, and
    `superseded` is the unfinished run (made from another file or in another place) that the new one replaces."""

    run: Run
    resumed: bool = False
    superseded: Run | None = None
    busy: bool = False


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


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
