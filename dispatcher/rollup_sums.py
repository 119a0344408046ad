"""The rollup's sums over a period: the period cut into whole UTC hours read from the
rollup (``stats_*_hour`` plus the deltas not yet folded in) and at most two partial edge
hours read live from the rows, each added or subtracted, whichever reads less.

:func:`plan` picks the cut; :func:`sums` reads it. :mod:`dispatcher.rollup` builds
``/v1/stats`` from these sums.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlmodel import Session

from dispatcher.columns import UTCDateTime
from dispatcher.rollup_triggers import Kind

HOUR = timedelta(hours=1)
Key = tuple[Any, ...]
Sums = dict[Key, list[float]]


@dataclass(frozen=True)
class Plan:
    """Whole hours ``[first, last)`` from the rollup, and signed live ranges."""

    first: datetime
    last: datetime
    live: tuple[tuple[datetime, datetime, int], ...]


def _floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime) -> datetime:
    floor = _floor(moment)
    return floor if floor == moment else floor + HOUR


def _span(lo: datetime, hi: datetime, now: datetime) -> timedelta:
    """Time in ``[lo, hi)`` that rows can have been created in (none after now)."""
    return max(min(hi, now) - lo, timedelta(0))


def _edges(moment: datetime, inside: int) -> list[tuple[datetime, tuple[Any, ...]]]:
    """Ways to cut at ``moment``: (hour boundary, live range to add or subtract)."""
    floor, ceil = _floor(moment), _ceil(moment)
    if floor == moment:
        return [(moment, ())]
    if inside > 0:  # the period starts here: add [moment, ceil) or subtract [floor, moment)
        return [(ceil, ((moment, ceil, 1),)), (floor, ((floor, moment, -1),))]
    return [(floor, ((floor, moment, 1),)), (ceil, ((moment, ceil, -1),))]


def plan(since: datetime, until: datetime, now: datetime) -> Plan:
    """The cheapest exact cut of ``[since, until)``: the least live time to read."""
    options = [Plan(since, since, ((since, until, 1),))]
    for first, head in _edges(since, 1):
        for last, tail in _edges(until, -1):
            if first <= last:
                options.append(Plan(first, last, head + tail))

    def cost(option: Plan) -> tuple[timedelta, int]:
        live = [_span(lo, hi, now) for lo, hi, _ in option.live]
        return sum(live, timedelta(0)), len(option.live)

    return min(options, key=cost)


def params(lo: datetime, hi: datetime, cascade: str | None) -> tuple[dict[str, Any], str]:
    values: dict[str, Any] = {"lo": lo, "hi": hi}
    if cascade:
        values["cascade"] = cascade
    return values, " AND cascade = :cascade" if cascade else ""


def run(session: Session, sql: str, values: dict[str, Any]) -> Iterable[Any]:
    statement = text(sql).bindparams(
        *[bindparam(name, type_=UTCDateTime()) for name in ("lo", "hi") if name in values]
    )
    return session.execute(statement, values)


def _from_rollup(
    session: Session, kind: Kind, lo: datetime, hi: datetime, cascade: str | None
) -> Sums:
    keys = ", ".join(name for name, _ in kind.keys)
    sums = ", ".join(name for name, _ in kind.sums)
    totals = ", ".join(f"sum({name})" for name, _ in kind.sums)
    values, only = params(lo, hi, cascade)
    part = "SELECT {k}, {s} FROM {t} WHERE hour >= :lo AND hour < :hi" + only  # noqa: S608
    hour_table = kind.delta.removesuffix("_delta") + "_hour"
    union = " UNION ALL ".join(
        part.format(k=keys, s=sums, t=table) for table in (hour_table, kind.delta)
    )
    sql = f"SELECT {keys}, {totals} FROM ({union}) AS r GROUP BY {keys}"  # noqa: S608
    return _collect(run(session, sql, values), len(kind.keys), 1)


def _from_rows(
    session: Session, kind: Kind, lo: datetime, hi: datetime, cascade: str | None, sign: int
) -> Sums:
    created = "created_at" if kind.source == "notification" else "notification_created_at"
    exprs = [expr.format(r="") for _, expr in (*kind.keys, *kind.sums)]
    totals = exprs[: len(kind.keys)] + [f"sum({e})" for e in exprs[len(kind.keys) :]]
    values, only = params(lo, hi, cascade)
    positions = ", ".join(str(i + 1) for i in range(len(kind.keys)))
    sql = (
        f"SELECT {', '.join(totals)} FROM {kind.source} "  # noqa: S608 - our constants
        f"WHERE {created} >= :lo AND {created} < :hi AND {kind.where.format(r='')}{only} "
        f"GROUP BY {positions}"
    )
    return _collect(run(session, sql, values), len(kind.keys), sign)


def _collect(rows: Iterable[Any], width: int, sign: int) -> Sums:
    sums: Sums = {}
    for row in rows:
        key = tuple(_hour(v) if i == 0 else v for i, v in enumerate(row[:width]))
        sums[key] = [sign * float(v or 0) for v in row[width:]]
    return sums


def _hour(value: Any) -> datetime:
    """An hour as the database returned it (a naive time, or text on SQLite)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC)


def add(total: Sums, part: Sums) -> None:
    for key, values in part.items():
        have = total.setdefault(key, [0.0] * len(values))
        for i, value in enumerate(values):
            have[i] += value


def sums(session: Session, kind: Kind, cut: Plan, cascade: str | None) -> Sums:
    """Per key (hour first) sums of ``kind`` over the period ``cut`` describes."""
    total: Sums = {}
    if cut.first < cut.last:
        add(total, _from_rollup(session, kind, cut.first, cut.last, cascade))
    for lo, hi, sign in cut.live:
        add(total, _from_rows(session, kind, lo, hi, cascade, sign))
    return {key: values for key, values in total.items() if round(values[0]) != 0}
