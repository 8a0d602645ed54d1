"""`jobman local` (the typer sub-app alone): bad input is one `Error:` line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobman.cli.local import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("JOBMAN_HOME", str(tmp_path / "home"))
    return CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "--port", "70000"], "Error: --port: 70000 is not a port number (0-65535)"),
    (["serve", "--idle-timeout", "soon"], "Error: --idle-timeout:"),
    (["serve", "--idle-timeout", "-5"], "Error: --idle-timeout:"),
])
def test_bad_input(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_status_and_stop_without_a_server(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0 and "No local server is running" in result.output
    as_json = runner.invoke(app, ["status", "--json"])
    assert json.loads(as_json.output) == {"running": False, "home": str(tmp_path / "home")}
    stopped = runner.invoke(app, ["stop"])
    assert stopped.exit_code == 0 and "No local server was running" in stopped.output


def test_help_names_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "status", "stop"):
        assert command in result.output
    assert "--endpoints" in runner.invoke(app, ["stop", "--help"]).output
