"""The tags jobman puts on everything it creates; gc finds and reaps orphans by them."""

from __future__ import annotations

import json

TAG_MANAGED = "jobman:managed"  # "true" on every resource jobman creates; nothing else is ever touched
TAG_EXPERIMENT = "jobman:experiment"
TAG_RUN = "jobman:run"
TAG_CONFIG = "jobman:config"  # the experiment file's digest: a resumed run adopts only its own resources
TAG_EXPIRES = "jobman:expires-at"  # ISO 8601 UTC; on the endpoint, its config and its model


def description_of(tags: dict[str, str]) -> str:
    """Schedules carry no tags in EventBridge Scheduler; jobman writes its tags into the Description."""
    return json.dumps(tags, separators=(",", ":"), sort_keys=True)


def tags_in_description(description: str | None) -> dict[str, str]:
    """The tags `description_of` wrote; {} for any other description."""
    try:
        value = json.loads(description or "")
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}
