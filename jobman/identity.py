"""Who this process is, as the ledger records it: the user and the machine that started a run, and the holder
name of the leases and runs it works on ("alice@build-3 pid 4121")."""

from __future__ import annotations

import getpass
import os
import socket


def current_user() -> str:
    """`JOBMAN_USER` when set (a shared account, CI), else the login name."""
    if configured := os.environ.get("JOBMAN_USER", "").strip():
        return configured[:64]
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):  # no passwd entry for this uid (a container)
        return f"uid{os.getuid()}"


def current_host() -> str:
    """`JOBMAN_HOST` when set (a container's hostname changes with every start), else the hostname."""
    return (os.environ.get("JOBMAN_HOST", "").strip() or socket.gethostname())[:255] or "unknown-host"


def holder_name() -> str:
    """This process among every process on every machine that shares the ledger."""
    return f"{current_user()}@{current_host()} pid {os.getpid()}"


def stopped_here(holder: str) -> bool:
    """Whether `holder` (a `holder_name`) is a process of this machine that no longer runs: its claim need not
    wait for its lease to run out. A holder on another machine cannot be checked: its lease says."""
    who, sep, pid = holder.rpartition(" pid ")
    if not sep or not pid.isdigit() or who.rpartition("@")[2] != current_host():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's live process
        return False
    return False


def local_site() -> str:
    """Where this machine's local cloud is: the host and JOBMAN_HOME (two homes are two local clouds)."""
    from jobman.paths import jobman_home

    return f"{current_host()}:{jobman_home().resolve()}"


def site_for(backend: str) -> str | None:
    """What a run on `backend` records as its site: the local cloud's place; None for a cloud every machine
    reaches."""
    return local_site() if backend == "local" else None
