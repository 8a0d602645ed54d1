"""invoke_stream against a pure-Python fake endpoint: order, counts, retries, failure, bounds."""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from jobman.chunking import BLOCK_SIZE
from jobman.errors import ConfigError, InvokeError
from jobman.invoker import (
    WINDOW_FACTOR,
    InvokeOptions,
    InvokeSummary,
    invoke_stream,
    split_prediction_body,
)

Fault = Callable[[int, int, list[bytes]], Awaitable[bytes | None]]

pytestmark = pytest.mark.timeout(30)


def make_csv(n: int, seed: int = 0, eol: bytes = b"\n") -> tuple[bytes, bytes]:
    """n rows `id,f1,...` of varying width, and the expected output: each row's sum, one a line."""
    rng = random.Random(seed)
    rows = [[i] + [rng.randint(-999, 999) for _ in range(rng.randint(1, 4))] for i in range(1, n + 1)]
    data = b"".join(b",".join(b"%d" % v for v in row) + eol for row in rows)
    return data, b"".join(b"%d\n" % sum(row) for row in rows)


def row_sums(lines: list[bytes]) -> bytes:
    return b"\n".join(b"%d" % sum(int(v) for v in line.split(b",")) for line in lines) + b"\n"


class FakeEndpoint:
    """Scores `id,features...` rows with their sum, after a random number of loop yields.

    The random yields scramble completion order. `fault(first_id, attempt, lines)` may raise,
    or return a body to send instead; `attempt` counts from 0 per chunk (keyed by its first id).
    """

    def __init__(self, *, seed: int = 0, max_yields: int = 3, fault: Fault | None = None) -> None:
        self.rng = random.Random(seed)
        self.max_yields = max_yields
        self.fault = fault
        self.attempts: Counter[int] = Counter()
        self.calls = self.in_flight = self.peak_in_flight = self.cancelled = 0

    async def __call__(self, body: bytes) -> bytes:
        self.calls += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            lines = body.splitlines()
            first = int(lines[0].split(b",", 1)[0])
            attempt = self.attempts[first]
            self.attempts[first] += 1
            for _ in range(self.rng.randint(0, self.max_yields)):
                await asyncio.sleep(0)
            if self.fault is not None:
                replaced = await self.fault(first, attempt, lines)
                if replaced is not None:
                    return replaced
            return row_sums(lines)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


