"""The append-only event history: one timeline per customer, no message text.

Events are collected on the session and written in one multi-row INSERT just
before the transaction commits (nothing reads them back inside it), instead of a
flush and an INSERT each; a rollback drops them with everything else.

Once the transaction committed, the same rows go to the :data:`observers`
(metrics, Flower rows): what they count is exactly what the history holds, and
nothing of theirs runs inside the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session as OrmSession

from dispatcher.models import Attempt, Event, Notification

_PENDING = "cascade.history"
_COMMITTED = "cascade.history.committed"

log = logging.getLogger(__name__)

#: One history row as written: ids, type, source and ``detail`` (never content).
Row = dict[str, Any]
#: Called after commit with the rows the transaction wrote; must be quick and not raise.
observers: list[Callable[[Sequence[Row]], None]] = []


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


def written(session: OrmSession, rows: Sequence[Row]) -> None:
    """Rows inserted in bulk by the caller itself: observed after commit like the others."""
    session.info.setdefault(_COMMITTED, []).extend(rows)


@event.listens_for(OrmSession, "before_commit")
def _write(session: OrmSession) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(insert(Event.__table__), rows)  # type: ignore[attr-defined]
        session.info.setdefault(_COMMITTED, []).extend(rows)


@event.listens_for(OrmSession, "after_commit")
def _observe(session: OrmSession) -> None:
    rows = session.info.pop(_COMMITTED, None)
    if not rows:
        return
    for observer in observers:
        try:
            observer(rows)
        except Exception as exc:  # monitoring never breaks the work it watches
            log.warning("history observer failed", extra={"error": type(exc).__name__})


@event.listens_for(OrmSession, "after_rollback")
def _drop(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_COMMITTED, None)
