"""What `jobman status` shows, as plain data: experiments, their latest run, resources, ages and TTLs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobman.cost import Cost, price_table, resource_cost, total
from jobman.kinds import TEARDOWN_ORDER
from jobman.ledger.store import Experiment, Ledger, Resource, Run
from jobman.states import Status, meaning
from jobman.trials import best_of, trials_of


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def resource_view(r: Resource, run: Run, now: datetime) -> dict[str, Any]:
    cost = resource_cost(r, run.backend, now)
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
        "ttl_left_s": None if r.expires_at is None or r.status == Status.ABSENT
        else round((r.expires_at - now).total_seconds(), 1),
        "ttl_expired": r.expires_at is not None and r.expires_at <= now,
        "instance_type": r.instance_type,
        "instance_count": r.instance_count,
        "billed_s": None if cost is None else round(cost.billed_s, 1),
        "cost_usd": None if cost is None else cost.usd,
    }


def sweep_view(resources: list[Resource], run: Run, now: datetime) -> dict[str, Any] | None:
    """The run's trials (number, parameters, objective, status, billed time, cost), the best marked, and the
    sweep's total cost; None for a run without a sweep."""
    trials = trials_of(resources)
    if not trials:
        return None
    best = best_of(trials)
    costs = [c for c in (resource_cost(t.resource, run.backend, now) for t in trials) if c is not None]
    return {
        "objective": trials[0].objective,
        "direction": trials[0].direction,
        "best_trial": None if best is None else best.number,
        "cost_usd": total(costs),
        "trials": [t.view(run.backend, now, t is best) for t in trials],
    }


async def has_expired(ledger: Ledger, now: datetime) -> bool:
    """One indexed query, not a read of every resource: `jobman status` on a large shared ledger stays fast."""
    return await ledger.any_expired(TEARDOWN_ORDER, now)


def _who(run: Run) -> dict[str, str | None]:
    return {"user": run.started_by_user, "host": run.started_by_host}


async def _rows(ledger: Ledger, experiment: str | None) -> tuple[list[Experiment], list[Run], list[Resource]]:
    """The experiments, runs and resources that `status_view` shows: every one, or those of `experiment`."""
    if experiment is None:
        return await ledger.experiments(), await ledger.all_runs(), await ledger.resources()
    found = await ledger.experiment(experiment)
    if found is None:
        return [], [], []
    runs = await ledger.runs(found.id)
    return [found], runs, await ledger.resources(run_ids=[r.id for r in runs])


async def status_view(
    ledger: Ledger, now: datetime, *, experiment: str | None = None, mine: str | None = None
) -> dict[str, Any]:
    """Every experiment with a run (or only `experiment`), or with `mine` (a user name) only those whose latest
    run that user started. Three queries, whatever the size of the ledger; for one experiment, only its rows."""
    experiments = []
    all_costs: list[Cost] = []
    exps, all_runs, all_resources = await _rows(ledger, experiment)
    runs_of: dict[int, list[Run]] = {}
    for run in all_runs:
        runs_of.setdefault(run.experiment_id, []).append(run)
    resources_of: dict[int, list[Resource]] = {}
    for resource in all_resources:
        resources_of.setdefault(resource.run_id, []).append(resource)
    for exp in exps:
        runs = runs_of.get(exp.id, [])
        if not runs or (mine is not None and runs[-1].started_by_user != mine):
            continue
        by_id = {run.id: run for run in runs}
        latest = runs[-1]
        resources = [r for run in runs for r in resources_of.get(run.id, [])]
        resources.sort(key=lambda r: r.id)
        costs = [c for c in (resource_cost(r, by_id[r.run_id].backend, now) for r in resources) if c is not None]
        all_costs.extend(costs)
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
            "started_by": _who(latest),
            "local_site": latest.local_site,
            "runs": [{"number": r.number, "status": r.status, "started_at": _iso(r.started_at),
                      "started_by": _who(r)} for r in runs],
            "resources": [resource_view(r, by_id[r.run_id], now) for r in resources],
            "cost_usd": total(costs),
            "sweep": sweep_view([r for r in resources if r.run_id == latest.id], latest, now),
        })
    prices = price_table()
    return {
        "generated_at": now.isoformat(),
        "experiments": experiments,
        "total_cost_usd": total(all_costs),
        "prices": {"source": prices["source"], "as_of": prices["as_of"], "note": prices["note"]},
    }
