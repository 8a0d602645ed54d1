"""Time billed and estimated cost per job (training, transform) and endpoint, from a price table shipped with jobman.

The local backend costs nothing. An instance type missing from the table has an unknown cost (None),
never zero, and makes any total that includes it unknown too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from jobman.clock import parse_utc_iso
from jobman.kinds import Kind
from jobman.ledger.store import Resource

FREE_BACKENDS = frozenset({"local"})
BILLED_KINDS = frozenset({Kind.TRAINING_JOB, Kind.TRANSFORM_JOB, Kind.ENDPOINT})
# Where a job's own start and end times are recorded (from its Describe): they bound what it bills.
JOB_TIMES = {Kind.TRAINING_JOB: ("training_start", "training_end"),
             Kind.TRANSFORM_JOB: ("transform_start", "transform_end")}


@dataclass(frozen=True)
class Cost:
    billed_s: float
    usd: float | None  # None: unknown instance type


@cache
def price_table() -> dict[str, Any]:
    return json.loads(resources.files("jobman.data").joinpath("prices.json").read_text())  # type: ignore[no-any-return]


def hourly_usd(kind: Kind, instance_type: str | None) -> float | None:
    family = "training" if kind is Kind.TRAINING_JOB else "inference"  # Batch Transform is priced as inference
    if instance_type is None:
        return None
    price = price_table()["usd_per_hour"][family].get(instance_type)
    return None if price is None else float(price)


def billed_seconds(r: Resource, now: datetime) -> float:
    details = r.details or {}
    if r.kind is Kind.TRAINING_JOB and details.get("billable_s") is not None:
        return float(details["billable_s"])  # SageMaker's own figure, once the job has ended
    start, end = r.billed_from, r.billed_until or now
    if r.kind in JOB_TIMES:
        start_key, end_key = JOB_TIMES[r.kind]
        start = parse_utc_iso(details.get(start_key)) or start
        end = parse_utc_iso(details.get(end_key)) or end
    if start is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def resource_cost(r: Resource, backend: str, now: datetime) -> Cost | None:
    """None for kinds that are not billed by the hour (models, endpoint configs, schedules)."""
    if r.kind not in BILLED_KINDS:
        return None
    seconds = billed_seconds(r, now)
    if backend in FREE_BACKENDS:
        return Cost(seconds, 0.0)
    price = hourly_usd(r.kind, r.instance_type)
    usd = None if price is None else round(seconds / 3600 * price * (r.instance_count or 1), 6)
    return Cost(seconds, usd)


def total(costs: list[Cost]) -> float | None:
    if any(c.usd is None for c in costs):
        return None
    return round(sum(c.usd or 0.0 for c in costs), 6)


def worst_case_usd(backend: str, instance_type: str, instance_count: int, ttl_s: float) -> float | None:
    """The most an endpoint can cost before its TTL deletes it; None when the price is unknown."""
    if backend in FREE_BACKENDS:
        return 0.0
    price = hourly_usd(Kind.ENDPOINT, instance_type)
    return None if price is None else price * instance_count * ttl_s / 3600
