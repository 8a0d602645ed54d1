"""Ledger files for tests: one with rows in every table, and the ways such a file gets damaged."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from jobman.kinds import Kind
from jobman.ledger.db import open_engine
from jobman.ledger.store import Ledger

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 4096  # SQLite's default page size
DAMAGES = ["random bytes", "truncated", "zeroed header", "zeroed pages", "two zeroed pages in the middle"]


async def make_ledger(path: Path, *, resources: int = 40) -> None:
    """A ledger at the current schema: experiment `exp`, its run 1, and `resources` models (no expiry)."""
    async with open_engine(f"sqlite+aiosqlite:///{path}") as engine:
        ledger = Ledger(engine)
        exp = await ledger.experiment("exp", create_at=NOW)
        assert exp is not None
        run = await ledger.start_run(exp.id, digest="d", backend="local", region="us-east-1", config_path="-", at=NOW)
        for i in range(resources):  # padded, so that the tables span pages past the first
            await ledger.add_resource(run.id, Kind.MODEL, f"model-{i}", {"pad": "x" * 400}, at=NOW)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    middle = len(data) // PAGE // 2 * PAGE
    path.write_bytes({
        "random bytes": os.urandom(len(data)),
        "truncated": data[:middle],
        "zeroed header": bytes(PAGE) + data[PAGE:],
        "zeroed pages": data[:PAGE] + bytes(len(data) - PAGE),
        # The schema and alembic_version read fine; only quick_check (or a query that meets them) finds these.
        "two zeroed pages in the middle": data[:middle] + bytes(2 * PAGE) + data[middle + 2 * PAGE:],
    }[how])
