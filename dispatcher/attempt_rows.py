"""A step's attempt row: created pending, due now or when the customer's quiet hours end.

Inserted one at a time here (intake, a cascade's next step); a broadcast's fan-out
builds the same columns for its bulk write in :mod:`dispatcher.audience`.
"""

from __future__ import annotations

from datetime import datetime, time

from sqlmodel import Session

from dispatcher.content import attempt_fields
from dispatcher.customer_tables import Customer
from dispatcher.engine import PlannedStep, release_time
from dispatcher.history import record
from dispatcher.models import Attempt, Notification
from dispatcher.publisher import Doorbell
from dispatcher.states import AttemptState


def quiet_hours_of(customer: Customer | None) -> tuple[time, time] | None:
    if customer is None or not customer.quiet_start or not customer.quiet_end:
        return None
    return time.fromisoformat(customer.quiet_start), time.fromisoformat(customer.quiet_end)


def create_attempt(
    session: Session,
    notification: Notification,
    step: int,
    now: datetime,
) -> tuple[Attempt, Doorbell | None]:
    """Insert the attempt for ``step``; return it and a doorbell if it is due now."""
    planned = PlannedStep.from_json(notification.steps[step])
    due = now
    if notification.respect_quiet_hours:
        customer = session.get(Customer, notification.customer_id)
        tz = customer.timezone if customer else "UTC"
        due = release_time(now, quiet_hours_of(customer), tz)
    attempt = Attempt(
        **attempt_fields(notification.content.get(planned.channel.value)),
        notification_id=notification.id,
        step=step,
        channel=planned.channel.value,
        contact_id=planned.contact_id,
        wait_for=planned.wait_for.value,
        timeout_seconds=planned.timeout,
        state=AttemptState.PENDING,
        due_at=due,
        published_at=now if due <= now else None,
        created_at=now,
        notification_created_at=notification.created_at,
        cascade=notification.cascade,
    )
    session.add(attempt)
    if due > now:
        record(
            session,
            "postponed",
            at=now,
            source="engine",
            notification=notification,
            attempt=attempt,
            reason="quiet_hours",
            until=due.isoformat(),
        )
        return attempt, None
    return attempt, Doorbell(attempt.id, attempt.channel, notification.id)
