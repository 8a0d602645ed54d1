"""Every status word jobman uses, and what each means to the controller.

Observed statuses are the cloud's own words (`Status`), plus three of jobman's for resources that have
no status in the API or are not there: PENDING (intent recorded, not yet seen), PRESENT (a model or
endpoint config that exists) and ABSENT (looked up and not found). A resource's observed status stays a
plain string in the ledger, because the cloud may one day answer a word jobman does not know; such a
word means "unknown", never "done". Runs have a closed set of statuses (`RunStatus`).
"""

from __future__ import annotations

from enum import StrEnum

from jobman.kinds import JOB_KINDS, Kind


class Status(StrEnum):
    # jobman's own
    PENDING = "Pending"
    PRESENT = "Present"
    ABSENT = "Absent"
    # TrainingJobStatus and TransformJobStatus
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DELETING = "Deleting"
    # EndpointStatus (Deleting and Failed as above)
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    SYSTEM_UPDATING = "SystemUpdating"
    ROLLING_BACK = "RollingBack"
    OUT_OF_SERVICE = "OutOfService"
    UPDATE_ROLLBACK_FAILED = "UpdateRollbackFailed"
    # EventBridge Scheduler's ScheduleState
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # by `jobman stop`
    SUPERSEDED = "superseded"  # a changed file started a new run
    ORPHANED = "orphaned"  # made by gc to record orphans it adopted

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


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


TRAINING_JOB_MEANINGS: dict[Status, Meaning] = {
    Status.IN_PROGRESS: Meaning.PENDING,
    Status.STOPPING: Meaning.PENDING,
    Status.COMPLETED: Meaning.OK,
    Status.FAILED: Meaning.FAILED,
    Status.STOPPED: Meaning.FAILED,  # a failure unless jobman asked for it; see `meaning`
    Status.DELETING: Meaning.TRANSIENT,
}

ENDPOINT_MEANINGS: dict[Status, Meaning] = {
    Status.CREATING: Meaning.PENDING,
    Status.IN_SERVICE: Meaning.OK,
    Status.UPDATING: Meaning.TRANSIENT,
    Status.SYSTEM_UPDATING: Meaning.TRANSIENT,
    Status.ROLLING_BACK: Meaning.TRANSIENT,
    Status.OUT_OF_SERVICE: Meaning.TRANSIENT,
    Status.DELETING: Meaning.TRANSIENT,
    Status.UPDATE_ROLLBACK_FAILED: Meaning.FAILED,
    Status.FAILED: Meaning.FAILED,  # accepts only DeleteEndpoint
}

TRANSFORM_JOB_MEANINGS: dict[Status, Meaning] = {
    Status.IN_PROGRESS: Meaning.PENDING,
    Status.STOPPING: Meaning.PENDING,
    Status.COMPLETED: Meaning.OK,
    Status.FAILED: Meaning.FAILED,
    Status.STOPPED: Meaning.FAILED,  # a failure unless jobman asked for it; see `meaning`
}

# A schedule is ENABLED until it fires (then, with ActionAfterCompletion DELETE, it is gone); one that
# somebody disabled will not fire, so the TTL it stands for no longer holds.
SCHEDULE_MEANINGS: dict[Status, Meaning] = {
    Status.ENABLED: Meaning.OK,
    Status.DISABLED: Meaning.FAILED,
}

# Models and endpoint configs have no status in the API: they are there or not.
RECORD_MEANINGS: dict[Status, Meaning] = {Status.PRESENT: Meaning.OK}

MEANINGS: dict[Kind, dict[Status, Meaning]] = {
    Kind.TRAINING_JOB: TRAINING_JOB_MEANINGS,
    Kind.TRANSFORM_JOB: TRANSFORM_JOB_MEANINGS,
    Kind.ENDPOINT: ENDPOINT_MEANINGS,
    Kind.SCHEDULE: SCHEDULE_MEANINGS,
    Kind.MODEL: RECORD_MEANINGS,
    Kind.ENDPOINT_CONFIG: RECORD_MEANINGS,
}

_COMMON = {Status.PENDING: Meaning.PENDING, Status.ABSENT: Meaning.GONE}

# What a resource is right after its Create call returns.
CREATED_STATUS: dict[Kind, Status] = {
    Kind.TRAINING_JOB: Status.IN_PROGRESS,
    Kind.TRANSFORM_JOB: Status.IN_PROGRESS,
    Kind.ENDPOINT: Status.CREATING,
    Kind.SCHEDULE: Status.ENABLED,
    Kind.MODEL: Status.PRESENT,
    Kind.ENDPOINT_CONFIG: Status.PRESENT,
}

# A job (training or transform) in one of these never changes again.
JOB_FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.STOPPED})


def meaning(kind: Kind, status: str, *, stop_requested: bool = False) -> Meaning:
    if status in _COMMON:
        return _COMMON[Status(status)]
    if kind in JOB_KINDS and status == Status.STOPPED and stop_requested:
        return Meaning.OK
    table = MEANINGS[kind]
    return table[Status(status)] if status in table else Meaning.UNKNOWN


def is_settled(kind: Kind, status: str, desired: Desired, *, stop_requested: bool = False) -> bool:
    """True when the resource needs nothing more from the reconciler for its desired state."""
    m = meaning(kind, status, stop_requested=stop_requested)
    if desired is Desired.ABSENT:
        if kind in JOB_KINDS:  # jobs are never deleted: absent means stopped or finished
            return m in (Meaning.OK, Meaning.FAILED, Meaning.GONE)
        return m is Meaning.GONE
    return m in (Meaning.OK, Meaning.FAILED)


# A billed resource runs while it is in one of these statuses.
BILLED_STATUSES: dict[Kind, frozenset[Status]] = {
    Kind.TRAINING_JOB: frozenset({Status.IN_PROGRESS, Status.STOPPING}),
    Kind.TRANSFORM_JOB: frozenset({Status.IN_PROGRESS, Status.STOPPING}),
    Kind.ENDPOINT: frozenset(
        {Status.CREATING, Status.IN_SERVICE, Status.UPDATING, Status.SYSTEM_UPDATING, Status.ROLLING_BACK,
         Status.OUT_OF_SERVICE, Status.DELETING, Status.UPDATE_ROLLBACK_FAILED}
    ),
}
