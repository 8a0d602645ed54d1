"""What every command shares: the consoles, the one-line error, JSON output. The CLI is the only place that
prints or exits; a domain error is one `Error: ...` line and its exit code, anything else a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from jobman.errors import JobmanError

console = Console()
err_console = Console(stderr=True)


def error_line(message: str) -> None:
    err_console.print(f"Error: {message}", markup=False, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """Something the user should know that is not a failure: on stderr, so JSON on stdout stays clean."""
    err_console.print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    error_line(message)
    return typer.Exit(code)


@contextmanager
def domain_errors() -> Iterator[None]:
    """A domain error is the user's to fix: one line, its exit code. Anything else is a bug: traceback."""
    try:
        yield
    except JobmanError as exc:
        raise fail(str(exc), exc.exit_code) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
