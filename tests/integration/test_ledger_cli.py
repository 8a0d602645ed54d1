"""The CLI on a ledger it cannot use as it is: damaged, zero bytes, read-only, or interrupted mid-write.

Each case runs jobman in its own process, as a user would, and asserts one `Error:` line (or the documented
note), the exit code, no traceback, and the ledger file byte for byte as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobman.ledger.schema import HEAD_REVISION as HEAD
from tests.conftest import REPO, SAGEMAKER, jobman, write_experiment
from tests.ledger_files import DAMAGES, damage, make_ledger

Jobman = Callable[..., subprocess.CompletedProcess[str]]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: "), line
    for fragment in fragments:
        assert fragment in line
    return line


# Every command the issue names, and `db upgrade`: a damaged ledger stops each before it touches anything.
COMMANDS = [["status"], ["gc", "--dry-run"], ["db", "current"], ["db", "upgrade"], ["run", "exp.toml"]]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_ledger_is_one_error_line_and_left_as_it_is(tmp_path: Path, jobman_home: Path, how: str) -> None:
    path = jobman_home / "ledger.db"
    asyncio.run(make_ledger(path))
    damage(path, how)
    before, files = digest(path), sorted(os.listdir(jobman_home))
    write_experiment(tmp_path / "exp.toml", SAGEMAKER)  # never reached: no backend is opened
    for command in COMMANDS:
        done = jobman(*command, cwd=tmp_path)
        assert_one_error(done, 3, f"Error: the ledger {path} is damaged (",
                         "move it aside (with any ledger.db-wal and ledger.db-shm beside it) or restore it from a "
                         "backup; jobman starts a new ledger when there is none")
        assert digest(path) == before, command
    assert sorted(os.listdir(jobman_home)) == files


def test_a_zero_byte_ledger_is_set_up_as_new_with_a_note(tmp_path: Path, jobman_home: Path) -> None:
    # What SQLite leaves when the first use is interrupted before its first write.
    jobman_home.mkdir()
    path = jobman_home / "ledger.db"
    path.touch()
    current = jobman("db", "current", cwd=tmp_path)  # reads only: the file stays as it is
    assert (current.returncode, current.stdout, current.stderr) == (0, f"ledger: empty; needed: {HEAD}\n", "")
    dry = jobman("gc", "--dry-run", "--backend", "local", cwd=tmp_path)  # as with no ledger: nothing to look at
    assert dry.returncode == 0 and "Error" not in dry.stderr and "note: the ledger" not in dry.stderr, dry.stderr
    assert path.stat().st_size == 0
    shown = jobman("status", cwd=tmp_path)
    assert shown.returncode == 0 and "no experiments in the ledger" in shown.stdout
    assert shown.stderr == (f"note: the ledger {path} was an empty file (a first use that was interrupted leaves "
                            "one); it is now set up as a new ledger\n")
    again = jobman("status", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""


# Read-only: root ignores file permissions, so the CLI runs as an unprivileged user on a home it can read only.


@pytest.fixture
def as_user() -> list[str]:
    """The command prefix that runs a process as an unprivileged user (none when this already is one)."""
    if os.geteuid() != 0:
        return []
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop privileges to")
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    elif shutil.which("runuser"):
        prefix = ["runuser", "-u", "nobody", "--"]
    else:
        pytest.skip("running as root and neither setpriv nor runuser is there to drop privileges")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import jobman.cli"], cwd="/", capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"user 'nobody' cannot run this Python and jobman: {probe.stderr.strip()[-200:]}")
    return prefix


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can reach (pytest's tmp_path is private to root), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="jobman-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def unprivileged(as_user: list[str], shared_dir: Path) -> Jobman:
    """jobman as the unprivileged user with JOBMAN_HOME=`shared_dir`/home, in `shared_dir`/work (its own to write,
    as a run's output folder must be), which holds exp.toml: the example on the AWS backend."""
    work = shared_dir / "work"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    write_experiment(work / "exp.toml", SAGEMAKER).chmod(0o644)
    env = {**os.environ, "COLUMNS": "200", "JOBMAN_HOME": str(shared_dir / "home"), "HOME": str(work),
           "AWS_CONFIG_FILE": str(work / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-creds")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, sys.executable, "-m", "jobman", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)

    return run


def read_only_home(shared_dir: Path, *, folder_mode: int, file_mode: int, version: str | None = None) -> Path:
    home = shared_dir / "home"
    home.mkdir()
    path = home / "ledger.db"
    asyncio.run(make_ledger(path))
    (home / "ledger.db.migrate.lock").unlink()
    if version is not None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (version,))
        conn.close()
    path.chmod(file_mode)
    home.chmod(folder_mode)
    return path


@pytest.mark.parametrize(("folder_mode", "file_mode", "why"), [
    (0o755, 0o644, "its folder {home} is not writable by this user"),
    (0o777, 0o444, "the file is read-only for this user"),
], ids=["read-only folder", "read-only file"])
def test_a_read_only_ledger_is_read_and_writes_are_one_error_line(
    shared_dir: Path, unprivileged: Jobman, folder_mode: int, file_mode: int, why: str
) -> None:
    path = read_only_home(shared_dir, folder_mode=folder_mode, file_mode=file_mode)
    home = path.parent
    before, files = digest(path), sorted(os.listdir(home))

    shown = unprivileged("status", "--json")
    assert (shown.returncode, shown.stderr) == (0, "")
    [exp] = json.loads(shown.stdout)["experiments"]
    assert exp["name"] == "exp" and len(exp["resources"]) == 40
    dry = unprivileged("gc", "--dry-run")
    assert dry.returncode == 0 and "Error" not in dry.stderr and "Traceback" not in dry.stderr, dry.stderr
    assert "gc: 0 expired (dry run: nothing deleted)" in dry.stdout
    current = unprivileged("db", "current")
    assert (current.returncode, current.stdout, current.stderr) == (0, f"ledger: {HEAD}; needed: {HEAD}\n", "")

    message = f"Error: the ledger {path} cannot be written: {why.format(home=home)}. This command records"
    assert_one_error(unprivileged("db", "upgrade"), 3, message)
    assert_one_error(unprivileged("run", "exp.toml"), 3, message)
    assert digest(path) == before
    assert sorted(os.listdir(home)) == files  # no -wal, -shm or lock file left behind by the reader


def test_an_out_of_date_schema_is_still_reported_on_a_read_only_ledger(shared_dir: Path, unprivileged: Jobman) -> None:
    path = read_only_home(shared_dir, folder_mode=0o755, file_mode=0o644, version="f00d")
    before = digest(path)
    assert_one_error(unprivileged("status"), 3, f"Error: the ledger {path} is at schema f00d, which this jobman "
                                                "does not know")
    current = unprivileged("db", "current")
    assert (current.returncode, current.stdout) == (0, f"ledger: f00d; needed: {HEAD}\n")
    assert digest(path) == before


def test_no_ledger_in_a_read_only_folder(shared_dir: Path, unprivileged: Jobman) -> None:
    home = shared_dir / "home"
    home.mkdir(mode=0o755)
    assert_one_error(unprivileged("status"), 3, f"Error: there is no ledger at {home / 'ledger.db'}, and none "
                                                f"can be made: its folder {home} is not writable by this user")
    current = unprivileged("db", "current")
    assert (current.returncode, current.stdout, current.stderr) == (0, f"ledger: empty; needed: {HEAD}\n", "")
    assert os.listdir(home) == []


# Ctrl-C: the signal lands wherever the run happens to be, many times over (see interrupt_harness.py).

INTERRUPTED = ("Interrupted. The ledger holds the run's state; every endpoint has a TTL.\n"
               "  resume:    jobman run {path}\n"
               "  tear down: jobman stop boston-xgboost\n")


def test_ctrl_c_at_any_moment_of_a_run_prints_no_traceback(tmp_path: Path) -> None:
    rounds, seed = 60, 20261130
    done = subprocess.run([sys.executable, "-m", "tests.integration.interrupt_harness", str(rounds), str(seed),
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # a round hung: its stderr holds every thread's stack
        last = max(tmp_path.glob("round-*.err"), key=lambda p: int(p.stem.partition("-")[2]))
        pytest.fail(f"{last.stem} of seed {seed} hung or failed:\n{last.read_text()}\n{done.stderr}")
    outcomes = json.loads(done.stdout.splitlines()[-1])
    assert outcomes.count("interrupted") >= rounds // 2, outcomes
    assert set(outcomes) <= {"interrupted", "completed", "late"}, outcomes
    for number, outcome in enumerate(outcomes):
        if outcome == "late":  # the signal came after the run: Python's own KeyboardInterrupt, not jobman's
            continue
        stderr = (tmp_path / f"round-{number}.err").read_text()
        expected = INTERRUPTED.format(path=tmp_path / "exp.toml") if outcome == "interrupted" else ""
        assert stderr == expected, f"round {number} (seed {seed}): {stderr}"
        ledger = tmp_path / f"home-{number}" / "ledger.db"
        if ledger.exists():
            with sqlite3.connect(ledger) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            conn.close()
