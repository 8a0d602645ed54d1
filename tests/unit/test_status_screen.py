"""`jobman status` in 80 columns: every header whole, every resource's kind, name, status and TTL readable."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from jobman.cli.screens import status_screen

LONG = "a-forty-character-experiment-name-xxxxxx"
KINDS = [("training_job", "train"), ("schedule", "ttl-endpoint"), ("schedule", "ttl-config"), ("schedule", "ttl-model"),
         ("model", "model"), ("endpoint_config", "config"), ("endpoint", "endpoint")]


def resource(kind: str, name: str, status: str, *, desired: str = "present", billed: bool = False) -> dict[str, Any]:
    return {"kind": kind, "name": name, "arn": f"arn:aws:sagemaker:us-east-1:123456789012:x/{name}",
            "desired": desired, "status": status, "meaning": "gone" if status == "Absent" else "terminal-ok",
            "age_s": 93784.0, "ttl_left_s": 3540.0, "ttl_expired": False, "billed_s": 3600.0 if billed else None,
            "cost_usd": 0.23 if billed else None}


def view(backend: str, runs: int) -> dict[str, Any]:
    resources = [
        resource(kind, f"{LONG}-r{run}-{suffix}", "UpdateRollbackFailed" if kind == "endpoint" else "InService",
                 desired="absent" if run % 2 else "present", billed=kind in ("endpoint", "training_job"))
        for run in range(1, runs + 1) for kind, suffix in KINDS
    ]
    return {"experiments": [{"name": LONG, "run": runs, "status": "running", "backend": backend, "region": "us-east-1",
                             "metrics": {"rmse": 4.25}, "cost_usd": 1.5, "resources": resources}],
            "total_cost_usd": 1.5, "prices": {"source": "a long description of the price source", "as_of": "2025-10"}}


def render(data: dict[str, Any], width: int, wide: bool = False) -> list[str]:
    console = Console(width=width, force_terminal=False, color_system=None, record=True)
    for part in status_screen(data, width, wide=wide):
        console.print(part, soft_wrap=isinstance(part, str))
    return console.export_text().splitlines()


@pytest.mark.parametrize("backend", ["sagemaker", "local"])
def test_100_resources_with_long_names_fit_80_columns(backend: str) -> None:
    data = view(backend, runs=15)  # 105 resources
    lines = render(data, 80)
    header = next(line for line in lines if line.startswith("kind"))
    assert "…" not in header and header.split()[:5] == ["kind", "name", "status", "age", "TTL"]
    if backend == "sagemaker":
        assert header.split()[5:] == ["billed", "cost"]
    else:  # a free backend has no billing worth a column
        assert "cost" not in header
    table = [line for line in lines[lines.index(header) + 1:] if not line.startswith(("total", "*"))]
    assert len(table) == 105 and all(len(line) <= 80 for line in table)
    for line, r in zip(table, data["experiments"][0]["resources"], strict=True):
        short = r["name"].removeprefix(f"{LONG}-")
        assert short in line and r["status"] in line and "59m00s" in line  # name, status and TTL, whole
    assert "InService*" in table[0] and "* being deleted" in lines  # unwanted, not yet gone: marked, explained


def test_wide_shows_every_column_and_full_names() -> None:
    lines = render(view("sagemaker", runs=1), 300, wide=True)
    header = next(line for line in lines if line.startswith("kind"))
    assert header.split() == ["kind", "name", "desired", "status", "age", "TTL", "billed", "cost", "ARN"]
    assert any(f"{LONG}-r1-endpoint" in line and "endpoint " in line for line in lines)
