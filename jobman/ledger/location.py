"""Where the ledger is and what this process may do with it: its file, its folder, and how to open it read-only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url

from jobman.paths import jobman_home

# The files SQLite keeps beside a WAL-mode database while it is in use.
SIDE_FILES = ("-wal", "-shm")


def database_url() -> str:
    if configured := os.environ.get("JOBMAN_DB_URL"):
        return configured
    # Built, not formatted: a `?` or `#` in JOBMAN_HOME would otherwise start the URL's query.
    url = URL.create("sqlite+aiosqlite", database=str(jobman_home() / "ledger.db"))
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class Place:
    """A ledger's address: the URL it is opened with and, for a SQLite file, the file's path."""

    url: URL
    path: Path | None  # None for a database server or an in-memory database

    @classmethod
    def of(cls, url: str | URL | None = None) -> Place:
        url = make_url(url or database_url())
        return cls(url, _sqlite_file(url))

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=True)

    @property
    def opened_readonly(self) -> bool:
        """Whether this URL is one `readonly_url` made: SQLite refuses every write through it."""
        return self.url.query.get("mode") == "ro" or self.url.query.get("immutable") == "1"

    def exists(self) -> bool:
        """False for a SQLite ledger not made yet: no file, or a zero-byte one (opening it read-write sets it up)."""
        return self.path is None or (self.path.exists() and not self.is_empty_file())

    def is_empty_file(self) -> bool:
        """A zero-byte file: what SQLite leaves when a first use is interrupted before the first write."""
        try:
            return self.path is not None and self.path.stat().st_size == 0
        except OSError:
            return False

    def unwritable(self) -> str | None:
        """Why this process cannot write the ledger (a phrase to follow "cannot be written:"), or None.

        SQLite in WAL mode writes the -wal and -shm files beside the database, so the folder must be writable too."""
        if self.path is None:
            return None
        folder = self.path.parent
        if not folder.is_dir():
            return None  # made on first use, like the file
        if _read_only_file_system(folder):
            return f"it is on a read-only file system ({folder})"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"its folder {folder} is not writable by this user"
        for name in (self.path.name, *(self.path.name + side for side in SIDE_FILES)):
            file = folder / name
            if file.exists() and not os.access(file, os.W_OK):
                return f"{'the file' if file == self.path else file} is read-only for this user"
        return None

    def readonly_url(self) -> URL:
        """A URL on which SQLite never writes: `mode=ro` beside a live -shm file, else `immutable=1`.

        A reader of a WAL database shares the writers' -shm index. When there is none, no writer is active (a
        writer keeps one), and `mode=ro` would make the -wal and -shm files itself and leave them behind, owned
        by this user, where they stop the ledger's owner from writing it (or, in a folder this user cannot
        write, fail to open). `immutable=1` reads the file as it is, without them and without locks."""
        assert self.path is not None
        shm = self.path.with_name(self.path.name + "-shm")
        query = {"mode": "ro"} if shm.exists() else {"immutable": "1"}
        # SQLite decodes %XX in a URI's path, so a path with `?`, `#` or `%` in it survives the trip.
        return URL.create(self.url.drivername, database=f"file:{quote(str(self.path))}", query={**query, "uri": "true"})


def ledger_exists(url: str | None = None) -> bool:
    """False for a SQLite ledger not made yet (opening it read-write would make it)."""
    return Place.of(url).exists()


def _sqlite_file(url: URL) -> Path | None:
    if not url.drivername.startswith("sqlite"):
        return None
    database = url.database or ""
    if url.query.get("uri") == "true" and database.startswith("file:"):
        if url.query.get("mode") == "memory":
            return None
        location = database.removeprefix("file:")
        if location.startswith("//"):  # file://host/path: the authority is empty or localhost
            location = location[location.find("/", 2):]
        return Path(unquote(location)).absolute()
    if not database or database == ":memory:":
        return None
    return Path(database).absolute()


def _read_only_file_system(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
