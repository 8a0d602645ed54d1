"""Where jobman keeps its files: `$JOBMAN_HOME`, default `~/.local/share/jobman`."""

from __future__ import annotations

import os
from pathlib import Path


def jobman_home() -> Path:
    home = os.environ.get("JOBMAN_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".local" / "share" / "jobman"
    path.mkdir(parents=True, exist_ok=True)
    return path
