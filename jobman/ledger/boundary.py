"""Where SQLAlchemy's exceptions become jobman's: one translation, around every way into the database.

As in MLflow's SQL store, callers of the ledger never see a driver error: a damaged file, a read-only folder or
a missing row is a LedgerError whose one-line message names the database and says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, NoResultFound, SQLAlchemyError, StatementError

from jobman.errors import LedgerBusy, LedgerDamaged, LedgerError, LedgerReadOnly, NotInLedger
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
    except OSError as exc:  # making the ledger's folder or its migration lock file
        raise LedgerError(f"the ledger {place} cannot be used: {exc.strerror or exc} ({exc.filename})") from exc


def ledger_error(error: BaseException | None, place: Place) -> LedgerError:
    """The driver's error as a one-line LedgerError; SQLite's are told apart by their result code."""
    detail = str(error) if error is not None else "unknown database error"
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
