"""What every SageMaker status means to the controller.

Observed statuses are SageMaker's own strings, plus three jobman ones for resources that have no
status in the API or are not there: PENDING (intent recorded, not yet seen), PRESENT (a model or
endpoint config that exists) and ABSENT (looked up and not found).
"""

from __future__ import annotations

from enum import StrEnum

from jobman.kinds import Kind

PENDING = "Pending"
PRESENT = "Present"
ABSENT = "Absent"


class Meaning(StrEnum):
    PENDING = "pending"  # on its way to being usable
    OK = "terminal-ok"  # done and usable (or, for teardown, gone)
    FAILED = "terminal-failed"
    TRANSIENT = "transient"  # usable before and likely again; wait
    GONE = "gone"  # not on the backend
    UNKNOWN = "unknown"  # a status jobman does not know: reported, never treated as done


class Desired(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


TRAINING_JOB_MEANINGS: dict[str, Meaning] = {
    "InProgress": Meaning.PENDING,
    "Stopping": Meaning.PENDING,
    "Completed": Meaning.OK,
    "Failed": Meaning.FAILED,
    "Stopped": Meaning.FAILED,  # a failure unless jobman asked for it; see training_job_meaning
    "Deleting": Meaning.TRANSIENT,
}

ENDPOINT_MEANINGS: dict[str, Meaning] = {
    "Creating": Meaning.PENDING,
    "InService": Meaning.OK,
    "Updating": Meaning.TRANSIENT,
    "SystemUpdating": Meaning.TRANSIENT,
    "RollingBack": Meaning.TRANSIENT,
    "OutOfService": Meaning.TRANSIENT,
    "Deleting": Meaning.TRANSIENT,
    "UpdateRollbackFailed": Meaning.FAILED,
    "Failed": Meaning.FAILED,  # accepts only DeleteEndpoint
}

# A schedule is ENABLED until it fires (then, with ActionAfterCompletion DELETE, it is gone); one that
# somebody disabled will not fire, so the TTL it stands for no longer holds.
SCHEDULE_MEANINGS: dict[str, Meaning] = {
    "ENABLED": Meaning.OK,
    "DISABLED": Meaning.FAILED,
}

_COMMON = {PENDING: Meaning.PENDING, ABSENT: Meaning.GONE}


def meaning(kind: Kind, status: str, *, stop_requested: bool = False) -> Meaning:
    if status in _COMMON:
        return _COMMON[status]
    if kind is Kind.TRAINING_JOB:
        if status == "Stopped" and stop_requested:
            return Meaning.OK
        return TRAINING_JOB_MEANINGS.get(status, Meaning.UNKNOWN)
    if kind is Kind.ENDPOINT:
        return ENDPOINT_MEANINGS.get(status, Meaning.UNKNOWN)
    if kind is Kind.SCHEDULE:
        return SCHEDULE_MEANINGS.get(status, Meaning.UNKNOWN)
    return Meaning.OK if status == PRESENT else Meaning.UNKNOWN


def is_settled(kind: Kind, status: str, desired: Desired, *, stop_requested: bool = False) -> bool:
    """True when the resource needs nothing more from the reconciler for its desired state."""
    m = meaning(kind, status, stop_requested=stop_requested)
    if desired is Desired.ABSENT:
        if kind is Kind.TRAINING_JOB:  # jobs are never deleted: absent means stopped or finished
            return m in (Meaning.OK, Meaning.FAILED, Meaning.GONE)
        return m is Meaning.GONE
    return m in (Meaning.OK, Meaning.FAILED)


# A billed resource runs while it is in one of these statuses.
BILLED_STATUSES: dict[Kind, frozenset[str]] = {
    Kind.TRAINING_JOB: frozenset({"InProgress", "Stopping"}),
    Kind.ENDPOINT: frozenset(
        {"Creating", "InService", "Updating", "SystemUpdating", "RollingBack", "OutOfService", "Deleting",
         "UpdateRollbackFailed"}
    ),
}
