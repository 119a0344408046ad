"""Receipts: store raw provider events first, then apply them to attempts.

Storing first (deduplicated on the provider's event id) means a duplicate
callback is applied once, and a receipt that arrives before its attempt is
marked ``sent`` waits in the table and is applied when the send is recorded
(or by the sweep). The stop rule: a receipt that satisfies the condition of
*any* attempt of a notification finishes it; a late one is still recorded.

Applying one event is :mod:`dispatcher.receipt_application`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from dispatcher.models import Attempt
from dispatcher.publisher import Doorbell
from dispatcher.receipt_application import apply
from dispatcher.receipt_decisions import NOT_YET_SENT
from dispatcher.receipt_tables import ProviderEvent
from dispatcher.work import Work
from providers.base import ReceiptEvent, ReceiptKind, SendResult


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


def store_simulated(
    session: Session, attempt: Attempt, result: SendResult, now: datetime
) -> list[ProviderEvent]:
    """Sandbox receipts become provider events, applied like real ones.

    Their ids derive from this send's own message id, so they are new by construction:
    no duplicate check. Those due later are stored unapplied (the sweep applies them
    when due); those due now are returned, not yet stored, for the caller to pass to
    :func:`apply_waiting` in the same transaction: each is then stored once, applied,
    without a read and an update of its own.
    """
    due: list[ProviderEvent] = []
    for simulated in result.simulated:
        at = now + timedelta(seconds=simulated.after)
        event = ProviderEvent(
            provider=attempt.provider or "sandbox",
            event_id=f"{result.provider_message_id}:{simulated.signal.value}"[:255],
            kind=ReceiptKind(simulated.signal.value).value,
            provider_message_id=result.provider_message_id,
            reference=attempt.id,
            received_at=now,
            apply_after=at,
            next_check_at=at,
        )
        if at <= now:
            due.append(event)
        else:
            session.add(event)
    return due


def _waiting_for(attempt_ids: list[str], messages: list[tuple[str, str]]) -> Any:
    conditions: list[Any] = [col(ProviderEvent.reference).in_(attempt_ids)]
    if messages:
        pair = tuple_(col(ProviderEvent.provider), col(ProviderEvent.provider_message_id))
        conditions.append(pair.in_(messages))
    return or_(*conditions)


def _unapplied(work: Work, attempts: list[Attempt]) -> list[ProviderEvent]:
    """Stored, unapplied events about these attempts that are not scheduled for later.

    Real receipts are due the moment they arrive whatever the clocks say
    (``apply_after == received_at``); only sandbox receipts are scheduled ahead.
    """
    ids = [a.id for a in attempts]
    messages = [
        (a.provider, a.provider_message_id)
        for a in attempts
        if a.provider and a.provider_message_id
    ]
    return list(
        work.session.exec(
            select(ProviderEvent)
            .where(
                col(ProviderEvent.applied_at).is_(None),
                or_(
                    col(ProviderEvent.apply_after) <= col(ProviderEvent.received_at),
                    col(ProviderEvent.apply_after) <= work.now,
                ),
                _waiting_for(ids, messages),
            )
            .order_by(col(ProviderEvent.id))
        ).all()
    )


def apply_waiting(
    work: Work, attempts: list[Attempt], due: Sequence[tuple[Attempt, ProviderEvent]] = ()
) -> None:
    """Apply events that arrived before (or while) these attempts were recorded as sent,
    then ``due``: new events about these attempts (sandbox receipts due now), not yet
    stored; each is stored as applied."""
    if attempts:
        by_reference = {a.id: a for a in attempts}
        by_message: dict[tuple[str | None, str | None], Attempt] = {
            (a.provider, a.provider_message_id): a for a in attempts if a.provider_message_id
        }
        for event in _unapplied(work, attempts):
            held = by_reference.get(event.reference or "") or by_message.get(
                (event.provider, event.provider_message_id)
            )
            apply(work, event, held=held)
    for attempt, event in due:
        apply(work, event, held=attempt)


def apply_stored(work: Work, notification_ids: Collection[str]) -> int:
    """Before steps escalate: apply whatever receipts of these notifications are stored."""
    attempts = list(
        work.session.exec(
            select(Attempt).where(
                col(Attempt.notification_id).in_(list(notification_ids)),
                col(Attempt.state).not_in([s.value for s in NOT_YET_SENT]),
            )
        ).all()
    )
    events = _unapplied(work, attempts) if attempts else []
    return sum(apply(work, event) != "waiting" for event in events)


def ingest(
    session: Session, events: list[ReceiptEvent], now: datetime, bells: list[Doorbell]
) -> list[str]:
    """Store and immediately apply receipts (webhooks and the app endpoint).

    ``bells`` collects the doorbells to ring after the caller commits.
    """
    work = Work(session, now, bells)
    outcomes = []
    for event in events:
        row = store(session, event, now)
        outcomes.append("duplicate" if row is None else apply(work, row))
    return outcomes
