"""Jittered exponential backoff and a request-rate limiter: the one reusable retry helper."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 20.0

    def delay_s(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
        return rng() * min(self.cap_s, self.base_s * 2 ** min(attempt, 64))


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[BaseException], bool],
    policy: Backoff = Backoff(),
    sleep: Sleep = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Await `call()`, retrying errors `retryable` accepts; the last error is raised as it is."""
    for attempt in range(policy.attempts):
        try:
            return await call()
        except Exception as exc:
            if attempt + 1 >= policy.attempts or not retryable(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            await sleep(policy.delay_s(attempt, rng))
    raise AssertionError("unreachable")


class RateLimiter:
    """Token bucket: at most `rate_per_s` acquisitions a second on average, bursts up to `burst`."""

    def __init__(
        self, rate_per_s: float, burst: int = 10, *, clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate_per_s, self.burst = rate_per_s, burst
        self._tokens = float(burst)
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self.rate_per_s)
