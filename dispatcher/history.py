"""The append-only event history: one timeline per customer, no message text.

Events are collected on the session and written in one multi-row INSERT just
before the transaction commits (nothing reads them back inside it), instead of a
flush and an INSERT each; a rollback drops them with everything else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session as OrmSession

from dispatcher.models import Attempt, Event, Notification

_PENDING = "cascade.history"


def record(
    session: OrmSession,
    type_: str,
    *,
    at: datetime,
    source: str,
    notification: Notification | None = None,
    attempt: Attempt | None = None,
    **detail: Any,
) -> None:
    """Append one event. ``detail`` must hold ids and codes only, never content or addresses."""
    session.info.setdefault(_PENDING, []).append(
        {
            "notification_id": notification.id if notification else None,
            "customer_id": notification.customer_id if notification else None,
            "attempt_id": attempt.id if attempt else None,
            "channel": attempt.channel if attempt else None,
            "type": type_,
            "at": at,
            "source": source,
            "detail": detail,
        }
    )


@event.listens_for(OrmSession, "before_commit")
def _write(session: OrmSession) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(insert(Event), rows)


@event.listens_for(OrmSession, "after_rollback")
def _drop(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)
