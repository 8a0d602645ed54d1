"""Ledger work that a cancellation cannot cut short: a whole transaction, an engine's disposal.

Ctrl-C cancels `jobman run`'s task wherever it is waiting, often inside a ledger call. Cut short halfway, a
statement leaves SQLAlchemy to invalidate its connection and a commit or close leaves the pool to finalise it
outside any task: that logs "Exception during reset or similar" tracebacks and can leave a close waiting forever
on aiosqlite's stopped thread, hanging `asyncio.run` on the way out. So each ledger call runs to its end (a few
milliseconds) in a task of its own, and the cancellation is raised as soon as it is done: the write is recorded,
and what follows it is interrupted. `asyncio.shield` alone is not enough: it returns at once and leaves the work
running in the background, where `asyncio.run` cancels it on the way out.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def to_completion(work: Awaitable[T]) -> T:
    """Await `work` to its end even if this task is cancelled meanwhile; then the cancellation goes on."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError as exc:
            if task.done():  # the work itself was cancelled: nothing left to wait for
                raise
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    return result


def uncancellable(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The coroutine function run `to_completion` on every call."""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await to_completion(method(*args, **kwargs))

    run.uncancellable = True  # type: ignore[attr-defined]  # tests check that every ledger call has it
    return run
