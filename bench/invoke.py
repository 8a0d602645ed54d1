"""Benchmark jobman's invoker against a local endpoint: throughput, scaling with concurrency, memory.

What it measures, on one generated CSV (default 1,000,000 rows of the Boston table's 13 features,
resampled with a 2% jitter from a fixed seed) and one XGBoost model trained on the Boston table and
served by the local backend (local server on 127.0.0.1 + one endpoint process):

1. direct      the endpoint process's own `POST /invocations`, called with aiohttp and no jobman code
               in between: the ceiling the endpoint can score at.
2. jobman      `invoke_stream` -> AwsBackend (aioboto3) -> local server -> endpoint, no added latency.
3. +latency    `invoke_stream` -> AwsBackend -> FaultProxy (+50 ms a request) -> local server -> endpoint.
               The proxy runs in its own process, as a network hop would, so it takes no GIL from the
               invoking process.
4. memory      peak memory of the invoking process over invoke_stream alone (tracemalloc peak, and peak
               RSS from VmHWM reset just before) for a quarter, half and all of the input at the highest
               concurrency, each in a fresh subprocess.

Every pass sends the same chunks (`--chunk-rows` rows a request), at concurrency 1, 4 and 16, and
checks one prediction per input row; one jobman pass is also compared with Booster.predict on every
row. Each pass also records the CPU seconds of each process involved (client, local server, endpoint,
proxy) and of other processes on the machine, which on a shared 2-core box explain most of the noise.
Targets: with latency, concurrency 16 >= 10x concurrency 1; without latency, the best jobman pass
within 1.5x of the best direct pass; memory flat as the input grows (full/quarter peak ratio <= 1.25).

Run from the repository root: `python bench/invoke.py [--rows N | --quick] [--chunk-rows N] [--repeat N]`.
A missed target is reported, not an error: the exit status is 1 only when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import numpy as np
import pandas as pd
import xgboost as xgb
from botocore.config import Config
from sklearn.model_selection import train_test_split

from jobman.backends.local import supervisor
from jobman.backends.local.artifacts import pack_model
from jobman.backends.local.daemon import ensure_running, server_status, stop_server
from jobman.backends.local.store import layout, read_json
from jobman.backends.sagemaker import AwsBackend
from jobman.chunking import iter_chunks
from jobman.images import xgboost_image_uri
from jobman.invoker import InvokeOptions, invoke_stream

REPO = Path(__file__).resolve().parent.parent
BOSTON_CSV = REPO / "jobman" / "data" / "boston_house_prices.csv"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::000000000000:role/jobman-bench"
CREDENTIALS = {"aws_access_key_id": "jobman-bench", "aws_secret_access_key": "jobman-bench"}
ENDPOINT = "bench-invoke"
BUCKET = "bench"

DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 100_000
DEFAULT_CHUNK_ROWS = 1_000
CONCURRENCIES = (1, 4, 16)
LATENCY_S = 0.050
MAX_PAYLOAD_BYTES = 5_000_000  # never reached at the chunk sizes used: the row cap decides
SEED = 20240601
JITTER = 0.02  # relative noise on the continuous features
DISCRETE = ("CHAS", "RAD", "TAX", "ZN")  # kept as they are in the table
HYPERPARAMETERS = {  # the notebook's, as in examples/boston.toml
    "max_depth": 5, "eta": 0.2, "gamma": 4, "min_child_weight": 6, "subsample": 0.8,
    "objective": "reg:squarederror", "nthread": 1, "seed": 0,
}
NUM_ROUND, EARLY_STOPPING_ROUNDS = 200, 10
TEST_SIZE, VALIDATION_SIZE, SPLIT_SEED = 0.33, 0.33, 0  # the notebook's split, as jobman.dataprep does it
GEN_BLOCK_ROWS = 50_000
PREDICTION_TOLERANCE = 1e-4

LATENCY_SCALING_TARGET = 10.0  # with latency: rows/s at c=16 over rows/s at c=1, at least
DIRECT_RATIO_TARGET = 1.5  # without latency: best direct over best jobman, at most
MEMORY_RATIO_TARGET = 1.25  # peak at the full input over peak at a quarter of it, at most

MACHINE, OTHERS = "machine", "others"  # CpuMeter keys: all CPUs' busy time, and the part not ours


class BenchError(RuntimeError):
    """A check failed: a wrong prediction count, a prediction off the model's, a probe that died."""


