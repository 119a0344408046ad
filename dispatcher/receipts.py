"""Receipts: store raw provider events first, then apply them to attempts.

Storing first (deduplicated on the provider's event id) means a duplicate
callback is applied once, and a receipt that arrives before its attempt is
marked ``sent`` waits in the table and is applied when the send is recorded
(or by the sweep). The stop rule: a receipt that satisfies the condition of
*any* attempt of a notification finishes it; a late one is still recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from dispatcher.customers import mark_contact_invalid
from dispatcher.engine import condition_met, finished_state
from dispatcher.history import record
from dispatcher.lifecycle import escalate, finish, move
from dispatcher.models import Attempt, ContactPoint, Notification, ProviderEvent
from dispatcher.publisher import Doorbell
from dispatcher.states import OPEN_STATES, AttemptState
from providers.base import ReceiptEvent, ReceiptKind, SendResult, Signal

#: An event still unmatched after this long is given up on.
UNMATCHED_AFTER = timedelta(days=2)
#: How often the sweep looks again at an event waiting for its attempt.
RECHECK_EVERY = timedelta(seconds=30)

_UPGRADES: dict[ReceiptKind, set[AttemptState]] = {
    ReceiptKind.SENT: {AttemptState.UNKNOWN},
    ReceiptKind.DELIVERED: {AttemptState.SENT, AttemptState.UNKNOWN},
    ReceiptKind.READ: {AttemptState.SENT, AttemptState.UNKNOWN, AttemptState.DELIVERED},
    ReceiptKind.FAILED: {AttemptState.SENT, AttemptState.UNKNOWN},
}


def store(
    session: Session, event: ReceiptEvent, now: datetime, apply_after: datetime | None = None
) -> ProviderEvent | None:
    """Insert a provider event unless its (provider, event id) is known. None if duplicate."""
    exists = session.exec(
        select(ProviderEvent.id).where(
            ProviderEvent.provider == event.provider, ProviderEvent.event_id == event.event_id
        )
    ).first()
    if exists is not None:
        return None
    row = ProviderEvent(
        provider=event.provider,
        event_id=event.event_id[:255],
        kind=event.kind.value,
        provider_message_id=event.provider_message_id,
        reference=event.reference[:64] if event.reference else None,
        recipient=event.recipient,
        read_up_to=event.read_up_to,
        invalid_address=event.invalid_address,
        error_code=event.error_code,
        occurred_at=event.occurred_at,
        received_at=now,
        apply_after=apply_after or now,
        next_check_at=apply_after or now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None  # a concurrent duplicate won the race
    return row


def store_simulated(session: Session, attempt: Attempt, result: SendResult, now: datetime) -> None:
    """Sandbox receipts become provider events due later, applied like real ones."""
    for simulated in result.simulated:
        store(
            session,
            ReceiptEvent(
                provider=attempt.provider or "sandbox",
                event_id=f"{result.provider_message_id}:{simulated.signal.value}",
                kind=ReceiptKind(simulated.signal.value),
                provider_message_id=result.provider_message_id,
                reference=attempt.id,
            ),
            now,
            apply_after=now + timedelta(seconds=simulated.after),
        )


def _targets(session: Session, event: ProviderEvent) -> list[Attempt]:
    if event.reference:
        attempt = session.get(Attempt, event.reference)
        if attempt is not None:
            return [attempt]
    if event.read_up_to and event.recipient and event.provider_message_id:
        candidates = session.exec(
            select(Attempt)
            .join(ContactPoint, col(ContactPoint.id) == col(Attempt.contact_id))
            .where(
                Attempt.provider == event.provider,
                ContactPoint.address == event.recipient,
                col(Attempt.read_at).is_(None),
                col(Attempt.provider_message_id).is_not(None),
            )
        ).all()
        limit = _as_int(event.provider_message_id)
        return [a for a in candidates if _as_int(a.provider_message_id) <= limit]
    if event.provider_message_id:
        return list(
            session.exec(
                select(Attempt).where(
                    Attempt.provider == event.provider,
                    Attempt.provider_message_id == event.provider_message_id,
                )
            ).all()
        )
    return []


def _source(event: ProviderEvent) -> str:
    """History's source: ``app`` for app receipts, ``webhook:<provider>`` otherwise."""
    return "app" if event.provider == "app" else f"webhook:{event.provider}"


def _as_int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        return -1


def apply(session: Session, event: ProviderEvent, now: datetime, bells: list[Doorbell]) -> str:
    """Apply one stored event; returns its outcome. Unapplied events stay for the sweep."""
    attempts = _targets(session, event)
    if not attempts:
        if now - event.received_at > UNMATCHED_AFTER:
            _close(event, now, "unmatched")
        else:
            event.next_check_at = now + RECHECK_EVERY
        session.add(event)
        return "waiting"
    if any(a.state in (AttemptState.PENDING, AttemptState.SENDING) for a in attempts):
        event.next_check_at = now + RECHECK_EVERY  # applied as soon as the send is recorded
        session.add(event)
        return "waiting"
    outcome = "ignored"
    for attempt in attempts:
        outcome = _apply_to(session, event, attempt, now, bells)
    _close(event, now, outcome, attempts[-1].id)
    session.add(event)
    return outcome


