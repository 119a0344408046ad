"""The period a statistics request covers: ``since`` as a time or a span back from ``until``.

``since`` is either an ISO 8601 time with a zone (``2026-01-01T00:00:00Z``) or a relative
span counted back from the end of the period: ``90s``, ``30m``, ``1h``, ``7d``, ``2w``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import TypeAdapter, ValidationError

_SPAN = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)
DEFAULT_SPAN = timedelta(days=1)


class PeriodError(ValueError):
    """A ``since`` or ``until`` that is neither a zoned time nor a span."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def span(value: str) -> timedelta | None:
    """``"7d"`` -> 7 days; None when ``value`` is not a relative span."""
    match = _SPAN.match(value)
    if match is None:
        return None
    amount, unit = match.groups()
    return timedelta(seconds=int(amount) * _UNITS[unit.lower()])


def zoned(field: str, value: datetime | str) -> datetime:
    """A time with a zone, parsed as the API always parsed times; else :class:`PeriodError`."""
    try:
        moment = _TIME.validate_python(value)
    except ValidationError:
        raise PeriodError(
            field, "give a time such as 2026-01-01T00:00:00Z or a span such as 1h or 7d"
        ) from None
    if moment.tzinfo is None:
        raise PeriodError(field, "give a time zone, e.g. 2026-01-01T00:00:00Z")
    return moment


def period(since: str | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of a stats request; the default is the day up to now."""
    end = zoned("until", until) if until is not None else now + timedelta(seconds=1)
    if since is None:
        return end - DEFAULT_SPAN, end
    relative = span(since)
    start = end - relative if relative is not None else zoned("since", since)
    if start >= end:
        raise PeriodError("since", "must be before until")
    return start, end
