"""Benchmark a hyperparameter sweep: trials in parallel on the local backend, and the calls a pass costs.

Part 1, local backend (real XGBoost training): the same sweep of N trials (default 24) run twice with
`jobman run`, each in a subprocess with its own JOBMAN_HOME and so its own local server:

    max_parallel = 1    one trial at a time
    max_parallel = 4    four at a time

Both files are examples/boston-sweep.toml with another name, `strategy = "random"` and a fixed seed, so both
make the same trials. The local server is started with JOBMAN_LOCAL_MAX_TRAINING=4 for both runs (its
default is the core count, which on 2 cores would hold the parallel run to 2 trainings at once; a run at
max_parallel = 1 never has more than one). Each server sits behind a counting proxy (tests/fault_proxy.py):
jobman finds its local server through `local/server.json`, so the URL there is pointed at the proxy once the
server answers, and every control-plane call `jobman run` makes is counted at the server's door, in order.

Printed: wall time of each run (whole `jobman run`: data, sweep, deploy, evaluation, teardown) and of its
sweep phase (first CreateTrainingJob to last ListTrainingJobs), and the ratios; then the calls of each
observation pass of the sweep. A pass starts with a ListTrainingJobs without NextToken; the trials it
observes are read from that List answer (in progress, or finished since the last pass). Naive is what a
script without a controller does: one DescribeTrainingJob per trial in flight per pass.
Targets: the parallel run's sweep phase at least 1.5x faster than the serial one's on 2 cores (two cores
cap what four parallel XGBoost processes gain, and a trial's start-up, process spawn and poll interval are
what overlap best), the whole run at least 1.3x (its data, deploy and evaluation steps do not overlap);
with 4 trials in flight, the same List calls per pass as with one, and at most half the naive Describes.

Part 2, moto's server behind the same counting proxy: M training jobs (default 500) named as a sweep names
its trials, tracked in a ledger as trial rows, all in flight (InProgress in moto's records; moto completes a
job at once by itself). One `Reconciler.reconcile` pass over all of them is counted: with nothing changed,
and with 5% of them finished since the last pass (each of those is described once, for its metrics);
then the naive pass, one Describe per job. Target: the steady pass costs ceil(M / 100) List pages.

Run from the repository root: `python bench/sweep.py [--trials 24] [--jobs 500] [--latency-ms 0] [--quick]`
(`--skip-local` runs part 2 alone).
Only 127.0.0.1 is used. A missed target is reported, not an error: the exit status is 1 only when a check
fails (a run fails, a pass sees the wrong statuses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.invoke import BenchError, hermetic_environment, kill_leftovers  # noqa: E402
from bench.reconcile import start_moto  # noqa: E402
from jobman.backends.local.daemon import ensure_running, stop_server  # noqa: E402
from jobman.backends.local.store import atomic_write_json, layout, read_json  # noqa: E402
from jobman.backends.sagemaker import PAGE_SIZE, AwsBackend  # noqa: E402
from jobman.clock import SystemClock  # noqa: E402
from jobman.kinds import Kind  # noqa: E402
from jobman.ledger.db import open_engine  # noqa: E402
from jobman.ledger.store import Ledger, Observation, Resource  # noqa: E402
from jobman.names import trial_name  # noqa: E402
from jobman.reconciler import Reconciler  # noqa: E402
from tests.fault_proxy import FaultProxy, operation_of  # noqa: E402
from tests.moto_server import ACCOUNT, REGION, Moto  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "boston-sweep.toml"
DEFAULT_TRIALS, QUICK_TRIALS = 24, 8
DEFAULT_JOBS, QUICK_JOBS = 500, 120
PARALLEL = (1, 4)
MAX_TRAINING = 4  # JOBMAN_LOCAL_MAX_TRAINING for both local servers
RUN_TIMEOUT_S = 900.0
SWEEP_TIME_TARGET = 1.5  # serial sweep phase over parallel sweep phase, at least
RUN_TIME_TARGET = 1.3  # the same for the whole `jobman run`
DESCRIBE_SHARE_TARGET = 0.5  # Describes per pass over the naive one-per-trial, at most
FINISHED_SHARE = 0.05  # of the moto jobs, finished between the two counted passes
TRAINING_OPS = ("ListTrainingJobs", "DescribeTrainingJob", "CreateTrainingJob")
RUNNING = ("InProgress", "Stopping")
MOTO_CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
MOTO_ROLE = f"arn:aws:iam::{ACCOUNT}:role/bench"


# --- counting at the server's door ---


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when the request arrived
    operation: str
    first_page: bool  # a List call without NextToken: a new pass starts
    statuses: dict[str, str] | None  # ListTrainingJobs answers: job name -> status


class RecordingProxy(FaultProxy):
    """The counting proxy, keeping every call in order too, with the statuses each ListTrainingJobs answered:
    passes and the trials each one observed are read from the wire, not from jobman's own counters."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.log: list[Call] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        operation = operation_of(request)
        first_page, statuses = True, None
        if operation == "ListTrainingJobs":
            body = await request.read()  # aiohttp keeps it: the forwarding below reads it again
            first_page = "NextToken" not in (json.loads(body) if body else {})
        response = await super()._handle(request)
        if operation == "ListTrainingJobs" and isinstance(response, web.Response) and response.status == 200:
            statuses = _listed_statuses(response)
        with self._lock:
            self.log.append(Call(at, operation, first_page, statuses))
        return response


