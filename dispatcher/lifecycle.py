"""Notification lifecycle in the database: create attempts, escalate, finish.

Every state change is a compare-and-set ``UPDATE ... WHERE state = <expected>``,
so two processes racing on one row cannot both win; the loser sees 0 rows.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from dispatcher.engine import PlannedStep, release_time
from dispatcher.history import record
from dispatcher.models import Attempt, Customer, Notification
from dispatcher.publisher import Doorbell
from dispatcher.states import OPEN_STATES, AttemptState, NotificationState, can_move


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
    return attempt, Doorbell(attempt.id, attempt.channel)


def move(session: Session, attempt: Attempt, expected: AttemptState, **values: object) -> bool:
    """Compare-and-set one attempt from ``expected``; refresh it when it moved.

    The target must be allowed by the state machine (:data:`TRANSITIONS`).
    """
    target = values.get("state")
    if target is not None and not can_move(expected, AttemptState(str(target))):
        raise ValueError(f"illegal attempt transition {expected} -> {target}")
    result = session.execute(
        update(Attempt)
        .where(col(Attempt.id) == attempt.id, col(Attempt.state) == expected.value)
        .values(**values)
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        session.refresh(attempt)
    return moved


def move_notification(
    session: Session, notification: Notification, target: NotificationState, **values: object
) -> bool:
    """Compare-and-set a notification out of an open state."""
    result = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == notification.id,
            col(Notification.state).in_([s.value for s in OPEN_STATES]),
        )
        .values(state=target.value, **values)
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        session.refresh(notification)
    return moved


def cancel_pending(session: Session, notification: Notification, now: datetime) -> int:
    """Cancel attempts not yet claimed: they will never be sent."""
    result = session.execute(
        update(Attempt)
        .where(
            col(Attempt.notification_id) == notification.id,
            col(Attempt.state) == AttemptState.PENDING.value,
        )
        .values(state=AttemptState.CANCELLED.value, finished_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish(
    session: Session,
    notification: Notification,
    state: NotificationState,
    now: datetime,
    *,
    source: str,
    reason: str | None = None,
    attempt: Attempt | None = None,
) -> bool:
    """Close an open notification; cancel what was not sent. False if already closed."""
    if not move_notification(session, notification, state, finished_at=now, reason=reason):
        return False
    cancelled = cancel_pending(session, notification, now)
    record(
        session,
        "finished",
        at=now,
        source=source,
        notification=notification,
        attempt=attempt,
        state=state.value,
        reason=reason,
        cancelled_attempts=cancelled,
    )
    return True


def escalate(
    session: Session,
    notification: Notification,
    attempt: Attempt,
    now: datetime,
    *,
    source: str,
) -> Doorbell | None:
    """Give up waiting on ``attempt`` and start the next step (or exhaust the cascade).

    Returns the doorbell of the next attempt if one is due now. Safe to race:
    the CAS on the attempt and the unique (notification, step) let one caller win.
    """
    expected = AttemptState(attempt.state)
    if notification.state not in OPEN_STATES:
        return None
    if not move(session, attempt, expected, state=AttemptState.ESCALATED.value, finished_at=now):
        return None
    record(
        session,
        "escalated",
        at=now,
        source=source,
        notification=notification,
        attempt=attempt,
        from_state=expected.value,
    )
    next_step = attempt.step + 1
    if next_step >= len(notification.steps):
        finish(
            session,
            notification,
            NotificationState.EXHAUSTED,
            now,
            source=source,
            reason="no_confirmation",
        )
        return None
    _, bell = create_attempt(session, notification, next_step, now)
    return bell


def escalate_at(sent_at: datetime, timeout_seconds: float) -> datetime:
    return sent_at + timedelta(seconds=timeout_seconds)
