"""How often the controller polls each backend. `JOBMAN_POLL_S` overrides both intervals."""

from __future__ import annotations

import os
from dataclasses import dataclass

from jobman.errors import ConfigError


@dataclass(frozen=True)
class Timing:
    training_poll_s: float
    endpoint_poll_s: float

    @classmethod
    def for_backend(cls, backend: str) -> Timing:
        override = os.environ.get("JOBMAN_POLL_S")
        if override:
            try:
                seconds = float(override)
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= 3600:
                raise ConfigError(f"JOBMAN_POLL_S: expected seconds between 0 and 3600, got {override!r}")
            return cls(seconds, seconds)
        # SageMaker's own SDK polls jobs every 5 s; endpoints take minutes, so 15 s loses little.
        return cls(0.5, 0.5) if backend == "local" else cls(5.0, 15.0)
