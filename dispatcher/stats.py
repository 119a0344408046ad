"""Delivery statistics: per channel rates, time to read, cost, and money saved.

"Saved" compares what the notifications cost with what the SMS-only way would have
cost: every notification that could have gone by SMS (not suppressed, and its resolved
steps include SMS) sent as SMS, billed per segment (``notification.sms_segments``, the
segments of its rendered SMS text; rows from before segments were counted count one)
at the configured SMS cost per segment. Redundant sends are
attempts sent after an earlier step of the same notification had already been read
or delivered late (counted as ``late_receipts``).

Every figure is aggregated by the database (GROUP BY, CASE, a median by
``percentile_cont`` on PostgreSQL and by window functions on SQLite), from indexes that
cover the columns read: a handful of rows cross the wire whatever the period holds.
Attempts carry their notification's ``created_at`` and ``cascade`` (copied when written),
so the per-channel figures read one index of ``attempt`` without joining notifications.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from dispatcher.channel_stats import Group, channel_stats, in_period
from dispatcher.models import Event, Notification
from dispatcher.states import NotificationState

#: PostgreSQL memory for this read-only transaction: the medians sort the period's read
#: times per channel (about 12 MB per million reads); less spills to disk.
WORK_MEM = "64MB"
#: "The resolved steps include SMS", for rows whose ``sms_step`` is NULL.
_SMS_IN_STEPS = {
    "postgresql": "EXISTS (SELECT 1 FROM json_array_elements(notification.steps) AS step "
    "WHERE step ->> 'channel' = 'sms')",
    "sqlite": "EXISTS (SELECT 1 FROM json_each(notification.steps) "
    "WHERE json_extract(json_each.value, '$.channel') = 'sms')",
}


def _notification_groups(
    session: Session, since: datetime, until: datetime, cascade: str | None
) -> list[Group]:
    """(state, finished_channel, sms_step, count, cost, SMS segments) over the period:
    one index scan."""
    query = sa_select(
        col(Notification.state),
        col(Notification.finished_channel),
        col(Notification.sms_step),
        func.count(),
        func.coalesce(func.sum(Notification.cost), 0.0),
        func.coalesce(func.sum(func.coalesce(Notification.sms_segments, 1)), 0),
    ).group_by(
        col(Notification.state), col(Notification.finished_channel), col(Notification.sms_step)
    )
    rows = session.execute(in_period(query, since, until, cascade)).all()
    return [
        (state, channel, sms, int(n), float(cost), int(segments))
        for state, channel, sms, n, cost, segments in rows
    ]


def could_go_by_sms(
    session: Session,
    since: datetime,
    until: datetime,
    cascade: str | None,
    groups: list[Group],
) -> int:
    """SMS segments of the notifications not suppressed whose resolved steps include SMS."""
    reached = [
        (sms, segments)
        for state, _, sms, _, _, segments in groups
        if state != NotificationState.SUPPRESSED
    ]
    known = sum(segments for sms, segments in reached if sms)
    if not any(sms is None for sms, _ in reached):
        return known
    in_steps = text(_SMS_IN_STEPS[session.get_bind().dialect.name])
    query = sa_select(func.count()).where(
        col(Notification.state) != NotificationState.SUPPRESSED.value,
        col(Notification.sms_step).is_(None),
        in_steps,
    )
    return known + int(session.execute(in_period(query, since, until, cascade)).scalar_one())


def summary(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
    sms_cost: float,
) -> dict[str, Any]:
    """The full recomputation from the rows: the reference :mod:`dispatcher.rollup` equals."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    groups = _notification_groups(session, since, until, cascade)
    channels = channel_stats(session, since, until, cascade, groups)
    return assemble(session, since, until, cascade, sms_cost, groups, channels)


def late_receipts(session: Session, since: datetime, until: datetime, cascade: str | None) -> int:
    """Receipts that arrived after their step had escalated (history ``late_receipt``)."""
    late = session.execute(
        in_period(
            sa_select(func.count())
            .select_from(Event)
            .join(Notification, col(Notification.id) == col(Event.notification_id))
            .where(col(Event.type) == "late_receipt"),
            since,
            until,
            cascade,
        )
    ).scalar_one()
    return int(late)


def assemble(
    session: Session,
    since: datetime,
    until: datetime,
    cascade: str | None,
    sms_cost: float,
    groups: list[Group],
    channels: list[dict[str, Any]],
) -> dict[str, Any]:
    """The summary document from the period's groups and channel figures."""
    states: dict[str, int] = {}
    for state, _, _, n, _, _ in groups:
        states[state] = states.get(state, 0) + n
    total_cost = sum(cost for _, _, _, _, cost, _ in groups)
    sms_only = round(could_go_by_sms(session, since, until, cascade, groups) * sms_cost, 6)
    cost = round(float(total_cost), 6)
    return {
        "since": since,
        "until": until,
        "cascade": cascade,
        "notifications": sum(states.values()),
        "by_state": states,
        "channels": channels,
        "cost": cost,
        "sms_only_cost": sms_only,
        "saved": round(sms_only - cost, 6),
        "late_receipts": late_receipts(session, since, until, cascade),
    }
