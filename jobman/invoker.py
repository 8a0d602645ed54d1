"""Send a CSV to an endpoint in parallel text/csv chunks; write one prediction per row, in order.

Flow: `iter_chunks` cuts the input at its own line ends; up to `concurrency` chunk tasks run at
once, each retrying retryable `InvokeError`s with full-jitter backoff; finished chunks wait in a
reorder buffer until every earlier chunk is written. No chunk is cut while the oldest unwritten
chunk is `WINDOW_FACTOR * concurrency` chunks behind, so memory stays O(concurrency x chunk size)
even when one chunk is slow. Every response must hold exactly one prediction per row of its chunk.

The input is read and cut in the event loop's thread: about 5 ms a 5 MB chunk (1M rows, 111 MB,
cut in 0.12 s here), small next to an endpoint's time for the same rows, and simpler than a thread.

If invoke_stream raises, `dst` may hold the predictions of a prefix of the rows: write to a
temporary file and rename it on success.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from jobman.backoff import Backoff, retry
from jobman.chunking import Chunk, iter_chunks
from jobman.config import INVOKE_BODY_LIMIT
from jobman.errors import ConfigError, InvokeError

InvokeFn = Callable[[bytes], Awaitable[bytes]]

WINDOW_FACTOR = 2  # chunks cut but not yet written, per unit of concurrency


@dataclass(frozen=True)
class InvokeOptions:
    max_payload_bytes: int = 5_000_000
    max_rows_per_chunk: int | None = None
    concurrency: int = 8
    header: bool = False
    max_attempts: int = 8  # per chunk, the first attempt included
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_payload_bytes <= INVOKE_BODY_LIMIT:
            raise ConfigError(
                f"max_payload_bytes must be between 1 and {INVOKE_BODY_LIMIT} "
                f"(InvokeEndpoint's limit), not {self.max_payload_bytes}"
            )
        for name in ("concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_rows_per_chunk is not None and self.max_rows_per_chunk < 1:
            raise ConfigError(f"max_rows_per_chunk must be at least 1, not {self.max_rows_per_chunk}")
        if self.backoff_base_s < 0 or self.backoff_cap_s < 0:
            raise ConfigError("backoff_base_s and backoff_cap_s must not be negative")

    @property
    def backoff(self) -> Backoff:
        return Backoff(attempts=self.max_attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)


@dataclass(frozen=True)
class InvokeSummary:
    rows: int
    chunks: int
    retries: int
    bytes_sent: int  # request bodies over all attempts, retries included
    elapsed_s: float
    latency_p50_s: float  # per chunk: the successful attempt's request time
    latency_p95_s: float
    latency_max_s: float

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


# One boundary: a run of commas and line ends (with any whitespace around it). A space or tab
# alone is not a boundary, so b"a b" stays one prediction.
_BOUNDARY = re.compile(rb"[ \t]*[,\n\r\v\f][\s,]*")
_EDGES = b" \t\r\n\v\f,"


def split_prediction_body(body: bytes) -> list[bytes]:
    """Predictions separated by commas and/or line ends; whitespace around them is dropped.

    A run of separators counts as one, so b"1,\\n2,\\n" is two predictions; an empty
    prediction therefore shows up as a count mismatch, never as a shifted row.
    """
    if b" " not in body and b"\t" not in body:
        # The usual body: without spaces or tabs, bytes.split() finds the same boundaries ~20x faster.
        return body.replace(b",", b"\n").split() if b"," in body else body.split()
    body = body.strip(_EDGES)
    return _BOUNDARY.split(body) if body else []


@dataclass
class _ChunkResult:
    chunk: Chunk
    predictions: list[bytes]
    latency_s: float
    retries: int
    bytes_sent: int


@dataclass
class _Totals:
    rows: int = 0
    chunks: int = 0
    retries: int = 0
    bytes_sent: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def add(self, result: _ChunkResult) -> None:
        self.rows += result.chunk.rows
        self.chunks += 1
        self.retries += result.retries
        self.bytes_sent += result.bytes_sent
        self.latencies_s.append(result.latency_s)


async def invoke_stream(
    invoke: InvokeFn,
    src: BinaryIO,
    dst: BinaryIO,
    options: InvokeOptions,
    *,
    on_progress: Callable[[int], None] | None = None,
    source: str = "input",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> InvokeSummary:
    """Predict every data row of `src` into `dst`, one line each, in input order.

    Raises InvokeError naming the rows of the first chunk that failed for good (non-retryable,
    out of attempts, or a prediction count mismatch), ConfigError for unsendable input (binary
    input is named by `source`); other exceptions propagate unchanged. In-flight requests are
    cancelled before anything is raised.
    """
    started = clock()
    chunks = iter_chunks(src, options.max_payload_bytes, options.max_rows_per_chunk, header=options.header,
                         source=source)
    window = WINDOW_FACTOR * options.concurrency
    running: set[asyncio.Task[_ChunkResult]] = set()
    finished: asyncio.Queue[asyncio.Task[_ChunkResult]] = asyncio.Queue()
    ready: dict[int, list[bytes]] = {}  # the reorder buffer: chunk index -> predictions
    totals = _Totals()
    cut = written = 0  # chunks cut from src / chunks written to dst
    exhausted = False

    def send(chunk: Chunk) -> asyncio.Task[_ChunkResult]:
        task = asyncio.create_task(_send_chunk(invoke, chunk, options, sleep, clock, rng), name=f"invoke {chunk.label}")
        task.add_done_callback(finished.put_nowait)
        return task

    try:
        while True:
            # Start chunks while a request slot is free and the window allows.
            while not exhausted and len(running) < options.concurrency and cut - written < window:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                else:
                    running.add(send(chunk))
                    cut += 1
            if not running:
                break
            task = await finished.get()
            running.discard(task)
            result = task.result()  # a failed chunk raises here; `finally` cancels the rest
            totals.add(result)
            ready[result.chunk.index] = result.predictions
            if on_progress is not None:
                on_progress(result.chunk.rows)
            while written in ready:
                _write_predictions(dst, ready.pop(written))
                written += 1
    finally:
        chunks.close()
        await _cancel_all(running)
    return _summary(totals, clock() - started)


async def _send_chunk(
    invoke: InvokeFn,
    chunk: Chunk,
    options: InvokeOptions,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
    rng: Callable[[], float],
) -> _ChunkResult:
    """One chunk, retried on retryable errors; its predictions checked against its row count."""
    attempts = 0
    latency_s = 0.0

    async def attempt() -> bytes:
        nonlocal attempts, latency_s
        attempts += 1
        t0 = clock()
        response = await invoke(chunk.body)
        latency_s = clock() - t0  # the successful attempt's, as the summary reports it
        return response

    try:
        response = await retry(attempt, retryable=_retryable, policy=options.backoff, sleep=sleep, rng=rng)
    except InvokeError as e:
        # `retry` raises a retryable error only once it is out of attempts.
        raise _named(chunk, e, f" (gave up after {attempts} attempts)" if e.retryable else "") from e
    predictions = split_prediction_body(response)
    if len(predictions) != chunk.rows:
        start = response[:60].decode("utf-8", "replace")
        raise InvokeError(
            f"{chunk.label}: the endpoint returned {len(predictions)} predictions for {chunk.rows} rows "
            f"(answer began {start!r})",
            code="PredictionCountMismatch",
        )
    return _ChunkResult(chunk, predictions, latency_s, attempts - 1, attempts * len(chunk.body))


def _retryable(error: BaseException) -> bool:
    """Only the endpoint's own retryable errors; anything else (a bug) propagates at once, unchanged."""
    return isinstance(error, InvokeError) and error.retryable


def _named(chunk: Chunk, error: InvokeError, suffix: str) -> InvokeError:
    """The same error, its message prefixed with the chunk's rows and its code."""
    message = str(error)
    if error.code and not message.startswith(error.code):
        message = f"{error.code}: {message}"
    return InvokeError(f"{chunk.label}: {message}{suffix}", code=error.code, retryable=error.retryable)


def _write_predictions(dst: BinaryIO, predictions: list[bytes]) -> None:
    if predictions:
        dst.write(b"\n".join(predictions) + b"\n")


async def _cancel_all(tasks: set[asyncio.Task[_ChunkResult]]) -> None:
    """Cancel and await every task, so none outlives the call and no exception goes unretrieved."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _summary(totals: _Totals, elapsed_s: float) -> InvokeSummary:
    latencies = sorted(totals.latencies_s)
    return InvokeSummary(
        rows=totals.rows,
        chunks=totals.chunks,
        retries=totals.retries,
        bytes_sent=totals.bytes_sent,
        elapsed_s=elapsed_s,
        latency_p50_s=_percentile(latencies, 0.50),
        latency_p95_s=_percentile(latencies, 0.95),
        latency_max_s=latencies[-1] if latencies else 0.0,
    )


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0.0 when there is nothing."""
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
