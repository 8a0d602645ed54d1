"""Where SQLAlchemy's exceptions become jobman's: one translation, around every way into the database.

As in MLflow's SQL store, callers of the ledger never see a driver error: a damaged file, a read-only folder or
a missing row is a LedgerError whose one-line message names the database and says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, NoResultFound, SQLAlchemyError, StatementError

from jobman.errors import LedgerBusy, LedgerConflict, LedgerDamaged, LedgerError, LedgerReadOnly, NotInLedger
from jobman.ledger.location import Place


@contextmanager
def translated(place: Place) -> Iterator[None]:
    try:
        yield
    except NoResultFound as exc:
        raise NotInLedger(f"a row jobman expected is not in the ledger {place}") from exc
    except DBAPIError as exc:
        raise ledger_error(exc.orig, place) from exc
    except StatementError as exc:
        # A value refused before any SQL ran (a naive datetime, say): jobman's own bug, raised as what it is.
        if isinstance(exc.orig, Exception):
            raise exc.orig from exc
        raise RuntimeError(f"ledger {place}: {exc}") from exc
    except SQLAlchemyError as exc:  # misuse of SQLAlchemy: a bug, but its exceptions stay in here
        raise RuntimeError(f"ledger {place}: {exc}") from exc
    except OSError as exc:  # making the ledger's folder or its migration lock file; a server that does not answer
        if place.path is None:
            raise LedgerError(f"the ledger {place} cannot be reached: {exc.strerror or exc}") from exc
        raise LedgerError(f"the ledger {place} cannot be used: {exc.strerror or exc} ({exc.filename})") from exc


# PostgreSQL's SQLSTATEs (https://www.postgresql.org/docs/15/errcodes-appendix.html) that jobman tells apart.
PG_RETRY = {"40001", "40P01"}  # serialization_failure, deadlock_detected: retry the transaction
PG_BUSY = {"55P03", "57014"}  # lock_not_available (lock_timeout), query_canceled (statement_timeout)
PG_READONLY = {"25006", "42501"}  # read_only_sql_transaction, insufficient_privilege
PG_UNREACHABLE_CLASSES = ("08", "57P", "53")  # connection exceptions, server shut down, insufficient resources


def ledger_error(error: BaseException | None, place: Place) -> LedgerError:
    """The driver's error as a one-line LedgerError; SQLite's are told apart by their result code, PostgreSQL's
    by their SQLSTATE."""
    detail = " ".join(str(error).split()) if error is not None else "unknown database error"
    sqlstate = getattr(error, "sqlstate", None) or ""
    if sqlstate:
        return _postgres_error(sqlstate, detail, place)
    code = getattr(error, "sqlite_errorname", "") or ""
    if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return damaged(place, detail)
    if code.startswith("SQLITE_READONLY"):
        return cannot_write(place)
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return LedgerBusy(f"the ledger {place} stayed locked by another process; try again when it is done")
    if code.startswith("SQLITE_CANTOPEN"):
        why = place.unwritable()
        return LedgerError(f"the ledger {place} cannot be opened ({detail}{f': {why}' if why else ''})")
    if code.startswith("SQLITE_FULL"):
        return LedgerError(f"the ledger {place} cannot grow: its disk is full")
    return LedgerError(f"the ledger {place}: {detail}")


def _postgres_error(sqlstate: str, detail: str, place: Place) -> LedgerError:
    if sqlstate in PG_RETRY:
        return LedgerConflict(f"the ledger {place} kept refusing a write that raced another one ({detail}); "
                              "try again")
    if sqlstate in PG_BUSY:
        return LedgerBusy(f"the ledger {place} stayed locked by another process; try again when it is done")
    if sqlstate in PG_READONLY:
        return LedgerReadOnly(f"the ledger {place} cannot be written by this database role: {detail}")
    if sqlstate.startswith(PG_UNREACHABLE_CLASSES):
        return LedgerError(f"the ledger {place} cannot be reached: {detail}")
    if sqlstate.startswith("28"):  # invalid authorization
        return LedgerError(f"the ledger {place} refused the login: {detail}")
    if sqlstate == "3D000":  # invalid_catalog_name
        return LedgerError(f"the ledger {place} does not exist: {detail}; create it (see the README's team section)")
    return LedgerError(f"the ledger {place}: {detail}")


def damaged(place: Place, detail: str) -> LedgerDamaged:
    if place.path is None:
        return LedgerDamaged(f"the ledger {place} is damaged ({detail})")
    name = place.path.name
    return LedgerDamaged(
        f"the ledger {place} is damaged ({detail}) and jobman has left it as it is: move it aside (with any "
        f"{name}-wal and {name}-shm beside it) or restore it from a backup; jobman starts a new ledger when "
        "there is none"
    )


def cannot_write(place: Place) -> LedgerReadOnly:
    why = place.unwritable() or "it was opened read-only"
    return LedgerReadOnly(
        f"the ledger {place} cannot be written: {why}. This command records what it does there; "
        "`jobman status`, `jobman gc --dry-run` and `jobman db current` only read it"
    )
