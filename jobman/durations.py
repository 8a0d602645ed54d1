"""Durations as people write them in experiment files and flags: "90s", "30m", "1h30m", "2d", or seconds."""

from __future__ import annotations

import math
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
# Longer is no deadline at all, and `now + duration` must stay a datetime (which ends at year 9999).
MAX_DURATION_S = 100 * 365 * 86400.0


def parse_duration_s(value: str | int | float) -> float:
    """Seconds in `value`; raises ValueError for text that is not a duration, or one that is not positive,
    not finite, or longer than MAX_DURATION_S."""
    if isinstance(value, bool):
        raise ValueError("a duration")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = value.strip().lower().replace(" ", "")
            if not text or _PART.sub("", text):
                raise ValueError(f"{value!r} is not a duration like '90s', '30m', '1h30m' or '2d'")
            seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(text))
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration")
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    if seconds > MAX_DURATION_S:  # also inf
        raise ValueError(f"{value!r} is longer than {MAX_DURATION_S / 86400:.0f}d (100 years), the most jobman takes")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact human form: 3725 -> '1h02m', 59 -> '59s', negative -> '-1m05s'."""
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"
