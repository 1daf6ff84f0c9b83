"""Durations as users write them (``5s``, ``250ms``, ``5min``, ``1h``, ``0``)."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000,
             "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration_ms(text: str) -> int:
    """Milliseconds in *text*; a bare number is seconds. Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 250ms, 5s, 5min, 1h, 0)")
    value, unit = match.groups()
    ms = round(float(value) * _UNITS_MS[unit or "s"])
    if ms == 0 and float(value) > 0:
        # PostgreSQL counts in whole milliseconds, and 0 means "no timeout at all".
        raise ValueError(f"{text.strip()!r} is shorter than 1ms (0 turns the timeout off)")
    return ms


_DISPLAY_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))


def format_ms(ms: int) -> str:
    """A duration as PostgreSQL shows it in ``current_setting`` (``5s``, ``250ms``,
    ``1min``, ``0``), so a setting already in force can be recognised and left alone."""
    if ms == 0:
        return "0"
    for unit, size in _DISPLAY_UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
