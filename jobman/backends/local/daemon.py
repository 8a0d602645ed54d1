"""Start, find, inspect and stop the local server of a JOBMAN_HOME (sync; for the CLI and the controller).

`local/server.json` says where the server is; a health request proves it is really there. Every request
carries the secret of `local/secret` (see shared_secret.py), which the server demands on `/_jobman/*`. Starting is
serialized by a file lock, and the server itself holds a second lock for its whole life, so two
callers racing `ensure_running` (or a `jobman local serve` meanwhile) never get two servers on one home.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobman.backends.local import arns, capacity, shared_secret, supervisor
from jobman.backends.local.endpoints import SERVING
from jobman.backends.local.store import Layout, RecordStore, atomic_write_json, layout, read_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.training_state import JobFiles
from jobman.backends.local.wire import now
from jobman.errors import BackendError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 90.0
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


def ensure_running(jobman_home: Path, *, idle_timeout_s: float | None = None) -> str:
    """The URL of this home's server (`http://127.0.0.1:PORT`), starting one detached if none answers."""
    where = layout(jobman_home)
    url = _answering_url(where)
    if url:
        return url
    where.ensure_root()
    with _start_lock(where):
        return _answering_url(where) or _start(where, idle_timeout_s)


def running_url(jobman_home: Path) -> str | None:
    """The URL of this home's server if one answers; never starts one."""
    return _answering_url(layout(jobman_home))


def server_status(jobman_home: Path) -> dict[str, Any] | None:
    """What the server reports (url, pid, uptime, job and endpoint counts, endpoint processes), or None."""
    where = layout(jobman_home)
    url = _answering_url(where)
    if url is None:
        return None
    try:
        return _request(where, f"{url}/_jobman/status", timeout_s=10.0)
    except (OSError, ValueError):
        return None


def stop_server(jobman_home: Path, *, stop_endpoints: bool = False) -> bool:
    """Stop the server; True if one was running. With `stop_endpoints`, also stop every endpoint process
    (their endpoints become OutOfService) and every running training or transform job (Stopped), server or
    no server."""
    where = layout(jobman_home)
    if not where.root.is_dir():
        return False
    with _start_lock(where):
        stopped = _stop(where, stop_endpoints)
        if stop_endpoints:
            _sweep_workers(where)
        return stopped


# --- internals ---


def _request(where: Layout, url: str, *, method: str = "GET", timeout_s: float = 2.0) -> Any:
    """A `/_jobman/*` call; without the secret file (no server ever started here) it is sent without, and refused."""
    headers = {shared_secret.HEADER: shared_secret.read(where) or ""}
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None, headers=headers)
    with _HTTP.open(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def _server_info(where: Layout) -> dict[str, Any] | None:
    info = read_json(where.server_json)
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) and info.get("url") else None


def _answering_url(where: Layout) -> str | None:
    info = _server_info(where)
    if info is None:
        return None
    try:
        health = _request(where, f"{info['url']}/_jobman/health")
    except (OSError, ValueError):
        return None
    return str(info["url"]) if isinstance(health, dict) and health.get("pid") == info["pid"] else None


@contextlib.contextmanager
def _start_lock(where: Layout) -> Iterator[None]:
    where.ensure_root()
    with where.start_lock.open("ab") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackendError(f"another jobman process holds {where.start_lock} for too long",
                                       code="LocalServerBusy", retryable=True) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _server_lock_held(where: Layout) -> bool:
    with where.server_lock.open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _start(where: Layout, idle_timeout_s: float | None) -> str:
    if _server_lock_held(where):  # a server is starting (e.g. `jobman local serve`) or is hung
        url = _wait_for_answer(where, None, START_TIMEOUT_S)
        if url:
            return url
        info = _server_info(where) or {}
        raise BackendError(
            f"the local server for {where.root.parent} (pid {info.get('pid', '?')}) does not answer; "
            "stop it with `jobman local stop`", code="LocalServerUnavailable", retryable=True,
        )
    capacity.max_training()  # a bad JOBMAN_LOCAL_MAX_TRAINING is the caller's ConfigError, not a dead server's log
    args = ["--home", str(where.root.parent), "--port", "0"]
    if idle_timeout_s is not None:
        args += ["--idle-timeout", str(idle_timeout_s)]
    server = supervisor.spawn_module("jobman.backends.local.server", args, where.server_log, where.root)
    url = _wait_for_answer(where, server, START_TIMEOUT_S)
    if url:
        return url
    supervisor.terminate(server, 1.0)
    raise BackendError(f"the local server did not start; its log says:\n{_tail(where.server_log)}",
                       code="LocalServerUnavailable")


def _wait_for_answer(where: Layout, server: ProcessRef | None, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and not supervisor.is_alive(server):
            return None
        info = _server_info(where)
        if info and (server is None or info["pid"] == server.pid):
            url = _answering_url(where)
            if url:
                return url
        time.sleep(0.05)
    return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(where: Layout, stop_endpoints: bool) -> bool:
    info = _server_info(where)
    if info is None:
        return False
    ref = ProcessRef(info["pid"], info.get("start_ticks"))
    if not supervisor.is_alive(ref):
        return False
    try:
        flag = "1" if stop_endpoints else "0"
        _request(where, f"{info['url']}/_jobman/shutdown?stop_endpoints={flag}", method="POST")
    except (OSError, ValueError):
        supervisor.terminate(ref, 10.0)  # not answering: stop it the hard way
        return True
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while supervisor.is_alive(ref) and time.monotonic() < deadline:
        time.sleep(0.05)
    if supervisor.is_alive(ref):
        supervisor.terminate(ref, 5.0)
    return True


def _sweep_workers(where: Layout) -> None:
    """With no server running, stop worker processes its files still name (a server that died left them)."""
    for worker_file in sorted(where.root.glob("endpoints/*/*/worker.json")):
        ref = ProcessRef.from_json(read_json(worker_file))
        if ref is not None and supervisor.is_alive(ref):
            supervisor.terminate(ref, 5.0)
        region, key = worker_file.parent.parent.name, worker_file.parent.name
        records = RecordStore(where.resources(region, arns.ENDPOINT))
        record = records.get(key)
        if record is not None and record.get("EndpointStatus") in SERVING:
            record.update(EndpointStatus="OutOfService", LastModifiedTime=now())
            records.put(key, record)
    for worker_file in sorted([*where.root.glob("training/*/*/worker.json"),
                               *where.root.glob("transforms/*/*/worker.json")]):
        ref = ProcessRef.from_json(read_json(worker_file))
        if ref is not None and supervisor.is_alive(ref):
            files = JobFiles(worker_file.parent)
            if files.stop_request() is None:  # so the job is settled as Stopped, not Failed
                atomic_write_json(files.stop, {"at": now(), "secondary": "Stopped"})
            supervisor.terminate(ref, 5.0)

