"""Durations as users write them (``5s``, ``250ms``, ``5min``, ``1h``, ``0``)."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*$")


def parse_duration_ms(text: str) -> int:
    """Milliseconds in *text*; a bare number is seconds. Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 250ms, 5s, 5min, 1h, 0)")
    value, unit = match.groups()
    return round(float(value) * _UNITS_MS[unit or "s"])


def format_ms(ms: int) -> str:
    """A duration for PostgreSQL settings (``5000ms``); 0 disables."""
    return f"{ms}ms"