class FakeSleep:
    """Records each backoff and yields once instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def run(
    data: bytes,
    options: InvokeOptions,
    endpoint: Callable[[bytes], Awaitable[bytes]] | None = None,
    **kw: object,
) -> tuple[bytes, InvokeSummary]:
    dst = io.BytesIO()
    kw.setdefault("sleep", FakeSleep())
    summary = await invoke_stream(endpoint or FakeEndpoint(), io.BytesIO(data), dst, options, **kw)  # type: ignore[arg-type]
    return dst.getvalue(), summary


def throttled(message: str = "Rate exceeded") -> InvokeError:
    return InvokeError(message, code="ThrottlingException", retryable=True)


# --- results equal the reference --------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 10_000])
@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.parametrize(("max_bytes", "max_rows"), [(5_000_000, None), (5_000_000, 7), (200, None)])
async def test_predictions_match_the_reference(n: int, concurrency: int, max_bytes: int, max_rows: int | None) -> None:
    data, expected = make_csv(n, seed=n)
    options = InvokeOptions(max_payload_bytes=max_bytes, max_rows_per_chunk=max_rows, concurrency=concurrency)
    out, summary = await run(data, options, FakeEndpoint(seed=n + concurrency))
    assert out == expected
    assert summary.rows == n and summary.retries == 0 and summary.bytes_sent == len(data)


async def test_a_hundred_thousand_rows() -> None:
    data, expected = make_csv(100_000, seed=7)
    for options in (
        InvokeOptions(max_rows_per_chunk=997, concurrency=16),
        InvokeOptions(max_payload_bytes=64 * 1024, concurrency=16),
    ):
        out, summary = await run(data, options, FakeEndpoint(seed=1, max_yields=20))
        assert out == expected
        assert summary.rows == 100_000


async def test_every_cap_boundary() -> None:
    data, expected = make_csv(12, seed=3)
    longest = max(len(line) + 1 for line in data.split(b"\n")[:-1])
    for max_rows in [*range(1, 14), None]:
        for max_bytes in range(longest, len(data) + 2):
            options = InvokeOptions(max_payload_bytes=max_bytes, max_rows_per_chunk=max_rows, concurrency=3)
            out, summary = await run(data, options, FakeEndpoint(seed=max_bytes))
            assert out == expected, (max_rows, max_bytes)
            assert summary.rows == 12


async def test_crlf_header_and_no_final_newline() -> None:
    data, expected = make_csv(50, eol=b"\r\n")
    data = b"id,a,b\r\n" + data[:-2]
    out, summary = await run(data, InvokeOptions(header=True, max_rows_per_chunk=6, concurrency=4))
    assert out == expected
    assert summary.rows == 50 and summary.bytes_sent == len(data) - len(b"id,a,b\r\n")


async def test_empty_input_sends_nothing() -> None:
    endpoint = FakeEndpoint()
    out, summary = await run(b"", InvokeOptions(), endpoint)
    assert out == b"" and endpoint.calls == 0
    assert summary.to_dict() == {
        "rows": 0,
        "chunks": 0,
        "retries": 0,
        "bytes_sent": 0,
        "elapsed_s": summary.elapsed_s,
        "latency_p50_s": 0.0,
        "latency_p95_s": 0.0,
        "latency_max_s": 0.0,
    }


async def test_predictions_are_stripped_and_one_per_line() -> None:
    async def padded(first: int, attempt: int, lines: list[bytes]) -> bytes:
        return b" , ".join(b" %s \r" % p for p in row_sums(lines).split()) + b",\r\n\r\n"

    data, expected = make_csv(40)
    out, _ = await run(data, InvokeOptions(max_rows_per_chunk=9), FakeEndpoint(fault=padded))
    assert out == expected


# --- retries ----------------------------------------------------------------------------------


async def test_retries_with_full_jitter_backoff() -> None:
    async def twice(first: int, attempt: int, lines: list[bytes]) -> None:
        if attempt < 2:
            raise throttled()

    data, expected = make_csv(100)
    sleep = FakeSleep()
    options = InvokeOptions(max_rows_per_chunk=10, backoff_base_s=0.1, backoff_cap_s=10.0)
    out, summary = await run(data, options, FakeEndpoint(fault=twice), sleep=sleep, rng=lambda: 0.5)
    assert out == expected
    assert summary.retries == 20 and summary.chunks == 10
    assert summary.bytes_sent == 3 * len(data)
    assert sorted(sleep.delays) == pytest.approx([0.05] * 10 + [0.1] * 10)


async def test_backoff_is_capped() -> None:
    async def seven_times(first: int, attempt: int, lines: list[bytes]) -> None:
        if attempt < 7:
            raise throttled()

    sleep = FakeSleep()
    options = InvokeOptions(max_attempts=8, backoff_base_s=1.0, backoff_cap_s=4.0)
    out, summary = await run(b"1,2\n", options, FakeEndpoint(fault=seven_times), sleep=sleep, rng=lambda: 1.0)
    assert out == b"3\n" and summary.retries == 7
    assert sleep.delays == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]


async def test_a_throttling_burst_across_all_chunks() -> None:
    calls = 0

    async def burst(first: int, attempt: int, lines: list[bytes]) -> None:
        nonlocal calls
        calls += 1
        if 5 <= calls < 45:  # 40 calls in a row are throttled, whichever chunks they carry
            raise InvokeError("ServiceUnavailable", code="ServiceUnavailable", retryable=True)

    data, expected = make_csv(500)
    options = InvokeOptions(max_rows_per_chunk=10, concurrency=8, max_attempts=20)
    out, summary = await run(data, options, FakeEndpoint(fault=burst, seed=5))
    assert out == expected
    assert summary.retries == 40


async def test_gives_up_after_max_attempts_naming_the_rows() -> None:
    async def always(first: int, attempt: int, lines: list[bytes]) -> None:
        if first == 11:
            raise throttled()

    endpoint = FakeEndpoint(fault=always)
    with pytest.raises(InvokeError) as err:
        await run(make_csv(100)[0], InvokeOptions(max_rows_per_chunk=10, max_attempts=3), endpoint)
    assert str(err.value) == "rows 11–20: ThrottlingException: Rate exceeded (gave up after 3 attempts)"
    assert err.value.code == "ThrottlingException" and err.value.retryable
    assert endpoint.attempts[11] == 3
    assert endpoint.in_flight == 0


# --- failures ---------------------------------------------------------------------------------


async def test_model_error_fails_fast_naming_the_rows() -> None:
    async def model_error(first: int, attempt: int, lines: list[bytes]) -> None:
        if first == 1001:
            raise InvokeError("Received client error (424) from primary", code="ModelError")
        for _ in range(50):  # the others are slow: they are in flight when it fails
            await asyncio.sleep(0)

    endpoint = FakeEndpoint(fault=model_error)
    dst = io.BytesIO()
    src = io.BytesIO(make_csv(20_000)[0])
    options = InvokeOptions(max_rows_per_chunk=1000, concurrency=4)
    with pytest.raises(InvokeError) as err:
        await invoke_stream(endpoint, src, dst, options, sleep=FakeSleep())
    assert str(err.value) == "rows 1001–2000: ModelError: Received client error (424) from primary"
    assert err.value.code == "ModelError" and not err.value.retryable
    assert endpoint.calls == 4  # nothing was sent after the failure
    assert endpoint.cancelled == 3 and endpoint.in_flight == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_code_is_not_repeated_when_the_message_has_it() -> None:
    async def model_error(first: int, attempt: int, lines: list[bytes]) -> None:
        raise InvokeError("ModelError: bad input", code="ModelError")

    with pytest.raises(InvokeError, match=r"^row 1: ModelError: bad input$"):
        await run(b"1\n", InvokeOptions(), FakeEndpoint(fault=model_error))


async def test_a_failure_cancels_chunks_waiting_to_retry() -> None:
    async def fault(first: int, attempt: int, lines: list[bytes]) -> None:
        if first == 1:
            for _ in range(20):
                await asyncio.sleep(0)
            raise InvokeError("bad row", code="ValidationError")
        raise throttled()

    sleeping: list[float] = []

    async def slow_sleep(delay: float) -> None:
        sleeping.append(delay)
        await asyncio.sleep(3600)  # only cancellation ends it

    with pytest.raises(InvokeError, match=r"^rows 1–10: ValidationError: bad row$"):
        await run(make_csv(40)[0], InvokeOptions(max_rows_per_chunk=10), FakeEndpoint(fault=fault), sleep=slow_sleep)
    assert len(sleeping) == 3
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_bug_propagates_unchanged_after_cancelling_the_rest() -> None:
    bug = ZeroDivisionError("oops")

    async def fault(first: int, attempt: int, lines: list[bytes]) -> None:
        if first == 21:
            raise bug
        for _ in range(50):
            await asyncio.sleep(0)

    endpoint = FakeEndpoint(fault=fault, max_yields=0)
    with pytest.raises(ZeroDivisionError) as err:
        await run(make_csv(100)[0], InvokeOptions(max_rows_per_chunk=10, concurrency=4), endpoint)
    assert err.value is bug
    assert endpoint.in_flight == 0 and endpoint.cancelled == 3


@pytest.mark.parametrize(("change", "got"), [(-1, 9), (+1, 11)])
async def test_a_count_mismatch_is_an_error_not_a_shift(change: int, got: int) -> None:
    async def wrong_count(first: int, attempt: int, lines: list[bytes]) -> bytes | None:
        if first == 11:
            return b"1\n" * (len(lines) + change)
        return None

    with pytest.raises(InvokeError) as err:
        await run(make_csv(30)[0], InvokeOptions(max_rows_per_chunk=10), FakeEndpoint(fault=wrong_count))
    answer = repr(("1\n" * (10 + change))[:60])
    assert str(err.value) == f"rows 11–20: the endpoint returned {got} predictions for 10 rows (answer began {answer})"
    assert err.value.code == "PredictionCountMismatch" and not err.value.retryable


async def test_two_outputs_per_row_are_a_mismatch() -> None:
    async def multiclass(first: int, attempt: int, lines: list[bytes]) -> bytes:
        return b"0.1,0.9\n" * len(lines)

    with pytest.raises(InvokeError, match=r"^rows 1–3: the endpoint returned 6 predictions for 3 rows \(answer began "):
        await run(b"1\n2\n3\n", InvokeOptions(), FakeEndpoint(fault=multiclass))


async def test_an_oversized_row_stops_it_and_cancels_what_is_in_flight() -> None:
    async def slow(first: int, attempt: int, lines: list[bytes]) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    data = make_csv(30)[0] + b"31," + b"1" * 200 + b"\n"
    endpoint = FakeEndpoint(fault=slow)
    with pytest.raises(ConfigError, match=r"^row 31 is 204 bytes"):
        await run(data, InvokeOptions(max_payload_bytes=100, concurrency=4), endpoint)
    assert endpoint.in_flight == 0


async def test_cancelling_the_caller_cancels_the_requests() -> None:
    async def forever(first: int, attempt: int, lines: list[bytes]) -> None:
        await asyncio.Event().wait()

    endpoint = FakeEndpoint(fault=forever)
    options = InvokeOptions(max_rows_per_chunk=1, concurrency=5)
    task = asyncio.create_task(run(make_csv(100)[0], options, endpoint))
    for _ in range(100):
        await asyncio.sleep(0)
    assert endpoint.in_flight == 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert endpoint.cancelled == 5 and endpoint.in_flight == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


# --- bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 16])
async def test_in_flight_never_exceeds_concurrency(concurrency: int) -> None:
    endpoint = FakeEndpoint(max_yields=10)
    data, expected = make_csv(2000)
    out, _ = await run(data, InvokeOptions(max_rows_per_chunk=10, concurrency=concurrency), endpoint)
    assert out == expected
    assert endpoint.peak_in_flight == concurrency


async def test_a_slow_first_chunk_stalls_the_reader_at_the_window() -> None:
    """Reorder-buffer bound: while chunk 0 is outstanding, at most WINDOW_FACTOR x concurrency
    chunks are cut (so at most that many minus one wait in the reorder buffer), nothing is
    written, and the input is read no further than those chunks plus one block."""
    concurrency, cap = 4, 100_000
    window = WINDOW_FACTOR * concurrency
    release = asyncio.Event()

    async def count_only(body: bytes) -> bytes:
        if body.startswith(b"0\n"):
            await release.wait()
        else:
            await asyncio.sleep(0)
        return b"7\n" * body.count(b"\n")

    calls: list[int] = []

    async def invoke(body: bytes) -> bytes:
        calls.append(len(body))
        return await count_only(body)

    data = b"".join(b"%d\n" % i for i in range(1_000_000))  # ~6.9 MB, ~69 chunks
    src, dst = io.BytesIO(data), io.BytesIO()
    options = InvokeOptions(max_payload_bytes=cap, concurrency=concurrency)
    task = asyncio.create_task(invoke_stream(invoke, src, dst, options))
    for _ in range(500):
        await asyncio.sleep(0)
    assert len(calls) == window
    assert dst.getvalue() == b""
    assert src.tell() <= (window + 1) * cap + BLOCK_SIZE < len(data)
    release.set()
    summary = await task
    assert summary.rows == 1_000_000 and dst.getvalue() == b"7\n" * 1_000_000


# --- summary and progress ---------------------------------------------------------------------


async def test_progress_reports_each_chunk_as_it_finishes() -> None:
    progress: list[int] = []
    data, _ = make_csv(1234)
    options = InvokeOptions(max_rows_per_chunk=100, concurrency=4)
    _, summary = await run(data, options, on_progress=progress.append)
    assert sum(progress) == 1234 and len(progress) == summary.chunks == 13
    assert sorted(progress) == [34] + [100] * 12


async def test_latency_percentiles_from_the_injected_clock() -> None:
    now = 0.0
    durations = iter([0.1 * k for k in range(1, 11)])

    async def timed(body: bytes) -> bytes:
        nonlocal now
        now += next(durations)
        return row_sums(body.splitlines())

    data, expected = make_csv(10)
    options = InvokeOptions(max_rows_per_chunk=1, concurrency=1)
    out, summary = await run(data, options, timed, clock=lambda: now)
    assert out == expected
    assert summary.chunks == 10
    assert summary.elapsed_s == pytest.approx(5.5)
    assert summary.latency_p50_s == pytest.approx(0.55)
    assert summary.latency_p95_s == pytest.approx(0.955)
    assert summary.latency_max_s == pytest.approx(1.0)


# --- options and parsing ----------------------------------------------------------------------


def test_options_are_checked() -> None:
    InvokeOptions(max_payload_bytes=6_291_456)
    with pytest.raises(ConfigError, match="max_payload_bytes must be between 1 and 6291456"):
        InvokeOptions(max_payload_bytes=6_291_457)
    for bad in ({"concurrency": 0}, {"max_attempts": 0}, {"max_rows_per_chunk": 0}, {"backoff_base_s": -1.0}):
        with pytest.raises(ConfigError):
            InvokeOptions(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"1\n2\n", [b"1", b"2"]),
        (b"1\n2", [b"1", b"2"]),
        (b"1,2,3", [b"1", b"2", b"3"]),
        (b"1,2,3,\n", [b"1", b"2", b"3"]),
        (b"1\r\n2\r\n", [b"1", b"2"]),
        (b" 1 , 2 ,\n 3 \n\n", [b"1", b"2", b"3"]),
        (b"1,\n2,\n", [b"1", b"2"]),
        (b"-1.5e-3\n4.25\n", [b"-1.5e-3", b"4.25"]),
        (b"", []),
        (b"\n", []),
        (b" \r\n ", []),
        (b"a b\n", [b"a b"]),
        (b"1\r2\r", [b"1", b"2"]),
    ],
)
def test_split_prediction_body(body: bytes, expected: list[bytes]) -> None:
    assert split_prediction_body(body) == expected


def test_split_prediction_body_random() -> None:
    """With or without spaces (two code paths), any separators give back the same predictions."""
    rng = random.Random(0)
    separators = [b",", b"\n", b"\r\n", b",\n", b", ", b" ,\t", b"\n\n", b" \r\n ", b",,"]
    for _ in range(2000):
        tokens = [b"%.6g" % rng.uniform(-1e6, 1e6) for _ in range(rng.randint(0, 8))]
        body = rng.choice([b"", b" ", b"\n"])
        for token in tokens:
            body += token + rng.choice(separators)
        if tokens and rng.random() < 0.5:
            body = body.rstrip(b" ,\t\r\n")
        assert split_prediction_body(body) == tokens, body
