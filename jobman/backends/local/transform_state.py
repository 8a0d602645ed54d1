"""A transform job's process state: the same files as a training job's (see `training_state.JobFiles`) in
`store.Layout.transform_dir`, with DescribeTransformJob's own field names in `status.json`.

`status.json` belongs to the worker while it runs; the server writes it only before the worker starts or
after it is gone. Imports nothing heavy: the worker uses it.
"""

from __future__ import annotations

from typing import Any

from jobman.backends.local.training_state import TERMINAL, JobFiles  # a job's terminal statuses are SageMaker's own

__all__ = ["TERMINAL", "JobFiles", "finish", "initial_status", "stopping"]


def initial_status(at: float) -> dict[str, Any]:
    return {"TransformJobStatus": "InProgress", "LastModifiedTime": at}


def stopping(status: dict[str, Any], at: float) -> None:
    status.update(TransformJobStatus="Stopping", LastModifiedTime=at)


def finish(status: dict[str, Any], primary: str, at: float, reason: str | None = None) -> None:
    """Move to a terminal state; TransformEndTime only for a job that started transforming, as SageMaker."""
    status.update(TransformJobStatus=primary, LastModifiedTime=at)
    if reason:
        status["FailureReason"] = reason[:1024]  # FailureReason's modelled maximum length
    if "TransformStartTime" in status:
        status["TransformEndTime"] = at
