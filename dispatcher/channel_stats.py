"""Per channel statistics over a period: sent, delivered, read, clicked, failed, cost,
the median time to read, and where notifications finished.

Read from the copies of ``created_at`` and ``cascade`` that attempts carry, without
joining notifications; :mod:`dispatcher.stats` assembles them into the summary, and
:mod:`dispatcher.rollup` reuses :func:`channel_figures` over its hourly sums. Also what
both share: :data:`DONE`, :data:`Group` and the period filter :func:`in_period`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, extract, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from dispatcher.click_stats import clicked_per_channel
from dispatcher.models import Attempt, Event, Notification
from dispatcher.states import CONFIRMED_STATES

#: Final states reached through a channel: the notification finished on that channel.
DONE = tuple(state.value for state in CONFIRMED_STATES)

#: (state, finished_channel, sms_step, notifications, cost, SMS segments) of one group.
Group = tuple[str, str | None, bool | None, int, float, int]


def in_period(query: Any, since: datetime, until: datetime, cascade: str | None) -> Any:
    query = query.where(col(Notification.created_at) >= since, col(Notification.created_at) < until)
    return query.where(Notification.cascade == cascade) if cascade else query


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _attempts_in_period(query: Any, since: datetime, until: datetime, cascade: str | None) -> Any:
    """Attempts of the period's notifications, from the copies they carry (no join)."""
    created = col(Attempt.notification_created_at)
    query = query.where(created >= since, created < until)
    return query.where(Attempt.cascade == cascade) if cascade else query


def _seconds_to_read(dialect: str) -> Any:
    if dialect == "postgresql":
        return extract("epoch", col(Attempt.read_at) - col(Attempt.sent_at))
    return (func.julianday(Attempt.read_at) - func.julianday(Attempt.sent_at)) * 86400.0


def medians_to_read(
    session: Session, since: datetime, until: datetime, cascade: str | None
) -> dict[str, float]:
    """Median seconds from sent to read per channel (the mean of the middle two if even)."""
    dialect = session.get_bind().dialect.name
    seconds = _seconds_to_read(dialect)
    read = (col(Attempt.read_at).is_not(None), col(Attempt.sent_at).is_not(None))
    if dialect == "postgresql":
        query = sa_select(
            col(Attempt.channel), func.percentile_cont(0.5).within_group(seconds)
        ).group_by(col(Attempt.channel))
        rows = session.execute(_attempts_in_period(query.where(*read), since, until, cascade))
        return {channel: round(float(value), 3) for channel, value in rows}
    ranked = _attempts_in_period(
        sa_select(
            col(Attempt.channel).label("channel"),
            seconds.label("seconds"),
            func.row_number()
            .over(partition_by=col(Attempt.channel), order_by=seconds)
            .label("rank"),
            func.count().over(partition_by=col(Attempt.channel)).label("total"),
        ).where(*read),
        since,
        until,
        cascade,
    ).subquery()
    middle = sa_select(ranked.c.channel, func.avg(ranked.c.seconds)).where(
        ranked.c.rank.in_([(ranked.c.total + 1) // 2, (ranked.c.total + 2) // 2])
    )
    rows = session.execute(middle.group_by(ranked.c.channel))
    return {channel: round(float(value), 3) for channel, value in rows}


#: (channel, sent, delivered, read, cost, failed) of one channel over a period.
ChannelRow = tuple[str, int, int, int, float, int]


def channel_figures(
    rows: list[ChannelRow],
    medians: dict[str, float],
    finished: dict[str, int],
    clicks: dict[str, int],
) -> list[dict[str, Any]]:
    """The ``channels`` list of ``/v1/stats`` from the per channel sums."""
    total_finished = sum(finished.values())
    result = []
    for channel, sent, delivered, read, cost, failed in sorted(rows):
        clicked = clicks.get(channel, 0)
        result.append(
            {
                "channel": channel,
                "sent": sent,
                "delivered": delivered,
                "read": read,
                "failed": int(failed),
                "delivery_rate": _rate(delivered, sent),
                "read_rate": _rate(read, sent),
                "clicked": clicked,  #: attempts with a counted click on a tracked link
                "click_rate": _rate(clicked, sent),
                "median_seconds_to_read": medians.get(channel),
                "cost": round(float(cost or 0.0), 6),
                "finished_here": finished.get(channel, 0),
                "finished_share": _rate(finished.get(channel, 0), total_finished),
            }
        )
    return result


def channel_stats(
    session: Session,
    since: datetime,
    until: datetime,
    cascade: str | None,
    groups: list[Group],
) -> list[dict[str, Any]]:
    rows = session.execute(
        _attempts_in_period(
            sa_select(
                col(Attempt.channel),
                func.count(col(Attempt.sent_at)),
                func.count(col(Attempt.delivered_at)),
                func.count(col(Attempt.read_at)),
                func.sum(func.coalesce(Attempt.cost, 0.0)),
                _count_if(col(Attempt.error_code).is_not(None) & col(Attempt.sent_at).is_(None)),
            ).group_by(col(Attempt.channel)),
            since,
            until,
            cascade,
        )
    ).all()
    medians = medians_to_read(session, since, until, cascade)
    finished = finished_on(session, since, until, cascade, groups)
    return channel_figures(
        [(c, s, d, r, float(cost or 0.0), int(f)) for c, s, d, r, cost, f in rows],
        medians,
        finished,
        clicked_per_channel(session, since, until, cascade),
    )


def finished_on(
    session: Session,
    since: datetime,
    until: datetime,
    cascade: str | None,
    groups: list[Group],
) -> dict[str, int]:
    """Notifications finished (sent, delivered or read) per channel.

    From ``finished_channel``; rows written without it are counted from the channel of
    their ``finished`` history event, which is what the column holds.
    """
    counts: dict[str, int] = {}
    unrecorded = 0
    for state, channel, _, n, _, _ in groups:
        if state in DONE and channel:
            counts[channel] = counts.get(channel, 0) + n
        elif state in DONE:
            unrecorded += n
    if unrecorded:
        query = (
            sa_select(col(Event.channel), func.count())
            .join(Notification, col(Notification.id) == col(Event.notification_id))
            .where(
                col(Event.type) == "finished",
                col(Event.channel).is_not(None),
                col(Notification.finished_channel).is_(None),
                col(Notification.state).in_(DONE),
            )
            .group_by(col(Event.channel))
        )
        for channel, n in session.execute(in_period(query, since, until, cascade)):
            counts[channel] = counts.get(channel, 0) + int(n)
    return counts
