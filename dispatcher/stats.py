"""Delivery statistics: per channel rates, time to read, cost, and money saved.

"Saved" compares what the notifications cost with what sending every one of them
as an SMS would have cost (one SMS at the configured SMS cost per notification
that was not suppressed). Redundant sends are attempts sent after an earlier
step of the same notification had already been read or delivered late.
"""

from __future__ import annotations

from datetime import datetime
from statistics import median
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from dispatcher.models import Attempt, Event, Notification
from dispatcher.states import NotificationState


def _in_period(query: Any, since: datetime, until: datetime, cascade: str | None) -> Any:
    query = query.where(col(Notification.created_at) >= since, col(Notification.created_at) < until)
    return query.where(Notification.cascade == cascade) if cascade else query


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def channel_stats(
    session: Session, since: datetime, until: datetime, cascade: str | None
) -> list[dict[str, Any]]:
    rows = session.execute(  # five columns: SQLAlchemy's select, not SQLModel's
        _in_period(
            sa_select(
                col(Attempt.channel),
                func.count(col(Attempt.sent_at)),
                func.count(col(Attempt.delivered_at)),
                func.count(col(Attempt.read_at)),
                func.sum(func.coalesce(Attempt.cost, 0.0)),
            )
            .join(Notification, col(Notification.id) == col(Attempt.notification_id))
            .group_by(col(Attempt.channel)),
            since,
            until,
            cascade,
        )
    ).all()
    failed = dict(
        session.exec(
            _in_period(
                select(Attempt.channel, func.count())
                .join(Notification, col(Notification.id) == col(Attempt.notification_id))
                .where(col(Attempt.error_code).is_not(None), col(Attempt.sent_at).is_(None))
                .group_by(col(Attempt.channel)),
                since,
                until,
                cascade,
            )
        ).all()
    )
    finished = _finished_on(session, since, until, cascade)
    total_finished = sum(finished.values())
    result = []
    for channel, sent, delivered, read, cost in sorted(rows):
        result.append(
            {
                "channel": channel,
                "sent": sent,
                "delivered": delivered,
                "read": read,
                "failed": failed.get(channel, 0),
                "delivery_rate": _rate(delivered, sent),
                "read_rate": _rate(read, sent),
                "median_seconds_to_read": _median_to_read(session, channel, since, until, cascade),
                "cost": round(float(cost or 0.0), 6),
                "finished_here": finished.get(channel, 0),
                "finished_share": _rate(finished.get(channel, 0), total_finished),
            }
        )
    return result


def _median_to_read(
    session: Session, channel: str, since: datetime, until: datetime, cascade: str | None
) -> float | None:
    pairs = session.exec(
        _in_period(
            select(Attempt.sent_at, Attempt.read_at)
            .join(Notification, col(Notification.id) == col(Attempt.notification_id))
            .where(Attempt.channel == channel, col(Attempt.read_at).is_not(None))
            .limit(10_000),
            since,
            until,
            cascade,
        )
    ).all()
    seconds = [(read - sent).total_seconds() for sent, read in pairs if sent and read]
    return round(median(seconds), 3) if seconds else None


def _finished_on(
    session: Session, since: datetime, until: datetime, cascade: str | None
) -> dict[str, int]:
    events = session.exec(
        _in_period(
            select(Event.channel, Event.detail)
            .join(Notification, col(Notification.id) == col(Event.notification_id))
            .where(Event.type == "finished", col(Event.channel).is_not(None)),
            since,
            until,
            cascade,
        )
    ).all()
    done = {
        NotificationState.READ.value,
        NotificationState.DELIVERED.value,
        NotificationState.SENT.value,
    }
    counts: dict[str, int] = {}
    for channel, detail in events:
        if channel and detail.get("state") in done:
            counts[channel] = counts.get(channel, 0) + 1
    return counts


def summary(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
    sms_cost: float,
) -> dict[str, Any]:
    states = dict(
        session.exec(
            _in_period(
                select(Notification.state, func.count()).group_by(col(Notification.state)),
                since,
                until,
                cascade,
            )
        ).all()
    )
    total_cost = session.exec(
        _in_period(select(func.coalesce(func.sum(Notification.cost), 0.0)), since, until, cascade)
    ).one()
    reached = sum(n for state, n in states.items() if state != NotificationState.SUPPRESSED.value)
    late = session.exec(
        _in_period(
            select(func.count())
            .select_from(Event)
            .join(Notification, col(Notification.id) == col(Event.notification_id))
            .where(Event.type == "late_receipt"),
            since,
            until,
            cascade,
        )
    ).one()
    sms_only = round(reached * sms_cost, 6)
    cost = round(float(total_cost), 6)
    return {
        "since": since,
        "until": until,
        "cascade": cascade,
        "notifications": sum(states.values()),
        "by_state": states,
        "channels": channel_stats(session, since, until, cascade),
        "cost": cost,
        "sms_only_cost": sms_only,
        "saved": round(sms_only - cost, 6),
        "late_receipts": int(late),
    }
