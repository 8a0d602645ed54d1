"""Deterministic resource names: the same experiment, run and kind always give the same name."""

from __future__ import annotations

import hashlib
import re

from jobman.kinds import KIND_API, Kind

SCHEDULE_NAME_MAX = 64  # EventBridge Scheduler's limit, `[0-9a-zA-Z-_.]+`


def resource_name(experiment: str, run_number: int, kind: Kind) -> str:
    return f"{experiment}-r{run_number}-{KIND_API[kind].suffix}"


def trial_name(experiment: str, run_number: int, number: int) -> str:
    """A sweep's `number`th trial: `boston-r3-t7`. One List call with the prefix `boston-r3-t` sees them all."""
    return f"{experiment}-r{run_number}-t{number}"


def batch_name(experiment: str, run_number: int, number: int, kind: Kind) -> str:
    """The `number`th `jobman transform` of a run: `boston-r3-b2-transform`, `boston-r3-b2-model`."""
    return f"{experiment}-r{run_number}-b{number}-{KIND_API[kind].suffix}"


_BATCH = re.compile(rf"-b(\d+)-(?:{KIND_API[Kind.MODEL].suffix}|{KIND_API[Kind.TRANSFORM_JOB].suffix})$")


def batch_of(name: str) -> int | None:
    """The number of the `jobman transform` that made `name` (`boston-r3-b2-model` -> 2); None for a name of the
    run's own (`boston-r3-model` ends in its run number, never in `-b<k>-model`)."""
    found = _BATCH.search(name)
    return int(found[1]) if found else None


def schedule_name(target_name: str) -> str:
    """The schedule that deletes `target_name`: `boston-r3-endpoint` -> `boston-r3-ttl-endpoint`.

    It keeps the run's prefix, so one ListSchedules(NamePrefix) observes a run's schedules. A name that
    would pass the limit keeps its head and ends in a digest of the whole, so it stays unique.
    """
    head, _, suffix = target_name.rpartition("-")
    name = f"{head}-{KIND_API[Kind.SCHEDULE].suffix}-{suffix}" if head else f"ttl-{target_name}"
    if len(name) <= SCHEDULE_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:SCHEDULE_NAME_MAX - 11]}-{digest}"
