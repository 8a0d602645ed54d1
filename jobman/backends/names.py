"""The backends an experiment or a command may name (kept apart so the CLI can offer them without loading more)."""

from __future__ import annotations

from enum import StrEnum


class BackendName(StrEnum):
    LOCAL = "local"  # jobman's own SageMaker on 127.0.0.1
    SAGEMAKER = "sagemaker"  # AWS
