"""The append-only event history: one timeline per customer, no message text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from dispatcher.models import Attempt, Event, Notification


def record(
    session: Session,
    type_: str,
    *,
    at: datetime,
    source: str,
    notification: Notification | None = None,
    attempt: Attempt | None = None,
    **detail: Any,
) -> Event:
    """Append one event. ``detail`` must hold ids and codes only, never content or addresses."""
    event = Event(
        notification_id=notification.id if notification else None,
        customer_id=notification.customer_id if notification else None,
        attempt_id=attempt.id if attempt else None,
        channel=attempt.channel if attempt else None,
        type=type_,
        at=at,
        source=source,
        detail=detail,
    )
    session.add(event)
    return event
