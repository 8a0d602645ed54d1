"""Output files that appear whole or not at all: written beside the target, renamed on success.

A missing parent folder is refused, not created, as `cp` and shells refuse it: a typo in a path
should not leave a new tree of folders behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from jobman.errors import ConfigError


def check_output(target: str) -> None:
    """ConfigError unless `target` ('-' is stdout) names a file that can be written, before any work is done."""
    if target == "-":
        return
    path = Path(target)
    folder = path.parent
    if path.is_dir() or target.endswith("/"):
        raise ConfigError(f"{target}: names a directory, not a file")
    if not folder.exists():
        raise ConfigError(f"{target}: directory {folder} does not exist")
    if not folder.is_dir():
        raise ConfigError(f"{target}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{target}: cannot write in directory {folder} (permission denied)")


@contextmanager
def atomic_output(target: str) -> Iterator[BinaryIO]:
    """'-' is stdout; a path gets a temporary sibling that replaces it only if the block succeeds.

    The temporary file is removed on any exception, KeyboardInterrupt and task cancellation included;
    only an exit Python does not see (SIGKILL, a crash) can leave a `.NAME.*.part` file behind.
    """
    check_output(target)
    if target == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
