"""Inputs that used to pass the checks and fail later, after the ledger or a backend was touched: each is now one
line naming the file and the key, raised by `load_experiment` or `check_inputs`, with nothing created."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from jobman.config import load_experiment
from jobman.dataprep import load_table, prepare
from jobman.durations import MAX_DURATION_S, parse_duration_s
from jobman.echo import ECHO_CHARS
from jobman.errors import ConfigError
from jobman.run import check_inputs
from jobman.xgboost_hyperparameters import HyperparameterError, parse_hyperparameters
from tests.conftest import EXAMPLE, write_experiment
from tests.unit.test_local_xgb_params import BAD_HYPERPARAMETERS

HYPERPARAMETER_BLOCK = EXAMPLE.read_text().split("[training.hyperparameters]\n")[1].split("\n\n")[0]
TABLE_HEADER = "MEDV,A,B\n"


def refusal(path: Path) -> str:
    """The one-line message `check_inputs` refuses the experiment at `path` with."""
    with pytest.raises(ConfigError) as info:
        check_inputs(load_experiment(path))
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text, text
    return text


# Durations, at the source: what parse_duration_s returns is finite, positive and fits a datetime.

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", 10**400, "9" * 400 + "s",
                                   "999999999d", MAX_DURATION_S + 1])
def test_a_duration_is_finite_and_representable(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(value)  # type: ignore[arg-type]


def test_the_longest_duration_is_accepted() -> None:
    assert parse_duration_s(MAX_DURATION_S) == MAX_DURATION_S
    assert parse_duration_s("28d") == 2_419_200


# Hyperparameters: the controller refuses what the training job would, naming the same hyperparameter.

@pytest.mark.parametrize("raw", [raw for raw, _ in BAD_HYPERPARAMETERS])
def test_the_controller_refuses_what_the_training_job_would(tmp_path: Path, raw: dict[str, str]) -> None:
    with pytest.raises(HyperparameterError) as job:
        parse_hyperparameters(raw)
    table = "\n".join(f'{name} = "{value}"' for name, value in raw.items())
    path = write_experiment(tmp_path / "x.toml", {HYPERPARAMETER_BLOCK: table})
    assert f": training.hyperparameters.{job.value.name}: " in refusal(path)


def test_the_example_hyperparameters_pass(tmp_path: Path) -> None:
    check_inputs(load_experiment(EXAMPLE))


# The shape of the file.

def test_deep_nesting_is_one_line_naming_the_file(tmp_path: Path) -> None:
    for body in ("a = " + "[" * 200_000, "a = " + "{b = " * 200_000):
        path = tmp_path / "deep.toml"
        path.write_text(body)
        with pytest.raises(ConfigError, match=r"deep.toml: not valid TOML for jobman: .* nested too deeply$"):
            load_experiment(path)


def test_a_table_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\ndata = 3\n[training.hyperparameters]\nnum_round = 1\n')
    with pytest.raises(ConfigError, match=r"x.toml: data: expected a table, got 3$"):
        load_experiment(path)


def test_a_huge_value_is_cut_in_the_message(tmp_path: Path) -> None:
    huge = "x" * 10_000_000
    path = write_experiment(tmp_path / "x.toml", {'name = "boston-xgboost"': f'name = "{huge}"'})
    text = refusal(path)
    assert text.endswith(f"got '{'x' * ECHO_CHARS}'… (10,000,000 characters)")
    assert len(text) < len(str(path)) + 200


def test_a_huge_unknown_key_is_cut_in_the_message(tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "x.toml", {"[data]": "[data]\n" + "k" * 100_000 + " = 1"})
    text = refusal(path)
    assert "unknown key" in text and "(100,005 characters)" in text and len(text) < len(str(path)) + 200


# Places on disk: checked without creating anything.

@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder is tmp_path, where output_dir is resolved."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def with_output_dir(folder: Path, output_dir: str) -> Path:
    return write_experiment(folder / "x.toml", {"[evaluation]": f"[evaluation]\noutput_dir = {json.dumps(output_dir)}"})


@pytest.mark.parametrize("output_dir", ["a-file", "a-file/sub/dir", "broken-link", "broken-link/sub", "loop/sub"])
def test_an_output_dir_that_cannot_be_made(in_tmp: Path, output_dir: str) -> None:
    (in_tmp / "a-file").write_text("")
    os.symlink(in_tmp / "nowhere", in_tmp / "broken-link")
    os.symlink(in_tmp / "loop", in_tmp / "loop")
    path = with_output_dir(in_tmp, output_dir)
    before = sorted(in_tmp.iterdir())
    text = refusal(path)
    assert "evaluation.output_dir: expected a folder (or a path where one can be made), but " in text
    assert text.endswith(" exists and is not a folder")
    assert sorted(in_tmp.iterdir()) == before


def test_etc_hostname_is_not_an_output_dir(in_tmp: Path) -> None:
    assert "but /etc/hostname exists and is not a folder" in refusal(with_output_dir(in_tmp, "/etc/hostname"))


@pytest.mark.parametrize("output_dir", ["jobman-output", "new/deeper/still", ".", "existing", "link-to-existing/new"])
def test_an_output_dir_that_can_be_made_is_not_made_yet(in_tmp: Path, output_dir: str) -> None:
    (in_tmp / "existing").mkdir()
    os.symlink(in_tmp / "existing", in_tmp / "link-to-existing")
    check_inputs(load_experiment(with_output_dir(in_tmp, output_dir)))
    assert sorted(p.name for p in in_tmp.iterdir()) == ["existing", "link-to-existing", "x.toml"]
    assert list((in_tmp / "existing").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_dir_in_a_read_only_folder(in_tmp: Path) -> None:
    locked = in_tmp / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert "no write access to" in refusal(with_output_dir(in_tmp, "locked/out"))
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("output_dir", ["a\0b", "x" * 5000])
def test_an_output_dir_no_system_takes(in_tmp: Path, output_dir: str) -> None:
    assert ": evaluation.output_dir: " in refusal(with_output_dir(in_tmp, output_dir))


def with_source(folder: Path, source: str) -> Path:
    return write_experiment(folder / "x.toml", {'source = "boston"': f"source = {json.dumps(source)}"})


def test_a_data_source_that_is_a_symlink_loop(tmp_path: Path) -> None:
    os.symlink(tmp_path / "table.csv", tmp_path / "table.csv")
    assert ": data.source: cannot resolve 'table.csv': " in refusal(with_source(tmp_path, "table.csv"))


@pytest.mark.parametrize(("source", "message"), [
    ("a\0b", "data.source: cannot resolve 'a\\x00b'"),
    ("x" * 5000, "data.source: cannot use "),
    ("line\nfeed.csv", "data.source: no CSV file at '"),
])
def test_a_data_source_no_system_takes(tmp_path: Path, source: str, message: str) -> None:
    assert message in refusal(with_source(tmp_path, source))


def test_a_csv_the_parser_refuses_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text(TABLE_HEADER + "1,2,3\n" * 12 + "1,2,3,4\n")
    assert "data.source: cannot read " in refusal(with_source(tmp_path, "table.csv"))


# The table's values.

@pytest.mark.parametrize(("cell", "column", "what"), [
    ("inf", "A", "the value inf"), ("-inf", "B", "the value -inf"), ("inf", "MEDV", "the value inf"),
    ("", "A", "a missing value"),
])
def test_every_cell_is_a_finite_number(tmp_path: Path, cell: str, column: str, what: str) -> None:
    row = {"MEDV": "1", "A": "2", "B": "3"} | {column: cell}
    (tmp_path / "table.csv").write_text(TABLE_HEADER + "1,2,3\n" * 6 + ",".join(row.values()) + "\n" + "1,2,3\n" * 6)
    text = refusal(with_source(tmp_path, "table.csv"))
    assert text.endswith(f"data.source: column {column!r} has {what} in data row 7; "
                         "expected a finite number in every row")


def test_a_long_column_list_is_cut(tmp_path: Path) -> None:
    columns = [f"column_{i}" for i in range(1000)]
    (tmp_path / "table.csv").write_text(",".join(columns) + "\n" + ",".join("1" * 1000) + "\n")
    assert "characters)" in refusal(with_source(tmp_path, "table.csv"))


# The test rows the run will send, sized exactly as prepare writes them.

def longest_test_row(tmp_path: Path) -> int:
    x = load_experiment(EXAMPLE)
    written = prepare(x, load_table(x), tmp_path / "prepared").test_features_csv.read_bytes()
    return max(len(line) for line in written.splitlines(keepends=True))


def test_max_payload_bytes_fits_the_longest_test_row(tmp_path: Path) -> None:
    longest = longest_test_row(tmp_path)
    too_small = write_experiment(tmp_path / "x.toml", {"max_payload_bytes = 5_000_000": f"max_payload_bytes = "
                                                                                        f"{longest - 1}"})
    assert refusal(too_small).endswith(
        f": evaluation.max_payload_bytes: expected at least {longest}, the size of the longest test row the run "
        f"sends (in bytes, with its line end), got {longest - 1}"
    )
    enough = write_experiment(tmp_path / "y.toml", {"max_payload_bytes = 5_000_000": f"max_payload_bytes = {longest}"})
    check_inputs(load_experiment(enough))


def test_the_longest_row_follows_the_split(tmp_path: Path) -> None:
    # One long row in a table: whether the run sends it depends on the seeded split, and so does the check.
    rows = ["1,2,3"] * 30
    rows[0] = "1,2,-1.2345678901234567e-300"  # written back as it is: 29 bytes; the others, "1,2,3.0": 8
    (tmp_path / "table.csv").write_text(TABLE_HEADER + "\n".join(rows) + "\n")
    refused, passed = [], []
    for seed in range(12):
        path = write_experiment(tmp_path / "x.toml", {'source = "boston"': 'source = "table.csv"',
                                                      "seed = 0": f"seed = {seed}",
                                                      "max_payload_bytes = 5_000_000": "max_payload_bytes = 20"})
        x = load_experiment(path)
        sent = prepare(x, load_table(x), tmp_path / str(seed)).test_features_csv.read_text()
        try:
            check_inputs(x)
            passed.append(seed)
            assert "e-300" not in sent
        except ConfigError:
            refused.append(seed)
            assert "e-300" in sent
    assert refused and passed
