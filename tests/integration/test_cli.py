"""The CLI as a user meets it: bad input is one line, exit 2, no traceback, and the ledger unchanged."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import jobman, write_experiment


def ledger_dump(home: Path) -> list[str]:
    path = home / "ledger.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize(("replace", "message"), [
    ({"seed = 0": "seed = 0.5"}, "data.seed: expected an integer, got 0.5"),
    ({'ttl = "1h"': 'ttl = "forever"'}, "endpoint.ttl: expected a duration"),
    ({'source = "boston"': 'source = "missing.csv"'}, "data.source: no CSV file at"),
    ({'target = "MEDV"': 'target = "PRICE"'}, "data.target: column 'PRICE' is not in the table"),
    ({"[evaluation]": "[evaluation]\nspeed = 3"}, "evaluation.speed: unknown key"),
])
def test_bad_input(tmp_path: Path, jobman_home: Path, replace: dict[str, str], message: str) -> None:
    # A ledger with history in it, which the bad run must leave exactly as it was.
    subprocess.run([sys.executable, "-m", "jobman", "db", "upgrade"], check=True, capture_output=True)
    before = ledger_dump(jobman_home)
    path = write_experiment(tmp_path / "bad.toml", replace)
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"Error: {path}: ")
    assert message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert ledger_dump(jobman_home) == before


def test_missing_file_and_help(tmp_path: Path) -> None:
    done = jobman("run", "nope.toml", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "Error: nope.toml: no such file\n")
    for command in ("run", "status", "db", "local", "invoke", "reconcile", "gc", "stop"):
        shown = jobman(command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and "Usage" in shown.stdout, command


@pytest.mark.parametrize("args", [[], ["db"], ["local"]])
def test_a_command_group_alone_shows_its_help(tmp_path: Path, args: list[str]) -> None:
    done = jobman(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("Usage: ") and "Error" not in done.stderr and "Commands:" in done.stderr


def test_status_on_an_empty_ledger(tmp_path: Path) -> None:
    done = jobman("status", "--json", cwd=tmp_path)
    assert done.returncode == 0
    assert '"experiments": []' in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["stop", "ghost"], "Error: experiment 'ghost' is not in the ledger (known: none)\n"),
    (["gc", "--every", "often"], "Error: --every: expected a duration like '30s', '5m' or '1h', got 'often'\n"),
    (["reconcile", "--every", "-1m"], "Error: --every: expected a duration like '30s', '5m' or '1h', got '-1m'\n"),
    (["invoke", "ep", "missing.csv"], "Error: missing.csv: no such file\n"),
    (["invoke", "ep", "-", "--concurrency", "0"], "Error: concurrency must be at least 1, not 0\n"),
])
def test_bad_command_input(tmp_path: Path, jobman_home: Path, args: list[str], message: str) -> None:
    subprocess.run([sys.executable, "-m", "jobman", "db", "upgrade"], check=True, capture_output=True)
    before = ledger_dump(jobman_home)
    done = jobman(*args, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, message)
    assert ledger_dump(jobman_home) == before


@pytest.mark.parametrize(("args", "words"), [
    (["gc", "--backend", "azure"], ("--backend", "'azure' is not one of 'local', 'sagemaker'")),
    (["invoke", "ep"], ("Missing argument", "INPUT.csv")),
    (["status", "--bogus"], ("No such option", "--bogus")),
    (["nonsense"], ("No such command", "nonsense")),
])
def test_a_command_line_that_does_not_parse_is_one_line(
    tmp_path: Path, args: list[str], words: tuple[str, ...]
) -> None:
    """typer's own checks, worded by click (the wording varies a little between click releases)."""
    done = jobman(*args, cwd=tmp_path)
    [line] = done.stderr.splitlines()
    assert done.returncode == 2 and line.startswith("Error: ") and all(w in line for w in words), done.stderr
