"""Durations as operators write them in YAML: ``90s``, ``15m``, ``6h``, ``1d`` or seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: Any) -> timedelta:
    """Parse ``"2m"``, ``"1.5h"``, ``45`` (seconds) or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 15m, 6h or 1d")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number, unit = match.groups()
            return timedelta(seconds=float(number) * _UNITS[unit or "s"])
    raise ValueError(f"{value!r} is not a duration like 90s, 15m, 6h or 1d")


def format_duration(value: timedelta) -> str:
    """The shortest exact form: ``120s`` -> ``2m``."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
