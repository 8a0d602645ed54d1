"""How often the controller polls each backend. `JOBMAN_POLL_S` overrides both intervals."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    training_poll_s: float
    endpoint_poll_s: float

    @classmethod
    def for_backend(cls, backend: str) -> Timing:
        override = os.environ.get("JOBMAN_POLL_S")
        if override:
            return cls(float(override), float(override))
        # SageMaker's own SDK polls jobs every 5 s; endpoints take minutes, so 15 s loses little.
        return cls(0.5, 0.5) if backend == "local" else cls(5.0, 15.0)