# --- results ---


@dataclass(frozen=True)
class Pass:
    section: str
    concurrency: int
    rows: int
    elapsed_s: float
    requests: int
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds each process spent during the pass
    p50_ms: float | None = None  # per request, as the invoker measured it
    p95_ms: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s


@dataclass(frozen=True)
class MemoryProbe:
    rows: int
    elapsed_s: float
    tracemalloc_peak_b: int  # Python allocations (numpy's included) during invoke_stream
    rss_before_b: int  # resident set just before invoke_stream, client warmed up
    rss_peak_b: int  # peak resident set during invoke_stream (VmHWM reset before it), else ru_maxrss
    rss_peak_source: str

    @property
    def rss_growth_b(self) -> int:
        return max(0, self.rss_peak_b - self.rss_before_b)


@dataclass(frozen=True)
class Settings:
    rows: int
    chunk_rows: int
    repeat: int  # runs of each pass; the fastest is reported


@dataclass(frozen=True)
class InputFile:
    path: Path
    rows: int
    size_b: int


class CpuMeter:
    """CPU seconds (user + system) of this process, of named others, and of the whole machine, from /proc.

    The machine's busy time minus ours is what other processes took meanwhile: on a shared 2-core box a
    test suite running next to the benchmark shows up there, and explains a slow pass.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK")

    def with_process(self, name: str, pid: int) -> CpuMeter:
        return CpuMeter({**self.pids, name: pid})

    def snapshot(self) -> dict[str, float]:
        times = os.times()
        cpu = {"client": times.user + times.system, MACHINE: self._machine_busy_s()}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu[name] = (int(fields[11]) + int(fields[12])) * self._tick_s  # utime, stime
        return cpu

    def _machine_busy_s(self) -> float:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) * self._tick_s  # all but idle and iowait (no guest)

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds between two snapshots; MACHINE becomes OTHERS: the machine's busy time not ours."""
        spent = {name: after[name] - before[name] for name in after if name in before}
        machine = spent.pop(MACHINE)
        spent[OTHERS] = max(0.0, machine - sum(spent.values()))
        return spent


# --- input and model ---


def boston_table() -> pd.DataFrame:
    return pd.read_csv(BOSTON_CSV, skiprows=1)


