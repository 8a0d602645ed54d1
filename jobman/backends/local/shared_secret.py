"""The local backend's shared secret: what jobman's own processes prove to each other over HTTP.

The server's `/_jobman/*` routes and the endpoint workers' ports answer only requests that carry it in
`X-Jobman-Secret`. It lives in `$JOBMAN_HOME/local/secret` (mode 0600, folder 0700), so only processes
that can read the state folder know it; a web page or another user's process cannot. It is made once,
at the first server start, and kept: detached workers read it at their own start and outlive servers.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path

from jobman.backends.local.store import Layout

HEADER = "X-Jobman-Secret"


def ensure(where: Layout) -> str:
    """The secret, created on first use; safe to race (the first file linked into place wins)."""
    where.ensure_root()
    existing = read(where)
    if existing:
        return existing
    fd, tmp = tempfile.mkstemp(dir=where.root, prefix=".tmp-secret-")  # mkstemp files are 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, where.secret_file)  # fails if another process made it first: then use theirs
        except FileExistsError:
            pass
    finally:
        Path(tmp).unlink(missing_ok=True)
    os.chmod(where.secret_file, 0o600)
    value = read(where)
    if not value:
        raise RuntimeError(f"cannot read the local backend's secret {where.secret_file}")
    return value


def read(where: Layout) -> str | None:
    """The secret, or None if no server ever started here (or the file is unreadable)."""
    try:
        value = where.secret_file.read_text().strip()
    except OSError:
        return None
    return value or None


def matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so response timing says nothing about how much of a guess was right."""
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())
