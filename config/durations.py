"""Durations as operators write them: ``90s``, ``15m``, ``6h``, ``1d``, seconds, or ISO 8601.

ISO 8601 durations (``PT10M``, ``P1DT2H``, ``P2W``) are accepted because the API's
OpenAPI says ``format: duration``; years and months are refused (they have no fixed
length). Every duration is finite, not negative and at most :data:`MAX_DURATION`, so
``now + duration`` can never overflow.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

#: The longest duration anything accepts (ten years: far from ``datetime`` overflow).
MAX_DURATION = timedelta(days=3650)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_ISO = re.compile(
    rf"^P(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$"
)
_FORMS = "a duration like 90s, 15m, 6h, 1d or ISO 8601 (PT10M, P1DT2H)"


def parse_duration(value: Any) -> timedelta:
    """Parse ``"2m"``, ``"1.5h"``, ``"PT10M"``, ``45`` (seconds) or a timedelta."""
    if isinstance(value, timedelta):
        return _bounded(value.total_seconds(), value)
    if isinstance(value, bool):
        raise ValueError(f"expected {_FORMS}")
    if isinstance(value, int | float):
        try:
            return _bounded(float(value), value)
        except OverflowError:  # an int too large for a float
            raise ValueError(f"{_short(value)} is longer than {_max_text()}") from None
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number, unit = match.groups()
            return _bounded(float(number) * _UNITS[unit or "s"], value)
        if value.strip().upper().startswith("P"):
            return _bounded(_iso_seconds(value.strip().upper()), value)
    raise ValueError(f"{_short(value)} is not {_FORMS}")


def _iso_seconds(text: str) -> float:
    match = _ISO.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        date_part = text.split("T", 1)[0]
        fixed = any(unit in date_part for unit in "YM")
        hint = " (years and months have no fixed length: use days)" if fixed else ""
        raise ValueError(f"{_short(text)} is not an ISO 8601 duration like PT10M{hint}")
    weeks, days, hours, minutes, seconds = (
        float(part.replace(",", ".")) if part else 0.0 for part in match.groups()
    )
    return (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds


def _bounded(seconds: float, raw: Any) -> timedelta:
    if math.isnan(seconds):
        raise ValueError(f"{_short(raw)} is not {_FORMS}")
    if seconds < 0:
        raise ValueError(f"{_short(raw)} is negative: a duration is zero or more")
    if seconds > MAX_DURATION.total_seconds():  # also catches infinity
        raise ValueError(f"{_short(raw)} is longer than {_max_text()}")
    return timedelta(seconds=seconds)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _max_text() -> str:
    return f"the maximum duration ({format_duration(MAX_DURATION)})"


def format_duration(value: timedelta) -> str:
    """The shortest exact form: ``120s`` -> ``2m``."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
