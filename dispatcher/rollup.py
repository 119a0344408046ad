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

The cut and its sums are in :mod:`dispatcher.rollup_sums`, the exact medians in
:mod:`dispatcher.rollup_medians`; this module turns them into the answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from dispatcher import channel_stats, savings, stats
from dispatcher.click_stats import clicked_per_channel
from dispatcher.rollup_medians import exact_median, read_bins
from dispatcher.rollup_sums import Sums, add, plan, sums
from dispatcher.rollup_triggers import kinds
from dispatcher.savings import Bucket, SeriesRow
from dispatcher.states import NotificationState


def _groups(notifications: Sums) -> list[channel_stats.Group]:
    merged: Sums = {}
    for (_, _, state, channel, sms), values in notifications.items():
        add(merged, {(state, channel, sms): values})
    return [
        (state, channel or None, None if sms < 0 else bool(sms), round(n), cost, round(segments))
        for (state, channel, sms), (n, cost, segments) in merged.items()
        if round(n) != 0
    ]


def _channel_rows(attempts: Sums) -> list[channel_stats.ChannelRow]:
    merged: Sums = {}
    for (_, _, channel), values in attempts.items():
        add(merged, {(channel,): values})
    return [
        (channel, round(sent), round(delivered), round(read), cost, round(failed))
        for (channel,), (_, sent, delivered, read, failed, cost) in merged.items()
    ]


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
    for channel, bins in read_bins(sums(session, read, cut, cascade)).items():
        median = exact_median(session, channel, bins, (since, until, cascade))
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
