"""How often the controller polls each backend (`JOBMAN_POLL_S` overrides both intervals), and how far apart
the schedules that delete an expired chain fire."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from jobman.errors import ConfigError


@dataclass(frozen=True)
class Timing:
    training_poll_s: float
    endpoint_poll_s: float
    # The endpoint's schedule fires at its expiry, its config's one stagger later, its model's two. SageMaker
    # deletes an endpoint in the background for a minute or two; the local backend deletes it at once.
    ttl_stagger_s: float = 120.0

    @classmethod
    def for_backend(cls, backend: str) -> Timing:
        # SageMaker's own SDK polls jobs every 5 s; endpoints take minutes, so 15 s loses little.
        defaults = cls(0.5, 0.5, 10.0) if backend == "local" else cls(5.0, 15.0, 120.0)
        override = os.environ.get("JOBMAN_POLL_S")
        if not override:
            return defaults
        try:
            seconds = float(override)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 3600:
            raise ConfigError(f"JOBMAN_POLL_S: expected seconds between 0 and 3600, got {override!r}")
        return replace(defaults, training_poll_s=seconds, endpoint_poll_s=seconds)
