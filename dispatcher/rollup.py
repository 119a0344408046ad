"""``/v1/stats`` from the rollup: whole hours summed, partial edge hours read live, exactly.

A period ``[since, until)`` is cut into whole UTC hours, read from the rollup
(``stats_*_hour`` plus the deltas not yet folded in, see :mod:`dispatcher.rollup_tables`),
and at most two partial hours at its edges, read from the rows with the triggers' own
expressions. An edge is either added (the part of its hour inside the period) or
subtracted (the whole hour taken from the rollup, minus the part outside the period),
whichever spans less time; time after ``now`` counts as nothing, since no notification
is created in the future, so the default period (the day up to now) subtracts an empty
tail and reads no rows at all.

The medians to read are exact too: the rollup's histogram (reads per bin of whole
seconds, minutes or hours) says which bin holds the middle read(s) and at what rank;
one index range scan (``ix_attempt_read_bin`` on PostgreSQL) then reads the exact
values of that bin over the period. Everything else (late receipts, rows written before
``finished_channel`` or ``sms_step`` existed) is read as :mod:`dispatcher.stats` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlmodel import Session

from dispatcher import channel_stats, savings, stats
from dispatcher.click_stats import clicked_per_channel
from dispatcher.columns import UTCDateTime
from dispatcher.rollup_triggers import Kind, kinds, read_bin, seconds_to_read
from dispatcher.savings import Bucket, SeriesRow
from dispatcher.states import NotificationState

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


def _params(lo: datetime, hi: datetime, cascade: str | None) -> tuple[dict[str, Any], str]:
    values: dict[str, Any] = {"lo": lo, "hi": hi}
    if cascade:
        values["cascade"] = cascade
    return values, " AND cascade = :cascade" if cascade else ""


def _run(session: Session, sql: str, values: dict[str, Any]) -> Iterable[Any]:
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
    values, only = _params(lo, hi, cascade)
    part = "SELECT {k}, {s} FROM {t} WHERE hour >= :lo AND hour < :hi" + only  # noqa: S608
    hour_table = kind.delta.removesuffix("_delta") + "_hour"
    union = " UNION ALL ".join(
        part.format(k=keys, s=sums, t=table) for table in (hour_table, kind.delta)
    )
    sql = f"SELECT {keys}, {totals} FROM ({union}) AS r GROUP BY {keys}"  # noqa: S608
    return _collect(_run(session, sql, values), len(kind.keys), 1)


def _from_rows(
    session: Session, kind: Kind, lo: datetime, hi: datetime, cascade: str | None, sign: int
) -> Sums:
    created = "created_at" if kind.source == "notification" else "notification_created_at"
    exprs = [expr.format(r="") for _, expr in (*kind.keys, *kind.sums)]
    totals = exprs[: len(kind.keys)] + [f"sum({e})" for e in exprs[len(kind.keys) :]]
    values, only = _params(lo, hi, cascade)
    positions = ", ".join(str(i + 1) for i in range(len(kind.keys)))
    sql = (
        f"SELECT {', '.join(totals)} FROM {kind.source} "  # noqa: S608 - our constants
        f"WHERE {created} >= :lo AND {created} < :hi AND {kind.where.format(r='')}{only} "
        f"GROUP BY {positions}"
    )
    return _collect(_run(session, sql, values), len(kind.keys), sign)


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


def _add(total: Sums, part: Sums) -> None:
    for key, values in part.items():
        have = total.setdefault(key, [0.0] * len(values))
        for i, value in enumerate(values):
            have[i] += value


def sums(session: Session, kind: Kind, cut: Plan, cascade: str | None) -> Sums:
    """Per key (hour first) sums of ``kind`` over the period ``cut`` describes."""
    total: Sums = {}
    if cut.first < cut.last:
        _add(total, _from_rollup(session, kind, cut.first, cut.last, cascade))
    for lo, hi, sign in cut.live:
        _add(total, _from_rows(session, kind, lo, hi, cascade, sign))
    return {key: values for key, values in total.items() if round(values[0]) != 0}


def _groups(notifications: Sums) -> list[channel_stats.Group]:
    merged: Sums = {}
    for (_, _, state, channel, sms), values in notifications.items():
        _add(merged, {(state, channel, sms): values})
    return [
        (state, channel or None, None if sms < 0 else bool(sms), round(n), cost, round(segments))
        for (state, channel, sms), (n, cost, segments) in merged.items()
        if round(n) != 0
    ]


def _channel_rows(attempts: Sums) -> list[channel_stats.ChannelRow]:
    merged: Sums = {}
    for (_, _, channel), values in attempts.items():
        _add(merged, {(channel,): values})
    return [
        (channel, round(sent), round(delivered), round(read), cost, round(failed))
        for (channel,), (_, sent, delivered, read, failed, cost) in merged.items()
    ]


def _bins(reads: Sums) -> dict[str, dict[int, int]]:
    per_channel: dict[str, dict[int, int]] = {}
    for (_, _, channel, bin_), (n,) in reads.items():
        bins = per_channel.setdefault(channel, {})
        bins[int(bin_)] = bins.get(int(bin_), 0) + round(n)
    return per_channel


def _values_in_bin(
    session: Session,
    channel: str,
    bin_: int,
    offset: int,
    count: int,
    period: tuple[datetime, datetime, str | None],
) -> list[float]:
    """The ``offset``-th (and next) seconds to read, in order, of one bin over the period."""
    dialect = session.get_bind().dialect.name
    values, only = _params(*period)
    values.update(channel=channel, bin=bin_, offset=offset, count=count)
    seconds = seconds_to_read(dialect)
    sql = (
        f"SELECT {seconds} AS s FROM attempt WHERE channel = :channel "  # noqa: S608
        f"AND {read_bin(dialect)} = :bin AND read_at IS NOT NULL AND sent_at IS NOT NULL "
        f"AND notification_created_at >= :lo AND notification_created_at < :hi{only} "
    )
    if count > 1 or offset > 0:
        bounds = f"SELECT min(s), max(s) FROM ({sql}) AS b"  # noqa: S608 - our constants
        edges = list(_run(session, bounds, values))
        low, high = edges[0]
        if low is not None and low == high:
            return [float(low)] * count
    ordered = sql + "ORDER BY s LIMIT :count OFFSET :offset"
    return [float(row[0]) for row in _run(session, ordered, values)]


def _median(session: Session, channel: str, bins: dict[int, int], period: Any) -> float | None:
    """The median as the reference computes it, from the middle one or two reads."""
    total = sum(bins.values())
    if total <= 0:
        return None
    ranks = sorted({(total - 1) // 2, total // 2})
    picked: list[float] = []
    below = 0
    for bin_ in sorted(bins):
        inside = [rank - below for rank in ranks if below <= rank < below + bins[bin_]]
        if inside:
            count = inside[-1] - inside[0] + 1
            picked += _values_in_bin(session, channel, bin_, inside[0], count, period)
        below += bins[bin_]
    if len(picked) != len(ranks):  # rows changed between the statements
        return None
    if len(picked) == 1:
        return round(picked[0], 3)
    first, second = picked
    if session.get_bind().dialect.name == "postgresql":  # percentile_cont's interpolation
        return round(first + 0.5 * (second - first), 3)
    return round((first + second) / 2.0, 3)  # avg() of the middle two


def summary(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
    sms_cost: float,
    now: datetime,
) -> dict[str, Any]:
    """What :func:`dispatcher.stats.summary` answers, from the rollup and the edges."""
    dialect = session.get_bind().dialect.name
    notification, attempt, read = kinds(dialect)
    cut = plan(since, until, now)
    groups = _groups(sums(session, notification, cut, cascade))
    medians = {}
    for channel, bins in _bins(sums(session, read, cut, cascade)).items():
        median = _median(session, channel, bins, (since, until, cascade))
        if median is None:  # the rows moved under us: the reference's way, for this answer
            median = channel_stats.medians_to_read(session, since, until, cascade).get(channel)
        if median is not None:
            medians[channel] = median
    finished = channel_stats.finished_on(session, since, until, cascade, groups)
    clicks = clicked_per_channel(session, since, until, cascade)  # link clicks: few rows
    channels = channel_stats.channel_figures(
        _channel_rows(sums(session, attempt, cut, cascade)), medians, finished, clicks
    )
    return stats.assemble(session, since, until, cascade, sms_cost, groups, channels)


def series(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
    sms_cost: float,
    bucket: Bucket,
    now: datetime,
) -> list[dict[str, Any]]:
    """What :func:`dispatcher.savings.series` answers, from the rollup and the edges."""
    notification = kinds(session.get_bind().dialect.name)[0]
    per_hour = sums(session, notification, plan(since, until, now), cascade)
    buckets: dict[datetime, list[float]] = {}
    unknown = False
    for (hour, _, state, _, sms), (n, cost, _) in per_hour.items():
        start = hour if bucket == "hour" else hour.replace(hour=0)
        reached = state != NotificationState.SUPPRESSED.value
        have = buckets.setdefault(start, [0.0, 0.0, 0.0])
        have[0] += n
        have[1] += cost
        have[2] += n if reached and sms == 1 else 0
        unknown = unknown or (reached and sms < 0)
    unflagged: dict[str, int] = {}
    if unknown:
        start_text = savings.bucket_start(session.get_bind().dialect.name, bucket).label("start")
        unflagged = savings.unflagged_by_sms(session, start_text, since, until, cascade)
    rows: list[SeriesRow] = []
    for start, (n, cost, could) in buckets.items():
        if round(n) != 0:
            moment = start.strftime("%Y-%m-%dT%H:00:00")
            rows.append((start, round(n), cost, round(could) + unflagged.get(moment, 0)))
    return savings.series_figures(rows, sms_cost)
