"""What `jobman status` shows, as plain data: experiments, their latest run, resources, ages and TTLs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobman.ledger.store import Ledger, Resource, Run
from jobman.states import ABSENT, meaning


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def resource_view(r: Resource, run: Run, now: datetime) -> dict[str, Any]:
    return {
        "kind": r.kind.value,
        "name": r.name,
        "arn": r.arn,
        "run": run.number,
        "desired": r.desired.value,
        "status": r.status,
        "meaning": meaning(r.kind, r.status, stop_requested=r.stop_requested).value,
        "failure_reason": r.failure_reason,
        "created_at": _iso(r.created_at),
        "age_s": round((now - r.created_at).total_seconds(), 1),
        "expires_at": _iso(r.expires_at),
        "ttl_left_s": round((r.expires_at - now).total_seconds(), 1) if r.expires_at and r.status != ABSENT else None,
        "instance_type": r.instance_type,
        "instance_count": r.instance_count,
    }


async def status_view(ledger: Ledger, now: datetime, *, experiment: str | None = None) -> dict[str, Any]:
    experiments = []
    for exp in await ledger.experiments():
        if experiment is not None and exp.name != experiment:
            continue
        runs = await ledger.runs(exp.id)
        if not runs:
            continue
        by_id = {run.id: run for run in runs}
        latest = runs[-1]
        resources = await ledger.resources(run_ids=list(by_id))
        experiments.append({
            "name": exp.name,
            "backend": latest.backend,
            "region": latest.region,
            "run": latest.number,
            "status": latest.status,
            "message": latest.message,
            "metrics": latest.metrics,
            "output_dir": latest.output_dir,
            "started_at": _iso(latest.started_at),
            "finished_at": _iso(latest.finished_at),
            "runs": [{"number": r.number, "status": r.status, "started_at": _iso(r.started_at)} for r in runs],
            "resources": [resource_view(r, by_id[r.run_id], now) for r in resources],
        })
    return {"generated_at": now.isoformat(), "experiments": experiments}
