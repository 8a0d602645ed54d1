"""`jobman run` with input that used to crash after the ledger or a backend was touched, in its own process: one
`Error:` line naming the file and the key, exit 2, no traceback, and nothing created (no ledger, no local server,
no output folder)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import jobman, write_experiment

Setup = Callable[[Path], Path]  # writes the experiment (and what it needs) into a folder, returns its path


def replaced(replace: dict[str, str]) -> Setup:
    return lambda folder: write_experiment(folder / "bad.toml", replace)


def output_dir_is_a_file(folder: Path) -> Path:
    (folder / "taken").write_text("a file, not a folder\n")
    return write_experiment(folder / "bad.toml", {"[evaluation]": '[evaluation]\noutput_dir = "taken/out"'})


def infinite_feature(folder: Path) -> Path:
    (folder / "table.csv").write_text("MEDV,A\n" + "1,2\n" * 6 + "1,inf\n" + "1,2\n" * 6)
    return write_experiment(folder / "bad.toml", {'source = "boston"': 'source = "table.csv"'})


def source_is_a_symlink_loop(folder: Path) -> Path:
    os.symlink(folder / "table.csv", folder / "table.csv")
    return write_experiment(folder / "bad.toml", {'source = "boston"': 'source = "table.csv"'})


def nested_too_deeply(folder: Path) -> Path:
    path = folder / "bad.toml"
    path.write_text("a = " + "[" * 200_000)
    return path


CASES: list[tuple[Setup, str]] = [
    (replaced({'ttl = "1h"': "ttl = nan"}), "endpoint.ttl: expected a duration"),
    (replaced({'max_runtime = "24h"': 'max_runtime = "99999999d"'}),
     "training.max_runtime: expected a duration like '90s', '30m', '1h' or '2d' from 1s to 28d"),
    (replaced({"seed = 0": "seed = -1"}), "data.seed: expected an integer from 0 to 4294967295"),
    (output_dir_is_a_file, "evaluation.output_dir: expected a folder (or a path where one can be made), but taken "),
    (infinite_feature, "data.source: column 'A' has the value inf in data row 7"),
    (source_is_a_symlink_loop, "data.source: cannot resolve 'table.csv'"),
    (replaced({'objective = "reg:squarederror"': 'objective = "bogus:thing"'}),
     "training.hyperparameters.objective: expected one of "),
    (replaced({"max_depth = 5": "max_depht = 5"}),
     "training.hyperparameters.max_depht: unknown key; did you mean 'max_depth'?"),
    (replaced({"num_round = 200": "num_round = -3"}), "training.hyperparameters.num_round: expected an integer"),
    (replaced({"max_payload_bytes = 5_000_000": "max_payload_bytes = 10"}),
     "evaluation.max_payload_bytes: expected at least "),
    (replaced({'name = "boston-xgboost"': 'nmae = "boston-xgboost"'}), "nmae: unknown key; did you mean 'name'?"),
    (replaced({'name = "boston-xgboost"': 'name = "' + "x" * 10_000_000 + '"'}), "(10,000,000 characters)"),
    (nested_too_deeply, "not valid TOML for jobman: arrays or tables nested too deeply"),
]


@pytest.mark.parametrize(("setup", "message"), CASES)
def test_bad_input_is_one_line_and_creates_nothing(
    tmp_path: Path, jobman_home: Path, setup: Setup, message: str
) -> None:
    path = setup(tmp_path)
    before = sorted(tmp_path.iterdir())
    done = jobman("run", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"Error: {path}: ") and done.stderr.count("\n") == 1, done.stderr[:500]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr) < len(str(path)) + 400  # a value is echoed cut, never whole
    # Nothing made: no output folder, no ledger, and the local server was never started.
    assert sorted(tmp_path.iterdir()) == before
    assert not (jobman_home / "ledger.db").exists()
    assert not (jobman_home / "local" / "server.json").exists()
    status = jobman("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["experiments"] == []