def _listed_statuses(response: web.Response) -> dict[str, str]:
    payload = response.body if isinstance(response.body, bytes) else b""
    if response.headers.get("Content-Encoding") == "gzip":  # the proxy forwards bodies as they came
        payload = gzip.decompress(payload)
    answer = json.loads(payload)
    return {s["TrainingJobName"]: s["TrainingJobStatus"] for s in answer.get("TrainingJobSummaries", [])}


@dataclass
class ObservedPass:
    in_flight: int  # trials the pass observed: running, or finished since the previous pass
    calls: Counter[str] = field(default_factory=Counter)


def observation_passes(log: list[Call]) -> list[ObservedPass]:
    """The sweep's passes as the server saw them. Each counts every call up to the next pass (the List pages,
    the Describes of what changed, the Creates of new trials, made in the same pass, anything else); after
    the last one, only its training-job calls: deploying the best trial is not part of the sweep."""
    passes: list[ObservedPass] = []
    finished_seen: set[str] = set()
    last_list = max((i for i, c in enumerate(log) if c.operation == "ListTrainingJobs"), default=-1)
    for i, call in enumerate(log):
        if call.operation == "ListTrainingJobs" and call.first_page:
            statuses = call.statuses or {}
            running = {n for n, s in statuses.items() if s in RUNNING}
            finished_now = {n for n, s in statuses.items() if s not in RUNNING} - finished_seen
            finished_seen |= finished_now
            passes.append(ObservedPass(len(running) + len(finished_now)))
        if passes and (i <= last_list or call.operation in TRAINING_OPS):
            passes[-1].calls[call.operation] += 1
    for p in passes:  # a trial created in the pass was in flight too, though not yet listed
        p.in_flight += p.calls["CreateTrainingJob"]
    return passes


def sweep_phase_s(log: list[Call]) -> float:
    """From the first CreateTrainingJob to the last ListTrainingJobs: the sweep itself."""
    creates = [c.at for c in log if c.operation == "CreateTrainingJob"]
    lists = [c.at for c in log if c.operation == "ListTrainingJobs"]
    return max(lists) - min(creates) if creates and lists else math.nan


# --- part 1: the local backend ---


@dataclass(frozen=True)
class LocalRun:
    parallel: int
    wall_s: float
    sweep_s: float
    passes: list[ObservedPass]
    calls: Counter[str]


def write_experiment(folder: Path, name: str, parallel: int, trials: int) -> Path:
    """examples/boston-sweep.toml under another name, random search with a fixed seed, `parallel` at a time."""
    text = EXAMPLE.read_text()
    for pattern, value in ((r'^name = "[^"]*"', f'name = "{name}"'),
                           (r'^strategy = "[^"]*"', 'strategy = "random"'),
                           (r"^max_trials = \d+", f"max_trials = {trials}"),
                           (r"^max_parallel = \d+", f"max_parallel = {parallel}")):
        text, count = re.subn(pattern, value, text, flags=re.MULTILINE)
        if count == 0:
            raise BenchError(f"{EXAMPLE.name} no longer has a line like {pattern!r}")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def point_at(home: Path, url: str) -> None:
    """Make jobman find `home`'s local server at `url` (the proxy). The server writes server.json once, at
    start; the health check behind it still reaches the server (through the proxy) and finds its pid."""
    where = layout(home)
    info = read_json(where.server_json)
    if not isinstance(info, dict):
        raise BenchError(f"no server.json in {where.root}")
    atomic_write_json(where.server_json, {**info, "url": url})


