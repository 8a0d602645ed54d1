"""One exception tree. Each class carries the exit code the CLI uses and whether a retry may help."""

from __future__ import annotations


class JobmanError(Exception):
    """Base of every domain error; the CLI prints it as one line `Error: ...`."""

    exit_code = 1
    retryable = False


class ConfigError(JobmanError):
    """Bad user input: experiment file, CLI value, data file. Nothing has been changed."""

    exit_code = 2


class LedgerError(JobmanError):
    """The ledger cannot be used as it is (for example an out-of-date schema). The message names the database."""

    exit_code = 3


class LedgerDamaged(LedgerError):
    """The ledger file is not a database, or a damaged one. jobman never repairs or replaces it."""


class LedgerReadOnly(LedgerError):
    """The ledger cannot be written by this process (file, folder or file system); reading may still work."""


class LedgerBusy(LedgerError):
    """Another process held the ledger's write lock for longer than the busy timeout."""

    retryable = True


class LedgerConflict(LedgerBusy):
    """The database broke a tie between two transactions (a deadlock, a serialization failure): the transaction
    is retried from the start, and this reaches the user only when retries did not help."""


class NotInLedger(LedgerError):
    """A row jobman looked up by its id is not in the ledger (removed by another process, or a replaced file)."""


class BackendError(JobmanError):
    """A backend call failed. `code` is the AWS error code when there is one."""

    exit_code = 4

    def __init__(self, message: str, *, code: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class ResourceNotFound(BackendError):
    """The named resource does not exist on the backend."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ResourceNotFound")


class ResourceInUse(BackendError):
    """A create met an existing resource of the same name."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ResourceInUse")


class Unreachable(BackendError):
    """The backend did not answer for longer than its budget (or the local server could not be started)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="Unreachable")


class InvokeError(BackendError):
    """An endpoint invocation failed; `retryable` says whether sending again may succeed."""


class WaitTimeout(JobmanError):
    """A wait passed its deadline; the deadline's action has been recorded in the ledger."""

    exit_code = 5


class RunFailed(JobmanError):
    """A resource of the run reached a failed state."""

    exit_code = 6
