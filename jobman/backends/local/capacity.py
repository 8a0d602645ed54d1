"""How many training workers may run at once, and the lock under which waiting jobs are started.

SageMaker accepts every CreateTrainingJob and lets a job wait (InProgress / Starting) while instances
are provisioned; the local server does the same when `JOBMAN_LOCAL_MAX_TRAINING` workers (default: one
per core) are already alive. A waiting job is a job with no `worker.json` whose status is not terminal,
so the queue lives in files and survives a server restart. Whoever starts waiting jobs (or stops one)
holds `training/.start.lock`, so two server processes never both start the same job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from jobman.backends.local.store import Layout
from jobman.errors import ConfigError

ENV = "JOBMAN_LOCAL_MAX_TRAINING"


def max_training(environ: Mapping[str, str] | None = None) -> int:
    """The limit from `JOBMAN_LOCAL_MAX_TRAINING`, or the number of cores; ConfigError (one line) if invalid."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV)
    if raw is None or raw.strip() == "":
        return os.cpu_count() or 1
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{ENV} must be a positive integer (the most training jobs run at once); got {raw!r}")
    return value


@dataclass(frozen=True, order=True)
class Waiting:
    """A job waiting for a slot; ordered by when it was created (FIFO), then by name for equal stamps."""

    created_ns: int
    region: str
    name: str


def to_start(waiting: list[Waiting], busy: int, limit: int) -> list[Waiting]:
    """The waiting jobs to start now: the oldest ones, as many as there are free slots."""
    free = max(0, limit - busy)
    return sorted(waiting)[:free]


@contextlib.contextmanager
def start_lock(where: Layout) -> Iterator[None]:
    """Exclusive across processes while deciding which waiting jobs start; held for milliseconds.

    Not reentrant: flock locks belong to an open file, so a nested call in one process would deadlock."""
    path = where.root / "training" / ".start.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
