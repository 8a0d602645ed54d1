"""A sweep's trials as the ledger holds them: training jobs whose details carry their number, parameters and
objective. Read by the sweep itself (to resume), by `jobman status` and by the run's outputs; no Optuna here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobman.cost import billed_seconds, resource_cost
from jobman.kinds import Kind
from jobman.ledger.store import Resource
from jobman.states import Status, meaning

TAG_TRIAL = "jobman:trial"


@dataclass(frozen=True)
class Trial:
    number: int  # 1-based; Optuna's trial number is one less
    resource: Resource
    params: dict[str, Any]
    objective: str  # e.g. "validation:rmse"
    direction: str  # "minimize" or "maximize"

    @property
    def value(self) -> float | None:
        """The objective as the finished job reported it (FinalMetricDataList), once it has."""
        if self.resource.status != Status.COMPLETED:
            return None
        found = ((self.resource.details or {}).get("final_metrics") or {}).get(self.objective)
        return None if found is None else float(found)

    @property
    def finished(self) -> bool:
        r = self.resource
        return r.status in (Status.COMPLETED, Status.FAILED, Status.STOPPED, Status.ABSENT)

    def view(self, backend: str, now: datetime, best: bool) -> dict[str, Any]:
        r = self.resource
        cost = resource_cost(r, backend, now)
        return {
            "number": self.number,
            "name": r.name,
            "params": self.params,
            "objective": self.value,
            "status": r.status,
            "meaning": meaning(r.kind, r.status, stop_requested=r.stop_requested).value,
            "failure_reason": r.failure_reason,
            "billed_s": None if cost is None else round(cost.billed_s, 1),
            "cost_usd": None if cost is None else cost.usd,
            "best": best,
        }


def params_text(params: dict[str, Any]) -> str:
    """`eta=0.1437 max_depth=3 subsample=0.8`: parameters as the console and the status screen show them."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def trials_of(resources: list[Resource]) -> list[Trial]:
    """The trials among `resources`, by number."""
    found = []
    for r in resources:
        details = r.details or {}
        if r.kind is Kind.TRAINING_JOB and "trial" in details:
            found.append(Trial(int(details["trial"]), r, dict(details.get("params") or {}),
                               str(details.get("objective")), str(details.get("direction"))))
    return sorted(found, key=lambda t: t.number)


def best_of(trials: list[Trial]) -> Trial | None:
    """The completed trial with the best objective (the lowest number among equals)."""
    scored = [t for t in trials if t.value is not None]
    if not scored:
        return None
    sign = 1.0 if scored[0].direction == "minimize" else -1.0
    return min(scored, key=lambda t: (sign * (t.value or 0.0), t.number))


def write_trial_outputs(out_dir: Path, trials: list[Trial], objective: str) -> None:
    """`trials.csv` (one row a trial: parameters, objective, status, billed time) and `trials.png`, the
    objective against the trial number with the best one marked."""
    from jobman.errors import ConfigError
    from jobman.report import objective_plot

    best = best_of(trials)
    names = sorted({k for t in trials for k in t.params})
    now = datetime.now(UTC)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "trials.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["trial", "name", *names, objective, "status", "billed_s", "best"])
            for t in trials:
                writer.writerow([t.number, t.resource.name, *(t.params.get(n, "") for n in names),
                                 "" if t.value is None else t.value, t.resource.status,
                                 round(billed_seconds(t.resource, now), 1),
                                 "yes" if best is t else ""])
        scored = [(t.number, t.value) for t in trials if t.value is not None]
        minimize = not trials or trials[0].direction == "minimize"
        objective_plot(out_dir / "trials.png", scored, None if best is None else best.number, objective,
                       minimize=minimize)
    except OSError as exc:  # a full disk, a folder where the file should go: the user's to fix
        raise ConfigError(f"cannot write the sweep's outputs in {out_dir}: {exc}") from exc