def jobman(args: list[str], env: dict[str, str], cwd: Path, log: Path, timeout_s: float) -> None:
    with log.open("ab") as out:
        done = subprocess.run([sys.executable, "-m", "jobman", *args], env=env, cwd=cwd, stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise BenchError(f"`jobman {' '.join(args)}` exited with {done.returncode}:\n{tail}")


def run_local(tmp: Path, parallel: int, trials: int) -> LocalRun:
    name = f"bench-sweep-p{parallel}"
    folder = tmp / name
    folder.mkdir()
    home, log = folder / "home", folder / "jobman.log"
    config = write_experiment(folder, name, parallel, trials)
    env = {**os.environ, "JOBMAN_HOME": str(home), "JOBMAN_LOCAL_MAX_TRAINING": str(MAX_TRAINING)}
    os.environ.update(JOBMAN_HOME=str(home), JOBMAN_LOCAL_MAX_TRAINING=str(MAX_TRAINING))  # the server inherits
    try:
        url = ensure_running(home, idle_timeout_s=600)
        proxy = RecordingProxy(url)  # not `as`: FaultProxy.__enter__ is typed to return a plain FaultProxy
        with proxy:
            point_at(home, proxy.url)
            started = time.perf_counter()
            jobman(["run", str(config)], env, folder, log, RUN_TIMEOUT_S)
            wall_s = time.perf_counter() - started
            with proxy._lock:
                calls_log = list(proxy.log)
                calls = Counter(proxy.calls)
            jobman(["local", "stop", "--endpoints"], env, folder, log, 120)
    finally:
        stop_server(home, stop_endpoints=True)  # nothing left when the stop above ran; the backstop otherwise
        kill_leftovers(home)
    print(f"  max_parallel={parallel}: {wall_s:.1f} s", flush=True)
    return LocalRun(parallel, wall_s, sweep_phase_s(calls_log), observation_passes(calls_log), calls)


@dataclass(frozen=True)
class PassFigures:
    in_flight: int
    passes: int
    lists: float  # per pass
    describes: float
    creates: float
    other: float

    @property
    def observing(self) -> float:  # the calls that observe: List pages and Describes
        return self.lists + self.describes


def figures(passes: list[ObservedPass], in_flight: int) -> PassFigures | None:
    chosen = [p for p in passes if p.in_flight == in_flight]
    if not chosen:
        return None

    def mean(op: str) -> float:
        return sum(p.calls[op] for p in chosen) / len(chosen)

    other = sum(sum(p.calls.values()) for p in chosen) / len(chosen) - sum(map(mean, TRAINING_OPS))
    return PassFigures(in_flight, len(chosen), mean("ListTrainingJobs"), mean("DescribeTrainingJob"),
                       mean("CreateTrainingJob"), other)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_local(runs: dict[int, LocalRun], trials: int) -> None:
    serial, parallel = runs[1], runs[4]
    print(f"\npart 1: {trials}-trial random sweep on the local backend, JOBMAN_LOCAL_MAX_TRAINING={MAX_TRAINING}, "
          f"{os.cpu_count()} cores\n")
    print(f"{'max_parallel':<14}{'run s':>8}{'sweep s':>9}{'passes':>8}{'List':>6}{'Describe':>10}{'Create':>8}")
    for run in runs.values():
        print(f"{run.parallel:<14}{run.wall_s:>8.1f}{run.sweep_s:>9.1f}{len(run.passes):>8}"
              f"{run.calls['ListTrainingJobs']:>6}{run.calls['DescribeTrainingJob']:>10}"
              f"{run.calls['CreateTrainingJob']:>8}")
    run_ratio, sweep_ratio = serial.wall_s / parallel.wall_s, serial.sweep_s / parallel.sweep_s
    print(f"\nratio 1/4: run {run_ratio:.2f}x, sweep phase {sweep_ratio:.2f}x")

    print("\ncalls per observation pass (training-job calls, counted at the local server)")
    print(f"{'max_parallel':<14}{'in flight':>10}{'passes':>8}{'List':>7}{'Describe':>10}{'Create':>8}"
          f"{'other':>7}{'naive Describe':>16}")
    rows: dict[int, PassFigures] = {}
    for run in runs.values():
        found = figures(run.passes, run.parallel)
        if found is None:
            continue
        rows[run.parallel] = found
        print(f"{run.parallel:<14}{found.in_flight:>10}{found.passes:>8}{found.lists:>7.2f}{found.describes:>10.2f}"
              f"{found.creates:>8.2f}{found.other:>7.2f}{found.in_flight:>16}")
    for run in runs.values():
        observing = sum(p.calls["ListTrainingJobs"] + p.calls["DescribeTrainingJob"] for p in run.passes)
        naive = sum(p.in_flight for p in run.passes)
        print(f"max_parallel={run.parallel}: {observing} observing calls over the sweep (naive {naive}), "
              f"{run.calls['DescribeTrainingJob'] / max(run.calls['CreateTrainingJob'], 1):.2f} Describe per trial")
    print(f"\ntargets: sweep phase >= {SWEEP_TIME_TARGET}x {verdict(sweep_ratio >= SWEEP_TIME_TARGET)}; "
          f"whole run >= {RUN_TIME_TARGET}x {verdict(run_ratio >= RUN_TIME_TARGET)}")
    if 1 in rows and 4 in rows:
        four, one = rows[4], rows[1]
        share = four.describes / four.in_flight
        print(f"targets: List/pass with 4 in flight = with 1 ({four.lists:.2f} vs {one.lists:.2f}) "
              f"{verdict(four.lists <= one.lists)}; Describe/pass <= {DESCRIBE_SHARE_TARGET:.0%} of naive "
              f"({share:.0%}) {verdict(share <= DESCRIBE_SHARE_TARGET)}")
    else:
        print("targets: calls per pass MISS (no pass saw 1 or 4 trials in flight)")


# --- part 2: moto ---


def create_jobs(moto_url: str, names: list[str]) -> None:
    """Straight to moto, not through the proxy: setting up is not what is measured."""
    sm = boto3.client("sagemaker", endpoint_url=moto_url, region_name=REGION, **MOTO_CREDENTIALS)
    for name in names:
        sm.create_training_job(
            TrainingJobName=name, RoleArn=MOTO_ROLE,
            AlgorithmSpecification={"TrainingImage": "xgboost", "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": "s3://bench/out"},
            ResourceConfig={"InstanceType": "ml.m4.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
            StoppingCondition={"MaxRuntimeInSeconds": 86400},
        )


def set_status(moto: Moto, names: list[str], status: str) -> None:
    """moto's own records, in this process: it completes a job at once, a sweep's trials run for a while."""
    jobs = moto.sagemaker.training_jobs
    for name in names:
        jobs[name].training_job_status = status


async def track(ledger: Ledger, names: list[str]) -> list[Resource]:
    """Trial rows as a sweep leaves them while its trials run: number and parameters in details, InProgress."""
    clock = SystemClock()
    exp = await ledger.experiment("bench-sweep", create_at=clock.now())
    assert exp is not None
    run = await ledger.start_run(exp.id, digest="bench", backend="sagemaker", region=REGION, config_path="-",
                                 at=clock.now())
    rows = []
    created = clock.now() - timedelta(minutes=1)
    for number, name in enumerate(names, start=1):
        details = {"trial": number, "params": {"eta": 0.1, "max_depth": 5}, "objective": "validation:rmse",
                   "direction": "minimize"}
        row = await ledger.add_resource(run.id, Kind.TRAINING_JOB, name, {}, at=created, details=details)
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}"
        rows.append(await ledger.record(row.id, Observation(status="InProgress", arn=arn), at=clock.now()))
    return rows


@dataclass(frozen=True)
class CountedPass:
    what: str
    calls: Counter[str]
    seconds: float


async def measure_moto(moto: Moto, proxy: FaultProxy, names: list[str]) -> list[CountedPass]:
    finishing = names[:max(1, round(len(names) * FINISHED_SHARE))]
    counted: list[CountedPass] = []

    async def counted_pass(what: str, work: Any) -> Any:
        proxy.reset_counts()
        start = time.perf_counter()
        outcome = await work
        counted.append(CountedPass(what, Counter(proxy.calls), time.perf_counter() - start))
        return outcome

    with tempfile.TemporaryDirectory() as home:
        os.environ["JOBMAN_HOME"] = home
        async with open_engine() as engine:
            ledger = Ledger(engine)
            rows = await track(ledger, names)
            backend = AwsBackend(name="sagemaker", region=REGION, endpoint_url=proxy.url,
                                 credentials=MOTO_CREDENTIALS)
            reconciler = Reconciler(ledger, backend, SystemClock())
            try:
                # As a sweep's pass calls it: every trial in flight, create=True (none is missing here).
                result = await counted_pass("reconcile, none changed", reconciler.reconcile(rows, create=True))
                check(result.errors, [result.get(r).status for r in rows], {"InProgress": len(names)})
                rows = [result.get(r) for r in rows]
                set_status(moto, finishing, "Completed")
                result = await counted_pass(f"reconcile, {len(finishing)} finished",
                                            reconciler.reconcile(rows, create=True))
                check(result.errors, [result.get(r).status for r in rows],
                      {"InProgress": len(names) - len(finishing), "Completed": len(finishing)})
                await counted_pass("naive: Describe each", naive_pass(backend, names))
            finally:
                await backend.aclose()
    return counted


def check(errors: list[Any], statuses: list[str], expected: dict[str, int]) -> None:
    if errors:
        raise BenchError(f"the pass had errors: {errors[:3]}")
    if Counter(statuses) != Counter(expected):
        raise BenchError(f"the pass saw {dict(Counter(statuses))}, expected {expected}")


async def naive_pass(backend: AwsBackend, names: list[str]) -> None:
    """What a script without a controller does each pass: Describe every job in flight, one after another."""
    for name in names:
        await backend.describe(Kind.TRAINING_JOB, name)


def run_moto(jobs: int, latency_ms: float) -> list[CountedPass]:
    server, url = start_moto()
    try:
        moto = Moto(url)
        names = [trial_name("bench-sweep", 1, k) for k in range(1, jobs + 1)]
        print(f"  creating {jobs} training jobs on moto ...", flush=True)
        create_jobs(url, names)
        set_status(moto, names, "InProgress")
        with FaultProxy(url) as proxy:
            proxy.faults.latency_s = latency_ms / 1000
            return asyncio.run(measure_moto(moto, proxy, names))
    finally:
        server.stop()  # type: ignore[attr-defined]


def report_moto(passes: list[CountedPass], jobs: int, latency_ms: float) -> None:
    print(f"\npart 2: {jobs} trials in flight on moto's server, {latency_ms:.0f} ms added per API call\n")
    print(f"{'pass':<28}{'List':>6}{'Describe':>10}{'other':>7}{'calls':>7}{'wall s':>8}")
    for p in passes:
        lists, describes = p.calls["ListTrainingJobs"], p.calls["DescribeTrainingJob"]
        other = sum(p.calls.values()) - lists - describes
        print(f"{p.what:<28}{lists:>6}{describes:>10}{other:>7}{sum(p.calls.values()):>7}{p.seconds:>8.2f}")
    steady, naive = sum(passes[0].calls.values()), sum(passes[-1].calls.values())
    pages = math.ceil(jobs / PAGE_SIZE)
    print(f"\nratio naive/steady pass: {naive / max(steady, 1):.0f}x fewer calls")
    print(f"target: steady pass = {pages} List pages ({jobs}/{PAGE_SIZE}) {verdict(steady == pages)}")


# --- main ---


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="jobman-bench-sweep-") as tmp:
        path = Path(tmp)
        hermetic_environment(path, path / "home")
        yield path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=None, help=f"trials of each sweep (default {DEFAULT_TRIALS})")
    parser.add_argument("--jobs", type=int, default=None, help=f"moto training jobs in flight (default {DEFAULT_JOBS})")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every moto API call (default 0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_TRIALS} trials, {QUICK_JOBS} moto jobs")
    parser.add_argument("--skip-local", action="store_true", help="part 2 only")
    args = parser.parse_args()
    trials = args.trials or (QUICK_TRIALS if args.quick else DEFAULT_TRIALS)
    jobs = args.jobs or (QUICK_JOBS if args.quick else DEFAULT_JOBS)

    try:
        with workspace() as tmp:
            local: dict[int, LocalRun] = {}
            if not args.skip_local:
                print(f"part 1: {trials} trials, max_parallel {' and '.join(map(str, PARALLEL))} ...", flush=True)
                for parallel in PARALLEL:
                    local[parallel] = run_local(tmp, parallel, trials)
            print("part 2:", flush=True)
            moto_passes = run_moto(jobs, args.latency_ms)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    if local:
        report_local(local, trials)
    report_moto(moto_passes, jobs, args.latency_ms)


if __name__ == "__main__":
    main()
