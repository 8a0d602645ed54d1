"""`jobman invoke` in its own process: a bad output path or binary input is one `Error:` line, exit 2, before
anything is sent; SIGTERM or Ctrl-C in the middle of an invoke leaves neither the output nor its `.part` file.

The endpoint is a FaultProxy on 127.0.0.1 reached as AWS (`--backend sagemaker` and AWS_ENDPOINT_URL): it counts
the requests it is sent, and with a long latency it holds every one, so that a signal finds the command mid-invoke.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import jobman, jobman_cmd
from tests.fault_proxy import FaultProxy
from tests.integration.local_fixtures import wait_for

pytestmark = pytest.mark.timeout(120)
AWS = ("--backend", "sagemaker")


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy("http://127.0.0.1:1") as proxy:  # nothing behind it: no request may get this far
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield proxy


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The folder inputs and outputs go in (JOBMAN_HOME is beside it)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def rows(work: Path) -> Path:
    path = work / "in.csv"
    path.write_bytes(b"".join(b"%d,%d\n" % (i, i * 7) for i in range(100)))
    return path


def assert_refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    """One `Error:` line and exit 2 (so no traceback)."""
    assert (done.returncode, done.stderr) == (2, f"Error: {message}\n")


def test_an_output_that_is_a_directory(tmp_path: Path, jobman_home: Path, endpoint: FaultProxy, rows: Path) -> None:
    done = jobman("invoke", "ep", str(rows), "-o", str(tmp_path), *AWS, cwd=tmp_path)
    assert_refused(done, f"{tmp_path}: names a directory, not a file")
    assert endpoint.total() == 0 and not jobman_home.exists()  # neither the endpoint nor the ledger was touched


def test_an_output_in_a_missing_folder_is_refused(
    tmp_path: Path, jobman_home: Path, endpoint: FaultProxy, rows: Path
) -> None:
    target = tmp_path / "no" / "such" / "out.csv"
    done = jobman("invoke", "ep", str(rows), "-o", str(target), *AWS, cwd=tmp_path)
    assert_refused(done, f"{target}: directory {target.parent} does not exist")
    assert not (tmp_path / "no").exists()  # refused, not created
    assert endpoint.total() == 0 and not jobman_home.exists()


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40, "a NUL byte at offset 7"),
    ("feature,city\n1,Orl\u00e9ans\n".encode("latin-1"), "byte 0xe9 at offset 18 is not UTF-8"),
])
def test_a_binary_input_file(
    work: Path, jobman_home: Path, endpoint: FaultProxy, data: bytes, reason: str
) -> None:
    source = work / "model.bin"
    source.write_bytes(data)
    done = jobman("invoke", "ep", str(source), "-o", str(work / "out.csv"), *AWS, cwd=work)
    assert_refused(done, f"{source} is not text CSV ({reason})")
    assert endpoint.total() == 0 and not jobman_home.exists()
    assert [p.name for p in work.iterdir()] == ["model.bin"]


def test_binary_input_on_stdin(work: Path, endpoint: FaultProxy) -> None:
    # Standard input cannot be read ahead: the invoker's first block is checked, still before any request.
    done = subprocess.run(jobman_cmd("invoke", "ep", "-", "-o", str(work / "out.csv"), *AWS), cwd=work,
                          input=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", capture_output=True, timeout=120)
    assert (done.returncode, done.stderr) == (2, b"Error: stdin is not text CSV (a NUL byte at offset 8)\n")
    assert endpoint.total() == 0
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_invoke_leaves_no_output(
    work: Path, endpoint: FaultProxy, rows: Path, sig: signal.Signals
) -> None:
    if sig == signal.SIGINT and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here (a background job), so the CLI would inherit that and ignore it")
    endpoint.faults.latency_s = 600.0  # every request waits: the invoke is in the middle until the signal
    process = subprocess.Popen(jobman_cmd("invoke", "ep", str(rows), "-o", str(work / "out.csv"), *AWS,
                                          "--max-rows-per-chunk", "10", "--concurrency", "4"),
                               cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    try:
        wait_for(lambda: endpoint.count("InvokeEndpoint") == 4 or process.poll() is not None, timeout_s=60)
        assert process.poll() is None, process.communicate()
        assert [p.name for p in work.glob(".out.csv.*.part")], "the temporary output exists mid-invoke"
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert [p.name for p in work.iterdir()] == ["in.csv"]  # no out.csv, no .part
