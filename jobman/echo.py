"""How the user's input appears in a one-line error: cut to a readable length, never breaking the line."""

from __future__ import annotations

import json
import re
from pathlib import Path

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ECHO_CHARS = 60  # an echoed value longer than this is cut: one line must stay readable


def cut(text: str) -> str:
    """`text` as an error message shows it: at most ECHO_CHARS characters, then an ellipsis and the full length."""
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}… ({len(text):,} characters)"


def echo(value: object) -> str:
    """A value from the user's input as an error message shows it: its repr, cut to a readable length."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]!r}… ({len(value):,} characters)"
    return cut(repr(value))


def one_line(path: Path | str) -> str:
    """A path as an error message shows it: as it is, or as its repr if a line feed or the like would break the line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def dotted(prefix: str, key: str) -> str:
    """A key as TOML would write it (quoted unless bare, so no newline ever reaches the message), under `prefix`."""
    shown = key if BARE_KEY.fullmatch(key) else json.dumps(key)
    return cut(f"{prefix}.{shown}" if prefix else shown)
