"""Applying one stored receipt: finding the attempts it is about, and the transition.

A receipt applies only to attempts its own provider sent (app receipts to pushes,
operator receipts to any); one about an attempt not yet recorded as sent waits for the
send to be recorded, and one that never matches is given up on after
:data:`UNMATCHED_AFTER`. Storing and the batch entry points are :mod:`dispatcher.receipts`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from dispatcher.clicks import count_click
from dispatcher.customer_tables import ContactPoint
from dispatcher.customers import mark_contact_invalid
from dispatcher.history import record
from dispatcher.inbound import close_window
from dispatcher.lifecycle import apply as apply_transition
from dispatcher.models import Attempt, Notification
from dispatcher.receipt_decisions import NOT_YET_SENT, on_receipt
from dispatcher.receipt_tables import APP_LINK, APP_PAGE, ProviderEvent
from dispatcher.states import OPEN_STATES
from dispatcher.work import Work
from providers.base import Channel, ReceiptKind
from providers.errors import TEMPLATE_REQUIRED

#: An event still unmatched after this long is given up on.
UNMATCHED_AFTER = timedelta(days=2)
#: How often the sweep looks again at an event waiting for its attempt.
RECHECK_EVERY = timedelta(seconds=30)


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
        if kind is ReceiptKind.CLICKED:  # the app saw a tap: a click, as on a tracked link
            outcome = count_click(work, notification, attempt, APP_LINK, APP_PAGE, source)
            if outcome is not None:
                return outcome
            session.refresh(attempt)
            continue
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
