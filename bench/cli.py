"""Benchmark: how long `jobman status` and `jobman --help` take to start, against the floor each stands on.

`jobman status` reads the ledger through SQLAlchemy's async engine, which the design mandates, so its floor
is `python -c "import sqlalchemy.ext.asyncio"`; `jobman --help` is typer and rich, so its floor is
`python -c "import typer, rich.console"`. Each command runs in a fresh interpreter, contenders interleaved
in one run, best of N (the least disturbed run) and median. Targets: status at most 1.3x its floor, and
--help at most 1.3x its floor. Most of jobman's margin comes from starting with the cyclic garbage collector
off (jobman/__main__.py): a reference line shows the floor started that way too. Runs against an empty,
already migrated ledger in a temporary JOBMAN_HOME.

    python bench/cli.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.3

CONTENDERS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import sqlalchemy.ext.asyncio": [sys.executable, "-c", "import sqlalchemy.ext.asyncio"],
    "import typer, rich.console": [sys.executable, "-c", "import typer, rich.console"],
    # For reference, not a target: the floor started as jobman starts (collector off, frozen at exit; see
    # jobman/__main__.py), which shows what jobman itself adds on top of the ORM.
    "  same, collector as jobman": [sys.executable, "-c", "import gc; gc.disable(); import sqlalchemy.ext.asyncio; "
                                    "gc.freeze()"],
    "jobman status": [sys.executable, "-m", "jobman", "status"],
    "jobman --help": [sys.executable, "-m", "jobman", "--help"],
}
RATIOS = [("jobman status", "import sqlalchemy.ext.asyncio"), ("jobman --help", "import typer, rich.console")]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobman-bench-cli-") as home:
        env = {**os.environ, "JOBMAN_HOME": home, "COLUMNS": "80"}
        subprocess.run([sys.executable, "-m", "jobman", "db", "upgrade"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        assert (Path(home) / "ledger.db").exists()
        for command in CONTENDERS.values():  # warm the file cache and the bytecode
            timed(command, env)
        samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for _ in range(args.runs):
            for name, command in CONTENDERS.items():
                samples[name].append(timed(command, env))
    print(f"{'':32} {'best':>8} {'median':>8}")
    for name, values in samples.items():
        print(f"{name:32} {min(values) * 1000:7.0f}ms {statistics.median(values) * 1000:7.0f}ms")
    same = min(samples["jobman status"]) / min(samples["  same, collector as jobman"])
    print(f"(for reference: jobman status / the same import started as jobman starts: {same:.2f}x)")
    missed = 0
    for contender, floor in RATIOS:
        ratio = min(samples[contender]) / min(samples[floor])
        verdict = "PASS" if ratio <= TARGET else "MISS"
        missed += verdict == "MISS"
        print(f"{contender} / {floor}: {ratio:.2f}x (best of {args.runs}; target <= {TARGET}x) {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