def generate_rows(table: pd.DataFrame, rows: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` feature rows resampled from the table; continuous columns jittered, discrete ones kept."""
    features = table.drop(columns="MEDV")
    picked = features.to_numpy(dtype=np.float64)[rng.integers(0, len(features), rows)]
    continuous = np.array([name not in DISCRETE for name in features.columns])
    noise = rng.normal(1.0, JITTER, (rows, int(continuous.sum())))
    picked[:, continuous] *= noise
    return picked


def write_input(path: Path, rows: int) -> InputFile:
    """The benchmark's CSV (no header), written in blocks with %-formatting (pandas' to_csv is ~3x slower)."""
    table, rng = boston_table(), np.random.default_rng(SEED)
    line = ",".join(["%.6g"] * (table.shape[1] - 1)) + "\n"
    with path.open("w") as out:
        for start in range(0, rows, GEN_BLOCK_ROWS):
            block = generate_rows(table, min(GEN_BLOCK_ROWS, rows - start), rng)
            out.write("".join(line % tuple(row) for row in block.tolist()))
    return InputFile(path, rows, path.stat().st_size)


def write_prefix(source: InputFile, rows: int, path: Path) -> InputFile:
    """The first `rows` rows of `source` as their own file (cut at its line ends, bytes unchanged)."""
    remaining = rows
    with source.path.open("rb") as src, path.open("wb") as dst:
        while remaining:
            block = src.read(8 << 20)
            if not block:
                raise BenchError(f"{source.path} has fewer than {rows} rows")
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 0x0A)
            if len(ends) >= remaining:
                dst.write(block[: int(ends[remaining - 1]) + 1])
                remaining = 0
            else:
                dst.write(block)
                remaining -= len(ends)
    return InputFile(path, rows, path.stat().st_size)


def train_model() -> xgb.Booster:
    """The notebook's model: its split and hyperparameters, early stopping on the validation share."""
    table = boston_table()
    features, target = table.drop(columns="MEDV").to_numpy(np.float32), table["MEDV"].to_numpy()
    x_train, _, y_train, _ = train_test_split(features, target, test_size=TEST_SIZE, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=VALIDATION_SIZE,
                                                      random_state=SPLIT_SEED)
    return xgb.train(HYPERPARAMETERS, xgb.DMatrix(x_train, label=y_train), num_boost_round=NUM_ROUND,
                     evals=[(xgb.DMatrix(x_val, label=y_val), "validation")],
                     early_stopping_rounds=EARLY_STOPPING_ROUNDS, verbose_eval=False)


def scoring_range(booster: xgb.Booster) -> tuple[int, int]:
    """The trees the built-in container scores with: up to the best round when early stopping found one."""
    best = booster.attr("best_iteration")
    return (0, int(best) + 1) if best is not None else (0, 0)



# --- the local backend ---


def hermetic_environment(tmp: Path, home: Path) -> None:
    """Only 127.0.0.1 and this run's JOBMAN_HOME: no AWS profile, endpoint override or proxy applies."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = str(tmp / "no-aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "no-aws-credentials")
    os.environ["JOBMAN_HOME"] = str(home)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def boto3_client(url: str, service: str) -> Any:
    session = boto3.session.Session(region_name=REGION, **CREDENTIALS)
    return session.client(service, endpoint_url=url, config=Config(retries={"mode": "standard"}))


def deploy(url: str, booster: xgb.Booster) -> None:
    """Upload the model and create model, endpoint config and endpoint, as SageMaker is called; wait InService."""
    s3, sm = boto3_client(url, "s3"), boto3_client(url, "sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    key = f"{ENDPOINT}/output/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=pack_model(booster))
    sm.create_model(ModelName=ENDPOINT, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={
        "Image": xgboost_image_uri(REGION, "1"), "ModelDataUrl": f"s3://{BUCKET}/{key}"})
    sm.create_endpoint_config(EndpointConfigName=ENDPOINT, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": ENDPOINT, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})


@dataclass(frozen=True)
class Processes:
    server_pid: int
    endpoint_pid: int
    endpoint_url: str  # the endpoint process's own /invocations


def local_processes(home: Path) -> Processes:
    """The server's and the endpoint process's pids and the endpoint's own address, as the server reports them."""
    status = server_status(home) or {}
    for process in status.get("endpoint_processes", []):
        if process["name"] == ENDPOINT and process.get("port") and process.get("pid"):
            url = f"http://127.0.0.1:{process['port']}/invocations"
            return Processes(int(status["pid"]), int(process["pid"]), url)
    raise BenchError(f"the local server reports no process for {ENDPOINT}: {status}")


def kill_leftovers(home: Path) -> None:
    """After stop_server: kill any process the home's state files still name (a server that hung)."""
    root = layout(home).root
    for path in [root / "server.json", *root.glob("endpoints/*/*/worker.json"), *root.glob("training/*/*/worker.json")]:
        ref = supervisor.ProcessRef.from_json(read_json(path))
        if ref is not None and ref.pid != os.getpid() and supervisor.is_alive(ref):
            supervisor.send_signal(ref, signal.SIGKILL)


@contextlib.contextmanager
def local_backend(home: Path) -> Iterator[str]:
    """The local server of `home`; on the way out, it and every endpoint process are stopped, error or not."""
    try:
        yield ensure_running(home, idle_timeout_s=600)
    finally:
        try:
            stop_server(home, stop_endpoints=True)
        finally:
            kill_leftovers(home)


@contextlib.contextmanager
def latency_proxy(upstream: str, latency_s: float) -> Iterator[tuple[str, int]]:
    """A FaultProxy adding `latency_s` to every request, in a child process; yields its URL and pid."""
    command = [sys.executable, __file__, "--serve-proxy", upstream, "--latency", str(latency_s)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert child.stdout is not None
        url = child.stdout.readline().decode().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise BenchError(f"the latency proxy did not start (said {url!r})")
        yield url, child.pid
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the proxy exits when its stdin closes
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve_proxy(upstream: str, latency_s: float) -> int:
    """Child-process side of `latency_proxy`: print the URL, serve until stdin closes."""
    sys.path.insert(0, str(REPO))
    from tests.fault_proxy import FaultProxy

    with FaultProxy(upstream) as proxy:
        proxy.faults.latency_s = latency_s
        print(proxy.url, flush=True)
        sys.stdin.read()
    return 0


# --- passes ---


def options(chunk_rows: int, concurrency: int) -> InvokeOptions:
    return InvokeOptions(max_payload_bytes=MAX_PAYLOAD_BYTES, max_rows_per_chunk=chunk_rows, concurrency=concurrency)


async def direct_pass(url: str, source: InputFile, chunk_rows: int, concurrency: int, meter: CpuMeter) -> Pass:
    """POST the invoker's chunks straight to the endpoint process, `concurrency` at a time; count predictions."""
    rows = requests = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _post(session, url, b"0,0,0,0,0,0,0,0,0,0,0,0,0\n")  # open a connection first
        with source.path.open("rb") as src:
            chunks = iter_chunks(src, MAX_PAYLOAD_BYTES, chunk_rows)

            async def sender() -> None:
                nonlocal rows, requests
                for chunk in chunks:  # one shared generator: each sender takes the next chunk
                    body = await _post(session, url, chunk.body)
                    predictions = body.count(b"\n") + (not body.endswith(b"\n"))
                    if predictions != chunk.rows:
                        raise BenchError(f"direct: {predictions} predictions for {chunk.label}")
                    rows += chunk.rows
                    requests += 1

            cpu, started = meter.snapshot(), time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            elapsed, cpu = time.perf_counter() - started, meter.spent(cpu, meter.snapshot())
    _check_rows("direct", rows, source.rows)
    return Pass("direct", concurrency, rows, elapsed, requests, cpu)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> bytes:
    async with session.post(url, data=body, headers={"Content-Type": "text/csv"}) as response:
        payload = await response.read()
        if response.status != 200:
            raise BenchError(f"direct: HTTP {response.status}: {payload[:200]!r}")
        return payload


async def warm_up(backend: AwsBackend) -> None:
    """One small invocation: the runtime client is built and a connection opened before the clock starts."""
    await backend.invoke_endpoint(ENDPOINT, b"0,0,0,0,0,0,0,0,0,0,0,0,0\n", "text/csv")


async def jobman_pass(
    backend: AwsBackend, section: str, source: InputFile, dst: Path, chunk_rows: int, concurrency: int,
    meter: CpuMeter, watch: contextlib.AbstractContextManager[Any] | None = None,
) -> Pass:
    """invoke_stream from `source` into `dst` through `backend`; checks one output line per input row.

    `watch`, if given, is entered just around invoke_stream (the checks after it allocate too)."""
    invoke = functools.partial(backend.invoke_endpoint, ENDPOINT)
    with source.path.open("rb") as src, dst.open("wb") as out:
        cpu, started = meter.snapshot(), time.perf_counter()
        with watch or contextlib.nullcontext():
            summary = await invoke_stream(invoke, src, out, options(chunk_rows, concurrency))
        elapsed, cpu = time.perf_counter() - started, meter.spent(cpu, meter.snapshot())
    _check_rows(section, summary.rows, source.rows)
    _check_rows(f"{section} (output lines)", count_lines(dst), source.rows)
    return Pass(section, concurrency, summary.rows, elapsed, summary.chunks, cpu,
                summary.latency_p50_s * 1e3, summary.latency_p95_s * 1e3)


async def best_of(repeat: int, make: Callable[[], Awaitable[Pass]]) -> Pass:
    """The fastest of `repeat` runs: on a shared machine, the run least disturbed by other processes."""
    runs = [await make() for _ in range(repeat)]
    return max(runs, key=lambda run: run.rows_per_s)


async def jobman_section(
    url: str, section: str, source: InputFile, dst: Path, settings: Settings, meter: CpuMeter
) -> list[Pass]:
    backend = AwsBackend(name="local", region=REGION, endpoint_url=url, credentials=CREDENTIALS)
    try:
        await warm_up(backend)
        return [
            await best_of(settings.repeat, functools.partial(
                jobman_pass, backend, section, source, dst, settings.chunk_rows, c, meter))
            for c in CONCURRENCIES
        ]
    finally:
        await backend.aclose()


async def direct_section(url: str, source: InputFile, settings: Settings, meter: CpuMeter) -> list[Pass]:
    return [
        await best_of(settings.repeat, functools.partial(direct_pass, url, source, settings.chunk_rows, c, meter))
        for c in CONCURRENCIES
    ]


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def _check_rows(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise BenchError(f"{what}: {got} predictions for {expected} rows")


def check_predictions(booster: xgb.Booster, source: InputFile, predictions: Path) -> float:
    """Largest difference between the endpoint's predictions and Booster.predict on the same rows."""
    features = pd.read_csv(source.path, header=None, dtype=np.float32, engine="c").to_numpy()
    expected = booster.predict(xgb.DMatrix(features), iteration_range=scoring_range(booster))
    got = pd.read_csv(predictions, header=None, dtype=np.float64, engine="c").to_numpy()[:, 0]
    if got.shape != expected.shape:
        raise BenchError(f"{len(got)} predictions for {len(expected)} rows")
    worst = float(np.max(np.abs(got - expected))) if len(got) else 0.0
    if not worst <= PREDICTION_TOLERANCE:
        raise BenchError(f"predictions differ from Booster.predict by up to {worst:g} (> {PREDICTION_TOLERANCE:g})")
    return worst


# --- memory, each size in a fresh process ---


def current_rss_b() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0), so the peak covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_b(since_reset: bool) -> tuple[int, str]:
    if since_reset:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"


class MemoryWatch:
    """Peak Python allocations (tracemalloc) and peak RSS of this process over a `with` block."""

    def __enter__(self) -> MemoryWatch:
        self.rss_before_b = current_rss_b()
        self._reset = reset_peak_rss()
        tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _, self.tracemalloc_peak_b = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self.rss_peak_b, self.rss_peak_source = peak_rss_b(self._reset)


async def memory_probe(url: str, source: InputFile, dst: Path, chunk_rows: int, concurrency: int) -> MemoryProbe:
    """Child-process side: one invoke_stream, its memory watched; the client is warmed up before."""
    backend = AwsBackend(name="local", region=REGION, endpoint_url=url, credentials=CREDENTIALS)
    watch = MemoryWatch()
    try:
        await warm_up(backend)
        run = await jobman_pass(backend, "memory", source, dst, chunk_rows, concurrency, CpuMeter({}), watch)
    finally:
        await backend.aclose()
    return MemoryProbe(source.rows, run.elapsed_s, watch.tracemalloc_peak_b, watch.rss_before_b, watch.rss_peak_b,
                       watch.rss_peak_source)


def run_memory_probe(url: str, source: InputFile, dst: Path, chunk_rows: int, concurrency: int) -> MemoryProbe:
    command = [sys.executable, __file__, "--memory-probe", url, "--input", str(source.path),
               "--rows", str(source.rows), "--output", str(dst), "--chunk-rows", str(chunk_rows),
               "--concurrency", str(concurrency)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    if done.returncode != 0:
        raise BenchError(f"the memory probe for {source.rows} rows failed:\n{done.stderr[-2000:]}")
    return MemoryProbe(**json.loads(done.stdout.strip().splitlines()[-1]))


# --- report ---


def mib(size_b: float) -> str:
    return f"{size_b / (1 << 20):,.1f}"


CPU_COLUMNS = ("client", "server", "endpoint", "proxy", OTHERS)


def print_passes(passes: list[Pass], best_direct: float) -> None:
    print(f"{'section':<10} {'conc':>4} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'x c=1':>6} {'/direct':>8} "
          f"{'reqs':>6} {'p50 ms':>7} {'p95 ms':>7}   CPU s {'/'.join(CPU_COLUMNS)} (our cores busy)")
    base: dict[str, float] = {}
    for run in passes:
        base.setdefault(run.section, run.rows_per_s)
        p50 = f"{run.p50_ms:7.1f}" if run.p50_ms is not None else f"{'-':>7}"
        p95 = f"{run.p95_ms:7.1f}" if run.p95_ms is not None else f"{'-':>7}"
        cpu = "/".join(f"{run.cpu_s[name]:.1f}" if name in run.cpu_s else "-" for name in CPU_COLUMNS)
        busy = sum(v for k, v in run.cpu_s.items() if k != OTHERS) / run.elapsed_s
        print(f"{run.section:<10} {run.concurrency:>4} {run.rows:>10,} {run.elapsed_s:>8.2f} "
              f"{run.rows_per_s:>10,.0f} {run.rows_per_s / base[run.section]:>6.2f} "
              f"{run.rows_per_s / best_direct:>8.2f} {run.requests:>6,} {p50} {p95}   {cpu} ({busy:.2f})")


def print_interference(passes: list[Pass]) -> None:
    """Say how much CPU other processes took: the benchmark shares 2 cores with whatever else runs."""
    cores = os.cpu_count() or 1
    shares = [(run.cpu_s.get(OTHERS, 0.0) / (cores * run.elapsed_s), run) for run in passes]
    total = sum(run.cpu_s.get(OTHERS, 0.0) for run in passes) / (cores * sum(run.elapsed_s for run in passes))
    worst, run = max(shares, key=lambda item: item[0])
    print(f"other processes on this machine took {total:.0%} of its CPU during the passes "
          f"(at most {worst:.0%}, in {run.section} c={run.concurrency})"
          + ("; the numbers above are lower than on a quiet machine" if worst > 0.10 else ""))


def print_memory(probes: list[MemoryProbe], concurrency: int) -> None:
    print(f"\nmemory of the invoking process, jobman at concurrency {concurrency}, one fresh process per size:")
    source = probes[-1].rss_peak_source
    print(f"{'rows':>10} {'seconds':>8} {'tracemalloc peak MiB':>21} {'RSS before MiB':>15} "
          f"{'RSS peak MiB':>13} {'RSS growth MiB':>15}   (RSS peak: {source} over invoke_stream only)")
    for probe in probes:
        print(f"{probe.rows:>10,} {probe.elapsed_s:>8.2f} {mib(probe.tracemalloc_peak_b):>21} "
              f"{mib(probe.rss_before_b):>15} {mib(probe.rss_peak_b):>13} {mib(probe.rss_growth_b):>15}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_targets(direct: list[Pass], plain: list[Pass], latent: list[Pass], probes: list[MemoryProbe]) -> None:
    best_direct = max(direct, key=lambda p: p.rows_per_s)
    best_jobman = max(plain, key=lambda p: p.rows_per_s)
    scaling = latent[-1].rows_per_s / latent[0].rows_per_s
    gap = best_direct.rows_per_s / best_jobman.rows_per_s
    tm_ratio = probes[-1].tracemalloc_peak_b / max(1, probes[0].tracemalloc_peak_b)
    rss_ratio = probes[-1].rss_peak_b / max(1, probes[0].rss_peak_b)
    checks = [
        (scaling >= LATENCY_SCALING_TARGET,
         f"with {LATENCY_S * 1e3:.0f} ms latency, c={latent[-1].concurrency} / c={latent[0].concurrency} = "
         f"{scaling:.2f}x (target >= {LATENCY_SCALING_TARGET:g}x)"),
        (gap <= DIRECT_RATIO_TARGET,
         f"without latency, best direct (c={best_direct.concurrency}, {best_direct.rows_per_s:,.0f} rows/s) / "
         f"best jobman (c={best_jobman.concurrency}, {best_jobman.rows_per_s:,.0f} rows/s) = {gap:.2f}x "
         f"(target <= {DIRECT_RATIO_TARGET:g}x)"),
        (tm_ratio <= MEMORY_RATIO_TARGET,
         f"memory flat: tracemalloc peak {probes[-1].rows:,} / {probes[0].rows:,} rows = {tm_ratio:.2f}x, "
         f"RSS peak {rss_ratio:.2f}x (target <= {MEMORY_RATIO_TARGET:g}x)"),
    ]
    print("\ntargets:")
    for ok, text in checks:
        print(f"  {verdict(ok)}  {text}")


# --- the run ---


async def measure(url: str, home: Path, tmp: Path, source: InputFile, booster: xgb.Booster,
                  settings: Settings) -> tuple[list[Pass], list[Pass], list[Pass]]:
    processes = local_processes(home)
    meter = CpuMeter({"server": processes.server_pid, "endpoint": processes.endpoint_pid})
    direct = await direct_section(processes.endpoint_url, source, settings, meter)
    print(f"  direct done: best {max(p.rows_per_s for p in direct):,.0f} rows/s", flush=True)
    checked = tmp / "predictions-checked.csv"
    plain = await jobman_section(url, "jobman", source, checked, settings, meter)
    worst = check_predictions(booster, source, checked)
    print(f"  jobman done; its c={CONCURRENCIES[-1]} predictions match Booster.predict on all "
          f"{source.rows:,} rows (max |diff| {worst:.2g})", flush=True)
    with latency_proxy(url, LATENCY_S) as (proxy_url, proxy_pid):
        latent = await jobman_section(proxy_url, "+latency", source, tmp / "predictions.csv", settings,
                                      meter.with_process("proxy", proxy_pid))
    print("  +latency done", flush=True)
    return direct, plain, latent


def run(settings: Settings) -> int:
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    rows, chunk_rows = settings.rows, settings.chunk_rows
    with tempfile.TemporaryDirectory(prefix="jobman-bench-invoke-") as name:
        tmp = Path(name)
        home = tmp / "jobman-home"
        hermetic_environment(tmp, home)
        print(f"generating {rows:,} rows ...", flush=True)
        t0 = time.perf_counter()
        source = write_input(tmp / "input.csv", rows)
        generated_s = time.perf_counter() - t0
        booster = train_model()
        sizes = sorted({rows // 4, rows // 2, rows})
        inputs = [write_prefix(source, n, tmp / f"input-{n}.csv") for n in sizes[:-1]] + [source]
        with local_backend(home) as url:
            t0 = time.perf_counter()
            deploy(url, booster)
            print(f"endpoint InService in {time.perf_counter() - t0:.1f} s; measuring ...", flush=True)
            direct, plain, latent = asyncio.run(measure(url, home, tmp, source, booster, settings))
            probes = [run_memory_probe(url, part, tmp / "memory-out.csv", chunk_rows, CONCURRENCIES[-1])
                      for part in inputs]
    print(f"\ninput: {rows:,} rows x 13 features, {mib(source.size_b)} MiB ({source.size_b / rows:.1f} bytes a row), "
          f"generated in {generated_s:.1f} s; model: the notebook's XGBoost, {scoring_range(booster)[1]} trees "
          f"of depth <= {HYPERPARAMETERS['max_depth']} (early stopping)")
    print(f"chunk: {chunk_rows:,} rows a request (~{source.size_b / rows * chunk_rows / 1e3:.0f} kB), the same in "
          f"every pass; latency: {LATENCY_S * 1e3:.0f} ms a request, added by a FaultProxy process in front of "
          f"the local server; each pass: {_runs(settings.repeat)}; cores: {os.cpu_count()}; "
          f"load average before: {load_before:.2f}\n")
    passes = direct + plain + latent
    print_passes(passes, max(p.rows_per_s for p in direct))
    print_interference(passes)
    print_memory(probes, CONCURRENCIES[-1])
    print_targets(direct, plain, latent, probes)
    print(f"\nevery pass returned one prediction per row; total time {time.perf_counter() - started:.0f} s, "
          f"load average after: {os.getloadavg()[0]:.2f}")
    return 0  # a missed target is a finding, not a failure; a failed check raises BenchError


def _runs(repeat: int) -> str:
    return "one run" if repeat == 1 else f"the fastest of {repeat} runs"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help=f"rows to generate (default {DEFAULT_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run on {QUICK_ROWS:,} rows")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                        help=f"rows a request (default {DEFAULT_CHUNK_ROWS:,})")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each pass, the fastest reported: less noise on a shared machine (default 1)")
    # Internal: the child processes this script starts.
    parser.add_argument("--serve-proxy", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=LATENCY_S, help=argparse.SUPPRESS)
    parser.add_argument("--memory-probe", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCIES[-1], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.rows < 4 or args.chunk_rows < 1 or args.repeat < 1:
        parser.error("--rows must be at least 4, --chunk-rows and --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_proxy:
        return serve_proxy(args.serve_proxy, args.latency)
    if args.memory_probe:
        source = InputFile(args.input, args.rows, args.input.stat().st_size)
        probe = asyncio.run(memory_probe(args.memory_probe, source, args.output, args.chunk_rows, args.concurrency))
        print(json.dumps(asdict(probe)))
        return 0
    try:
        return run(Settings(args.rows, args.chunk_rows, args.repeat))
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
