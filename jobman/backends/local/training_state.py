"""A training job's process state, in files of its folder (see `store.Layout.training_dir`).

`status.json` belongs to the worker while it runs: the server writes it only before the worker starts
or after it is gone. `worker.json` (pid) and `stop.json` (a stop request) are the server's. Status
dicts use DescribeTrainingJob's own field names, so describing a job is a merge. `metrics.jsonl` holds
the worker's per-round metric values (what SageMaker scrapes from the log into CloudWatch metrics),
one round a line, appended with one write so a reader only skips an unfinished last line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobman.backends.local.store import atomic_write_json, read_json

TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Stopping": "Stopping the training job",
    "Stopped": "The training job was stopped",
    "MaxRuntimeExceeded": "Training job stopped because it exceeded MaxRuntimeInSeconds",
}


@dataclass(frozen=True)
class JobFiles:
    folder: Path

    @property
    def status(self) -> Path:
        return self.folder / "status.json"

    @property
    def worker(self) -> Path:
        return self.folder / "worker.json"

    @property
    def stop(self) -> Path:
        return self.folder / "stop.json"

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.jsonl"

    def append_round(self, at: float, values: dict[str, float]) -> None:
        line = json.dumps({"t": at, "values": values}) + "\n"
        fd = os.open(self.metrics, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read_rounds(self) -> list[tuple[float, dict[str, float]]]:
        """(epoch seconds, {metric name: value}) per finished round, oldest first."""
        try:
            raw = self.metrics.read_bytes()
        except FileNotFoundError:
            return []
        rounds = []
        for line in raw.split(b"\n"):
            try:
                entry = json.loads(line)
                rounds.append((float(entry["t"]), {str(k): float(v) for k, v in entry["values"].items()}))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # the unfinished last line, or an empty one
        return rounds

    def read_status(self) -> dict[str, Any] | None:
        value = read_json(self.status)
        return value if isinstance(value, dict) else None

    def write_status(self, status: dict[str, Any]) -> None:
        atomic_write_json(self.status, status)

    def stop_request(self) -> dict[str, Any] | None:
        value = read_json(self.stop)
        return value if isinstance(value, dict) else None


def initial_status(at: float) -> dict[str, Any]:
    return {
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Starting",
        "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": at, "StatusMessage": _MESSAGES["Starting"]}],
        "LastModifiedTime": at,
    }


def advance(status: dict[str, Any], primary: str, secondary: str, at: float, message: str | None = None) -> None:
    """Record a (TrainingJobStatus, SecondaryStatus) step in place: close the open transition, open a new one."""
    transitions = status.setdefault("SecondaryStatusTransitions", [])
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = at
    step: dict[str, Any] = {
        "Status": secondary, "StartTime": at, "StatusMessage": message or _MESSAGES.get(secondary, ""),
    }
    if primary in TERMINAL:
        step["EndTime"] = at
    transitions.append(step)
    status.update(TrainingJobStatus=primary, SecondaryStatus=secondary, LastModifiedTime=at)


def finish(status: dict[str, Any], primary: str, secondary: str, at: float, reason: str | None = None) -> None:
    """Move to a terminal state: end times and the billable time SageMaker reports."""
    if primary == "Stopped" and status.get("SecondaryStatus") != "Stopping":
        advance(status, "Stopping", "Stopping", at)
    advance(status, primary, secondary, at, reason)
    if reason:
        status["FailureReason"] = reason
    started = status.get("TrainingStartTime")
    if started is not None:
        status["TrainingEndTime"] = at
        seconds = max(1, math.ceil(at - started))
        status["TrainingTimeInSeconds"] = seconds
        status["BillableTimeInSeconds"] = seconds


def set_starting_message(status: dict[str, Any], message: str | None) -> bool:
    """Set the open Starting transition's StatusMessage (None: the plain one), as SageMaker updates it in
    place while it provisions; True if that changed anything (so the caller knows to write the file)."""
    transitions = status.get("SecondaryStatusTransitions") or []
    if status.get("SecondaryStatus") != "Starting" or not transitions or transitions[-1].get("Status") != "Starting":
        return False
    wanted = message or _MESSAGES["Starting"]
    if transitions[-1].get("StatusMessage") == wanted:
        return False
    transitions[-1]["StatusMessage"] = wanted
    return True
