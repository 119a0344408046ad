"""Money over time and money wasted: the stats page's time series and redundant sends.

``series`` buckets a period's notifications by the hour or the day they were created
(UTC) and gives, per bucket, what they cost, what the SMS-only way would have cost (one
SMS for each notification that could have gone by SMS: not suppressed, and its resolved
steps include SMS, as in :mod:`dispatcher.stats`), the difference, and the running total
saved since the start of the period.

``redundant`` counts redundant sends per channel: sends made at a later step than the
first step whose condition was met (the push read late, after the SMS had gone out). A
send is one that reached the provider: recorded as sent, or charged as of unknown outcome.
These are the sends that hindsight says were not needed, and what they cost.

Both are aggregated by the database; a handful of rows cross the wire.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, func, literal_column, or_, text
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from dispatcher.channel_stats import DONE
from dispatcher.models import Attempt, Notification
from dispatcher.states import NotificationState
from dispatcher.stats import _SMS_IN_STEPS

Bucket = Literal["hour", "day"]
#: Periods up to this long are bucketed by the hour, longer ones by the day.
HOURLY_UP_TO = timedelta(days=2)
_FORMATS = {
    "hour": ('YYYY-MM-DD"T"HH24:00:00', "%Y-%m-%dT%H:00:00"),
    "day": ('YYYY-MM-DD"T"00:00:00', "%Y-%m-%dT00:00:00"),
}


def bucket_for(since: datetime, until: datetime, bucket: Bucket | None) -> Bucket:
    """The bucket asked for, else hours for short periods and days for long ones."""
    if bucket is not None:
        return bucket
    return "hour" if until - since <= HOURLY_UP_TO else "day"


def bucket_start(dialect: str, bucket: Bucket) -> Any:
    """The UTC start of a notification's bucket as ``YYYY-MM-DDTHH:00:00`` text."""
    pg_format, sqlite_format = _FORMATS[bucket]
    if dialect == "postgresql":
        return func.to_char(
            func.date_trunc(bucket, col(Notification.created_at)), text(f"'{pg_format}'")
        )
    return func.strftime(sqlite_format, col(Notification.created_at))


def _in_period(query: Any, since: datetime, until: datetime, cascade: str | None) -> Any:
    query = query.where(col(Notification.created_at) >= since, col(Notification.created_at) < until)
    return query.where(Notification.cascade == cascade) if cascade else query


def unflagged_by_sms(
    session: Session, start: Any, since: datetime, until: datetime, cascade: str | None
) -> dict[str, int]:
    """Per bucket: notifications without ``sms_step`` whose resolved steps include SMS."""
    dialect = session.get_bind().dialect.name
    query = sa_select(start, func.count()).where(
        col(Notification.state) != NotificationState.SUPPRESSED.value,
        col(Notification.sms_step).is_(None),
        text(_SMS_IN_STEPS[dialect]),
    )
    rows = session.execute(_in_period(query.group_by(start), since, until, cascade))
    return {moment: int(n) for moment, n in rows}


def series(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
    sms_cost: float,
    bucket: Bucket,
) -> list[dict[str, Any]]:
    """Per bucket with notifications: count, cost, SMS-only cost, saved, saved so far.

    Read from the columns ``ix_notification_created`` covers; rows written without
    ``sms_step`` (none since its migration) are looked up in their steps separately.
    """
    start = bucket_start(session.get_bind().dialect.name, bucket).label("start")
    reached = col(Notification.state) != NotificationState.SUPPRESSED.value
    flag = col(Notification.sms_step)
    query = sa_select(
        start,
        func.count(),
        func.coalesce(func.sum(Notification.cost), 0.0),
        func.coalesce(func.sum(case((and_(reached, flag.is_(True)), 1), else_=0)), 0),
        func.coalesce(func.sum(case((and_(reached, flag.is_(None)), 1), else_=0)), 0),
    ).group_by(start)
    rows = session.execute(_in_period(query, since, until, cascade).order_by(start)).all()
    unflagged = (
        unflagged_by_sms(session, start, since, until, cascade) if any(n for *_, n in rows) else {}
    )
    return series_figures(
        [
            (
                datetime.fromisoformat(moment).replace(tzinfo=UTC),
                int(count),
                float(cost),
                int(could_sms) + unflagged.get(moment, 0),
            )
            for moment, count, cost, could_sms, _ in rows
        ],
        sms_cost,
    )


#: (bucket start, notifications, cost, of them could have gone by SMS) of one bucket.
SeriesRow = tuple[datetime, int, float, int]


def series_figures(rows: list[SeriesRow], sms_cost: float) -> list[dict[str, Any]]:
    """The ``series`` list of ``/v1/stats`` from per bucket sums, in bucket order."""
    result = []
    saved_so_far = 0.0
    for moment, count, cost, could_sms in sorted(rows):
        sms_only = round(could_sms * sms_cost, 6)
        saved = round(sms_only - float(cost), 6)
        saved_so_far = round(saved_so_far + saved, 6)
        result.append(
            {
                "start": moment,
                "notifications": int(count),
                "cost": round(float(cost), 6),
                "sms_only_cost": sms_only,
                "saved": saved,
                "saved_to_date": saved_so_far,
            }
        )
    return result


def _satisfied(attempt: Any) -> Any:
    """The attempt's step condition was met (whenever its confirmation arrived)."""
    return or_(
        and_(attempt.wait_for == "sent", attempt.sent_at.is_not(None)),
        and_(
            attempt.wait_for == "delivered",
            or_(attempt.delivered_at.is_not(None), attempt.read_at.is_not(None)),
        ),
        and_(attempt.wait_for == "read", attempt.read_at.is_not(None)),
        and_(attempt.wait_for == "clicked", attempt.clicked_at.is_not(None)),
    )


def redundant(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
    by_copies: bool = True,
) -> list[dict[str, Any]]:
    """Per channel: sends after a step that was (eventually) confirmed, and their cost.

    ``by_copies``: also select the attempts by the period and cascade they carry, so
    PostgreSQL reads only the period's later-step sends (``ix_attempt_period_later_sends``)
    instead of every notification of the period; the answer is the same (the copies are
    the notification's), which the rollup test checks against ``by_copies=False``.
    """
    first = aliased(Attempt)
    first_confirmed = (
        sa_select(func.min(first.step))
        .where(col(first.notification_id) == col(Attempt.notification_id), _satisfied(first))
        .scalar_subquery()
    )
    zero: Any = literal_column("0")  # a constant, so the partial index's predicate is implied
    query = (
        sa_select(
            col(Attempt.channel),
            func.count(),
            func.coalesce(func.sum(Attempt.cost), 0.0),
        )
        .join(Notification, col(Notification.id) == col(Attempt.notification_id))
        .where(
            col(Notification.state).in_(DONE),
            col(Attempt.step) > zero,
            or_(col(Attempt.sent_at).is_not(None), col(Attempt.cost) > zero),
            col(Attempt.step) > first_confirmed,
        )
        .group_by(col(Attempt.channel))
    )
    if by_copies:
        created = col(Attempt.notification_created_at)
        query = query.where(created >= since, created < until)
        query = query.where(col(Attempt.cascade) == cascade) if cascade else query
    rows = session.execute(_in_period(query, since, until, cascade)).all()
    return [
        {"channel": channel, "sends": int(n), "cost": round(float(cost), 6)}
        for channel, n, cost in sorted(rows)
    ]