def _close(
    event: ProviderEvent, now: datetime, outcome: str, attempt_id: str | None = None
) -> None:
    event.applied_at = now
    event.outcome = outcome
    event.attempt_id = attempt_id


def _apply_to(
    session: Session, event: ProviderEvent, attempt: Attempt, now: datetime, bells: list[Doorbell]
) -> str:
    notification = session.get(Notification, attempt.notification_id)
    assert notification is not None
    kind = ReceiptKind(event.kind)
    at = event.occurred_at or now
    source = _source(event)
    if kind is ReceiptKind.FAILED:
        return _apply_failure(session, event, notification, attempt, now, bells)
    values: dict[str, object] = {}
    if kind in (ReceiptKind.DELIVERED, ReceiptKind.READ) and attempt.delivered_at is None:
        values["delivered_at"] = at
    if kind is ReceiptKind.READ and attempt.read_at is None:
        values["read_at"] = at
    if attempt.state in _UPGRADES[kind]:
        values["state"] = kind.value if kind is not ReceiptKind.SENT else AttemptState.SENT.value
    if not values:
        record(
            session,
            "receipt_ignored",
            at=now,
            source=source,
            notification=notification,
            attempt=attempt,
            kind=kind.value,
        )
        return "duplicate"
    session.execute(update(Attempt).where(col(Attempt.id) == attempt.id).values(**values))
    session.refresh(attempt)
    open_before = notification.state in OPEN_STATES
    record(
        session,
        kind.value,
        at=now,
        source=source,
        notification=notification,
        attempt=attempt,
        late=not open_before,
    )
    wait_for = Signal(attempt.wait_for)
    met = condition_met(
        wait_for,
        sent_at=attempt.sent_at,
        delivered_at=attempt.delivered_at,
        read_at=attempt.read_at,
    )
    if met and open_before:
        finish(
            session,
            notification,
            finished_state(wait_for),
            now,
            source=source,
            reason=f"{attempt.channel}_{wait_for.value}",
            attempt=attempt,
        )
        return "finished"
    if not open_before and kind in (ReceiptKind.DELIVERED, ReceiptKind.READ):
        record(
            session,
            "late_receipt",
            at=now,
            source=source,
            notification=notification,
            attempt=attempt,
            kind=kind.value,
            finished_as=notification.state,
        )
    return "applied"


def _apply_failure(
    session: Session,
    event: ProviderEvent,
    notification: Notification,
    attempt: Attempt,
    now: datetime,
    bells: list[Doorbell],
) -> str:
    source = _source(event)
    if event.invalid_address:
        mark_contact_invalid(
            session, attempt.contact_id, event.error_code or "invalid_address", now
        )
    expected = AttemptState(attempt.state)
    if expected not in _UPGRADES[ReceiptKind.FAILED]:
        record(
            session,
            "receipt_ignored",
            at=now,
            source=source,
            notification=notification,
            attempt=attempt,
            kind="failed",
        )
        return "ignored"
    move(
        session,
        attempt,
        expected,
        state=AttemptState.FAILED.value,
        escalate_at=now,
        error_code=(event.error_code or "failed")[:64],
    )
    record(
        session,
        "failed",
        at=now,
        source=source,
        notification=notification,
        attempt=attempt,
        code=event.error_code,
    )
    bell = escalate(session, notification, attempt, now, source=source)
    if bell:
        bells.append(bell)
    return "failed"


def apply_waiting(session: Session, attempt: Attempt, now: datetime, bells: list[Doorbell]) -> None:
    """Apply events that arrived before this attempt was recorded as sent."""
    conditions = [col(ProviderEvent.reference) == attempt.id]
    if attempt.provider_message_id:
        conditions.append(
            and_(
                col(ProviderEvent.provider) == attempt.provider,
                col(ProviderEvent.provider_message_id) == attempt.provider_message_id,
            )
        )
    waiting = session.exec(
        select(ProviderEvent).where(
            col(ProviderEvent.applied_at).is_(None),
            col(ProviderEvent.apply_after) <= now,
            or_(*conditions),
        )
    ).all()
    for event in waiting:
        apply(session, event, now, bells)


def ingest(
    session: Session, events: list[ReceiptEvent], now: datetime, bells: list[Doorbell]
) -> list[str]:
    """Store and immediately apply receipts (webhooks and the app endpoint)."""
    outcomes = []
    for event in events:
        row = store(session, event, now)
        outcomes.append("duplicate" if row is None else apply(session, row, now, bells))
    return outcomes
