"""Durations as users type them: ``30m``, ``12h``, ``3d``."""

from __future__ import annotations

import re

DURATION = re.compile(r"^(\d+)([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str, option: str) -> int:
    """``30m`` -> 1800; refuses anything else, naming the ``option`` it was given to."""
    match = DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{option} {text!r}: give a positive whole number with s, m, h or d, e.g. 3d")
    return int(match.group(1)) * SECONDS[match.group(2)]
