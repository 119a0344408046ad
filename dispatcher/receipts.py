"""Receipts: store raw provider events first, then apply them to attempts.

Storing first (deduplicated on the provider's event id) means a duplicate
callback is applied once, and a receipt that arrives before its attempt is
marked ``sent`` waits in the table and is applied when the send is recorded
(or by the sweep). The stop rule: a receipt that satisfies the condition of
*any* attempt of a notification finishes it; a late one is still recorded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from dispatcher.customer_tables import ContactPoint
from dispatcher.customers import mark_contact_invalid
from dispatcher.decisions import NOT_YET_SENT, on_receipt
from dispatcher.history import record
from dispatcher.inbound import close_window
from dispatcher.lifecycle import apply as apply_transition
from dispatcher.models import Attempt, Notification
from dispatcher.publisher import Doorbell
from dispatcher.receipt_tables import ProviderEvent
from dispatcher.states import OPEN_STATES
from dispatcher.work import Work
from providers.base import Channel, ReceiptEvent, ReceiptKind, SendResult
from providers.errors import TEMPLATE_REQUIRED

#: An event still unmatched after this long is given up on.
UNMATCHED_AFTER = timedelta(days=2)
#: How often the sweep looks again at an event waiting for its attempt.
RECHECK_EVERY = timedelta(seconds=30)


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


def _same_sender(event: ProviderEvent, attempt: Attempt) -> bool:
    """A receipt applies only to an attempt sent by the provider it comes from.

    App receipts (``app``: the push's receipt token) confirm push attempts only;
    ``operator`` receipts (sent with an API key) may confirm any attempt.
    """
    if event.provider == "app":
        return attempt.channel == Channel.PUSH
    if event.provider == "operator":
        return True
    return attempt.provider == event.provider


class _Foreign(Exception):
    """The event names an attempt another provider sent."""


def _targets(session: Session, event: ProviderEvent, held: Attempt | None) -> list[Attempt]:
    """The attempts an event is about, locked (PostgreSQL) against a concurrent recording.

    The lock orders a receipt and the worker recording the send: whichever comes
    second sees the other's committed work, so a receipt is never left waiting.
    """
    if event.reference:
        if held is not None and held.id == event.reference:
            attempt: Attempt | None = held  # loaded and locked by our own update
        else:
            attempt = session.get(
                Attempt, event.reference, with_for_update=True, populate_existing=True
            )
        if attempt is None:
            return []
        if not _same_sender(event, attempt):
            raise _Foreign(attempt.id)
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
            .with_for_update(of=Attempt)
            .execution_options(populate_existing=True)
        ).all()
        limit = _as_int(event.provider_message_id)
        return [a for a in candidates if _as_int(a.provider_message_id) <= limit]
    if event.provider_message_id:
        return list(
            session.exec(
                select(Attempt)
                .where(
                    Attempt.provider == event.provider,
                    Attempt.provider_message_id == event.provider_message_id,
                )
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()
        )
    return []


def _source(event: ProviderEvent) -> str:
    """History's source: ``app`` for app receipts, ``webhook:<provider>`` otherwise."""
    if event.provider in ("app", "operator"):
        return event.provider
    return f"webhook:{event.provider}"


def _as_int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        return -1


def apply(work: Work, event: ProviderEvent, held: Attempt | None = None) -> str:
    """Apply one stored event; returns its outcome. Unapplied events stay for the sweep.

    ``held``: an attempt this transaction has already updated (and so locked).
    """
    now = work.now
    try:
        attempts = _targets(work.session, event, held)
    except _Foreign:
        _close(event, now, "foreign")  # forged, or misrouted: confirms nothing
        work.session.add(event)
        return "foreign"
    if not attempts:
        if now - event.received_at > UNMATCHED_AFTER:
            _close(event, now, "unmatched")
        else:
            event.next_check_at = now + RECHECK_EVERY
        work.session.add(event)
        return "waiting"
    if any(a.state in NOT_YET_SENT for a in attempts):
        # Applied by the worker in the transaction that records the send; the
        # sweep's recheck is only the safety net.
        event.next_check_at = now + RECHECK_EVERY
        work.session.add(event)
        return "waiting"
    outcome = "ignored"
    for attempt in attempts:
        outcome = _apply_to(work, event, attempt)
    _close(event, now, outcome, attempts[-1].id)
    work.session.add(event)
    return outcome


def _close(
    event: ProviderEvent, now: datetime, outcome: str, attempt_id: str | None = None
) -> None:
    event.applied_at = now
    event.outcome = outcome
    event.attempt_id = attempt_id


def _apply_to(work: Work, event: ProviderEvent, attempt: Attempt) -> str:
    session = work.session
    kind = ReceiptKind(event.kind)
    source = _source(event)
    if kind is ReceiptKind.FAILED and event.invalid_address:
        mark_contact_invalid(
            session, attempt.contact_id, event.error_code or "invalid_address", work.now
        )
    if kind is ReceiptKind.FAILED and event.error_code == TEMPLATE_REQUIRED:
        close_window(session, attempt.contact_id)  # our inbound record was wrong
    for retry in range(3):  # a lost compare-and-set means the attempt moved: decide again
        notification = session.get(
            Notification, attempt.notification_id, populate_existing=retry > 0
        )
        assert notification is not None
        transition = on_receipt(
            attempt,
            kind,
            event.occurred_at or work.now,
            work.now,
            open_=notification.state in OPEN_STATES,
        )
        if transition is None:
            return "waiting"
        if kind is ReceiptKind.FAILED and transition.target is not None:
            transition = replace(
                transition,
                values={**transition.values, "error_code": (event.error_code or "failed")[:64]},
                detail={"code": event.error_code},
            )
        if apply_transition(work, notification, attempt, transition, source=source):
            if transition.outcome == "late":
                _late(work, notification, attempt, kind, source)
            return "applied" if transition.outcome == "late" else transition.outcome
        session.refresh(attempt)
    raise RuntimeError(f"attempt {attempt.id} kept moving while a receipt was applied")


def _late(
    work: Work, notification: Notification, attempt: Attempt, kind: ReceiptKind, source: str
) -> None:
    """A confirmation after the notification finished: a redundant send, reported."""
    record(
        work.session,
        "late_receipt",
        at=work.now,
        source=source,
        notification=notification,
        attempt=attempt,
        kind=kind.value,
        finished_as=notification.state,
    )


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
