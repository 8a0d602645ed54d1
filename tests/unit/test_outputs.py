"""Output files: refused up front when they cannot be written; whole or absent, never a leftover `.part`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from jobman.errors import ConfigError
from jobman.outputs import atomic_output, check_output


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_file_in_an_existing_folder_is_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with atomic_output(str(target)) as fh:
        fh.write(b"1\n")
        [part] = leftovers(tmp_path)  # the target appears only when the block succeeds
        assert part.startswith(".out.csv.") and part.endswith(".part")
    assert target.read_bytes() == b"1\n"
    assert leftovers(tmp_path) == ["out.csv"]


def test_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "out.csv"
    with pytest.raises(ConfigError) as err:
        with atomic_output(str(target)):
            pytest.fail("the block must not run")
    assert str(err.value) == f"{target}: directory {target.parent} does not exist"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("name", "problem"), [
    ("", "names a directory, not a file"),
    ("sub/", "names a directory, not a file"),
    ("file.csv/out.csv", "{tmp}/file.csv is not a directory"),
])
def test_unwritable_targets(tmp_path: Path, name: str, problem: str) -> None:
    (tmp_path / "file.csv").write_bytes(b"")
    target = f"{tmp_path}/{name}"
    with pytest.raises(ConfigError) as err:
        check_output(target)
    assert str(err.value) == f"{target}: {problem.format(tmp=tmp_path)}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(ConfigError, match=r": cannot write in directory .*ro \(permission denied\)$"):
        check_output(str(folder / "out.csv"))


def test_stdout_is_always_writable() -> None:
    check_output("-")


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt(), asyncio.CancelledError()])
def test_nothing_is_left_when_the_block_fails(tmp_path: Path, error: BaseException) -> None:
    (tmp_path / "out.csv").write_bytes(b"old\n")
    with pytest.raises(type(error)):
        with atomic_output(str(tmp_path / "out.csv")) as fh:
            fh.write(b"partial\n")
            raise error
    assert leftovers(tmp_path) == ["out.csv"]
    assert (tmp_path / "out.csv").read_bytes() == b"old\n"  # the old file stays as it was
