"""`jobman status` and `jobman --help` start fast: heavy libraries stay off their paths (bench/cli.py times them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aioboto3", "aiobotocore", "botocore", "pandas", "sklearn", "matplotlib", "xgboost", "alembic", "numpy")

PROBE = """
import gc, json, runpy, sys
sys.argv = ["jobman", *ARGS]
try:
    runpy.run_module("jobman", run_name="__main__")
except SystemExit as exit:
    code = exit.code
heavy = [name for name in HEAVY if name in sys.modules]
print(json.dumps({"code": code, "heavy": heavy, "collector": gc.isenabled()}), file=sys.stderr)
"""


def modules_loaded(*args: str) -> dict[str, object]:
    code = PROBE.replace("ARGS", repr(list(args))).replace("HEAVY", repr(HEAVY))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("args", [("--help",), ("status",), ("status", "--json"), ("run", "--help")])
def test_heavy_libraries_stay_off_the_fast_paths(args: tuple[str, ...], jobman_home: Path) -> None:
    subprocess.run([sys.executable, "-m", "jobman", "db", "upgrade"], check=True, capture_output=True)
    loaded = modules_loaded(*args)
    assert loaded["code"] in (0, None)
    assert loaded["heavy"] == []


@pytest.mark.parametrize(("args", "collecting"), [(("status",), False), (("db", "current"), True)])
def test_only_a_quick_command_runs_without_the_collector(
    args: tuple[str, ...], collecting: bool, jobman_home: Path
) -> None:
    """Start-up runs with the cyclic garbage collector off (jobman/__main__.py); any command that may run long
    turns it back on, so that a run of hours does not gather cyclic garbage."""
    subprocess.run([sys.executable, "-m", "jobman", "db", "upgrade"], check=True, capture_output=True)
    loaded = modules_loaded(*args)
    assert loaded["code"] in (0, None)
    assert loaded["collector"] is collecting
