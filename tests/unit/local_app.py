"""The local server's app in this process on 127.0.0.1, with no training or endpoint process ever started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp.test_utils import TestServer

from jobman.backends.local.server import Server
from jobman.backends.local.supervisor import ProcessRef

NO_PROCESS = ProcessRef(2**22 + 1, None)  # beyond the largest pid_max: never a live process


@asynccontextmanager
async def served(home: Path) -> AsyncIterator[tuple[Server, str]]:
    """The server object and its URL; spawning is stubbed, so creates record state and start nothing."""
    server = Server(home, idle_timeout_s=0)
    server.training.spawn = lambda *_: NO_PROCESS
    server.endpoints.spawn = lambda *_: NO_PROCESS
    server.layout.ensure()
    test_server = TestServer(server.app(), host="127.0.0.1")
    await test_server.start_server()
    server.port = test_server.port  # the server checks that Host names its own port
    try:
        yield server, f"http://127.0.0.1:{test_server.port}"
    finally:
        await test_server.close()
