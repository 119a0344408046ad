"""One notification's timeline across channels, and the latest notifications of a period.

The timeline has one lane per attempt (``"0 push"``, ``"1 sms"``) under a lane for the
notification itself. Each attempt is a span from the moment its row was created to the
moment it finished (or the last thing that happened to it); every history event is a
mark on its lane at its offset in seconds from the notification's creation. Ids, channel
names, states and codes only: no addresses, no message text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from dispatcher.models import Attempt, Event, Notification

NOTIFICATION_LANE = "notification"


def lane_of(attempt: Attempt) -> str:
    return f"{attempt.step} {attempt.channel}"


def _offset(moment: datetime | None, start: datetime) -> float | None:
    return None if moment is None else round((moment - start).total_seconds(), 3)


def _span_end(attempt: Attempt, events: Sequence[Event]) -> datetime:
    moments = [
        m
        for m in (
            attempt.finished_at,
            attempt.sent_at,
            attempt.delivered_at,
            attempt.read_at,
            *(e.at for e in events if e.attempt_id == attempt.id),
        )
        if m is not None
    ]
    return max(moments, default=attempt.created_at)


def build(
    notification: Notification, attempts: Sequence[Attempt], events: Sequence[Event]
) -> dict[str, Any]:
    """The lanes, spans and marks the timeline page draws (pure: rows in, a dict out)."""
    start = notification.created_at
    lanes = {a.id: lane_of(a) for a in attempts}
    spans = [
        {
            "lane": lanes[a.id],
            "attempt_id": a.id,
            "channel": a.channel,
            "provider": a.provider,
            "state": a.state,
            "wait_for": a.wait_for,
            "from": _offset(a.created_at, start),
            "to": _offset(_span_end(a, events), start),
            "cost": round(a.cost, 6),
            "error_code": a.error_code,
        }
        for a in attempts
    ]
    marks = [
        {
            "lane": lanes.get(e.attempt_id or "", NOTIFICATION_LANE),
            "type": e.type,
            "at": e.at,
            "offset": _offset(e.at, start),
            "source": e.source,
            "detail": e.detail,
        }
        for e in events
    ]
    return {
        "id": notification.id,
        "customer_id": notification.customer_id,
        "cascade": notification.cascade,
        "category": notification.category,
        "state": notification.state,
        "reason": notification.reason,
        "created_at": notification.created_at,
        "finished_at": notification.finished_at,
        "finished_channel": notification.finished_channel,
        "cost": round(notification.cost, 6),
        "experiment": notification.experiment,
        "variant": notification.variant,
        #: An adaptive cascade's reason for its order ("viber first: 9/10 read within 15 min").
        "order": next((e.detail.get("reason") for e in events if e.type == "ordered"), None),
        "lanes": [NOTIFICATION_LANE, *lanes.values()],
        "spans": spans,
        "marks": marks,
    }


def load(session: Session, notification_id: str) -> dict[str, Any] | None:
    """The timeline of one notification, or None if there is no such notification."""
    notification = session.get(Notification, notification_id)
    if notification is None:
        return None
    return build(notification, *rows_of(session, notification.id))


def rows_of(session: Session, notification_id: str) -> tuple[Sequence[Attempt], Sequence[Event]]:
    """A notification's attempts in step order and its history in order."""
    attempts = session.exec(
        select(Attempt)
        .where(Attempt.notification_id == notification_id)
        .order_by(col(Attempt.step))
    ).all()
    events = session.exec(
        select(Event).where(Event.notification_id == notification_id).order_by(col(Event.id))
    ).all()
    return attempts, events


def recent(
    session: Session, *, since: datetime, until: datetime, cascade: str | None, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest notifications created in the period: links to their timelines."""
    query = (
        sa_select(
            col(Notification.id),
            col(Notification.cascade),
            col(Notification.state),
            col(Notification.finished_channel),
            col(Notification.created_at),
            col(Notification.cost),
        )
        .where(col(Notification.created_at) >= since, col(Notification.created_at) < until)
        .order_by(col(Notification.created_at).desc(), col(Notification.id))
        .limit(limit)
    )
    if cascade:
        query = query.where(col(Notification.cascade) == cascade)
    return [
        {
            "id": nid,
            "cascade": name,
            "state": state,
            "finished_channel": channel,
            "created_at": created,
            "cost": round(float(cost), 6),
        }
        for nid, name, state, channel, created, cost in session.execute(query)
    ]
