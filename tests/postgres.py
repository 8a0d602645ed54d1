"""A real PostgreSQL for the tests: initdb into a temporary folder, pg_ctl start on a free loopback port,
one fresh database per test, the server stopped at the end of the session (also when tests fail).

Each pytest(-xdist) worker runs its own server, so workers never share a database. As root (CI), initdb
refuses to run: the server then runs as an unprivileged user (`postgres`, else `nobody`) through `runuser`,
in a folder that user owns. The binaries are found on PATH or in /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then the newest /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def _run_as() -> str | None:
    """The user the server runs as: None for this one, an unprivileged account when this one is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no `postgres` or `nobody` user to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int = 0
    user: str | None = None
    _names: itertools.count = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _cmd(self, *args: str) -> list[str]:
        if self.user is None:
            return list(args)
        if shutil.which("runuser"):
            return ["runuser", "-u", self.user, "--", *args]
        return ["su", "-s", "/bin/sh", self.user, "-c", shlex.join(args)]

    def start(self) -> None:
        self.user = _run_as()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(self._cmd(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                                 "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"),
                       check=True, capture_output=True, text=True)
        last: subprocess.CalledProcessError | None = None
        for _ in range(5):  # a free port can be taken by someone else before the server binds it: try another
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            try:
                subprocess.run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                                         "-t", "60", "-l", str(self.root / "server.log"), "start"),
                               check=True, capture_output=True, text=True)
                return
            except subprocess.CalledProcessError as exc:
                last = exc
        raise RuntimeError(f"PostgreSQL did not start: {last and last.stderr}\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                     "stop"), capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run([str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
                               "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                              check=True, capture_output=True, text=True)
        return done.stdout.strip()

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL (asyncpg)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def _world_reachable(folder: Path) -> bool:
    """Whether every folder on the way to `folder` lets other users through."""
    return all(os.stat(part).st_mode & 0o001 for part in [folder, *folder.parents])


def start_server() -> PostgresServer:
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
                           "/usr/lib/postgresql/*/bin: install the `postgresql` package (.ci/run does)")
    # As root, the server's user must reach its folder: the default temporary folder may be root's own.
    parent = None if os.geteuid() != 0 or _world_reachable(Path(tempfile.gettempdir())) else "/tmp"
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="jobman-pg-", dir=parent)))
    atexit.register(server.stop)  # also when the session dies before its fixture's finaliser runs
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
