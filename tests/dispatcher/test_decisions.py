"""The next-state decisions as tables: no database, no Redis, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.decisions import RetryPolicy, SendReport, after_send, on_stale_claim, on_timeout
from dispatcher.models import Attempt
from dispatcher.receipt_decisions import on_receipt
from dispatcher.states import AttemptState, NotificationState, can_move
from dispatcher.transitions import Then
from providers.base import ReceiptKind

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_tries=5, backoff=5.0)


def attempt(state: AttemptState, wait_for: str = "read", **values: object) -> Attempt:
    fields: dict[str, Any] = {
        "id": "a1",
        "notification_id": "n1",
        "step": 0,
        "channel": "push",
        "wait_for": wait_for,
        "timeout_seconds": 60.0,
        "state": state.value,
        "due_at": NOW,
        "created_at": NOW,
        "tries": 1,
        "started_at": NOW,
    }
    fields.update(values)
    return Attempt(**fields)


@pytest.mark.parametrize(
    ("report", "wait_for", "tries", "target", "then", "outcome"),
    [
        (
            SendReport("sent", "fcm", provider_message_id="m1"),
            "read",
            1,
            "sent",
            Then.NOTHING,
            "sent",
        ),
        (
            SendReport("sent", "telegram", provider_message_id="m1"),
            "sent",
            1,
            "sent",
            Then.FINISH,
            "sent",
        ),
        (
            SendReport("not_sent", "twilio", "http_429"),
            "delivered",
            1,
            "pending",
            Then.NOTHING,
            "retry",
        ),
        (
            SendReport("not_sent", "twilio", "http_429"),
            "delivered",
            5,
            "failed",
            Then.ESCALATE,
            "failed",
        ),
        (
            SendReport("unknown", "twilio", "timeout", price=0.05),
            "delivered",
            1,
            "unknown",
            Then.NOTHING,
            "unknown",
        ),
        (
            SendReport("rejected", "twilio", "21211", invalid_address=True),
            "delivered",
            1,
            "failed",
            Then.ESCALATE,
            "failed",
        ),
    ],
)
def test_after_send(report, wait_for, tries, target, then, outcome):
    """Each provider round result maps to one move out of ``sending``."""
    transition = after_send(
        attempt(AttemptState.SENDING, wait_for, tries=tries), report, NOW, POLICY
    )
    assert transition.expected is AttemptState.SENDING
    assert transition.target == AttemptState(target)
    assert transition.then is then
    assert transition.outcome == outcome
    assert can_move(AttemptState.SENDING, AttemptState(target))


def test_sent_starts_the_timer_and_charges_the_price():
    transition = after_send(
        attempt(AttemptState.SENDING),
        SendReport("sent", "fcm", price=0.0, provider_message_id="m"),
        NOW,
        POLICY,
    )
    assert transition.values["escalate_at"] == NOW + timedelta(seconds=60)
    assert transition.values["sent_at"] == NOW


def test_unknown_outcome_is_charged_at_the_provider_price():
    """The provider may have taken (and billed) it: the price is recorded, not 0."""
    transition = after_send(
        attempt(AttemptState.SENDING, "delivered"),
        SendReport("unknown", "smsru", "http_502", price=0.07),
        NOW,
        POLICY,
    )
    assert transition.values["cost"] == 0.07
    assert transition.values["escalate_at"] == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("started_ago", "retry_after", "target"),
    [
        (0, None, "pending"),  # 5 s backoff inside a 60 s step
        (50, None, "pending"),  # retried at 55 s: still inside
        (56, None, "failed"),  # retried at 61 s: the step would be over
        (0, 120.0, "failed"),  # Retry-After longer than the step: give the step up now
        (30, 20.0, "pending"),
        (30, 31.0, "failed"),
    ],
)
def test_retries_never_outlive_the_step(started_ago, retry_after, target):
    """A "not sent" retry is scheduled only if it happens before the step's timeout."""
    a = attempt(AttemptState.SENDING, "delivered", started_at=NOW - timedelta(seconds=started_ago))
    report = SendReport("not_sent", "twilio", "http_429", retry_after=retry_after)
    transition = after_send(a, report, NOW, POLICY)
    assert transition.target == AttemptState(target)
    if transition.target is AttemptState.FAILED:
        assert transition.values["error_code"] == "retry_outlives_step"
        assert transition.then is Then.ESCALATE


@pytest.mark.parametrize(
    ("state", "kind", "open_", "target", "outcome"),
    [
        (AttemptState.SENDING, ReceiptKind.READ, True, None, None),  # waits for the recording
        (AttemptState.PENDING, ReceiptKind.DELIVERED, True, None, None),
        (AttemptState.SENT, ReceiptKind.READ, True, "read", "finished"),
        (AttemptState.SENT, ReceiptKind.DELIVERED, True, "delivered", "applied"),
        (AttemptState.DELIVERED, ReceiptKind.READ, True, "read", "finished"),
        (AttemptState.UNKNOWN, ReceiptKind.SENT, True, "sent", "applied"),
        (AttemptState.UNKNOWN, ReceiptKind.READ, True, "read", "finished"),
        (AttemptState.SENT, ReceiptKind.FAILED, True, "failed", "failed"),
        (AttemptState.DELIVERED, ReceiptKind.FAILED, True, "keep", "ignored"),
        # An escalated attempt keeps its state and gets the timestamps; a read push
        # still finishes the open notification (the stop rule), or is late after it.
        (AttemptState.ESCALATED, ReceiptKind.READ, True, "keep", "finished"),
        (AttemptState.ESCALATED, ReceiptKind.DELIVERED, False, "keep", "late"),
        (AttemptState.READ, ReceiptKind.READ, False, "keep", "duplicate"),
    ],
)
def test_on_receipt(state, kind, open_, target, outcome):
    """Receipts move an attempt only where the one transition table allows it."""
    read_at = NOW if state is AttemptState.READ else None
    transition = on_receipt(
        attempt(state, read_at=read_at, delivered_at=read_at), kind, NOW, NOW, open_=open_
    )
    if target is None:
        assert transition is None
        return
    assert transition is not None
    assert transition.outcome == outcome
    if target == "keep":
        assert transition.target is None
    else:
        assert transition.target == AttemptState(target)
        assert can_move(state, AttemptState(target))


def test_read_receipt_finishes_as_read():
    transition = on_receipt(attempt(AttemptState.SENT), ReceiptKind.READ, NOW, NOW, open_=True)
    assert transition is not None
    assert (transition.then, transition.finish_as, transition.reason) == (
        Then.FINISH,
        NotificationState.READ,
        "push_read",
    )


@pytest.mark.parametrize(
    ("state", "escalates"),
    [
        (AttemptState.SENT, True),
        (AttemptState.DELIVERED, True),
        (AttemptState.UNKNOWN, True),
        (AttemptState.FAILED, True),
        (AttemptState.SENDING, False),
        (AttemptState.READ, False),
        (AttemptState.ESCALATED, False),
    ],
)
def test_on_timeout(state, escalates):
    transition = on_timeout(attempt(state), NOW)
    assert (transition is not None) is escalates
    if transition is not None:
        assert transition.target is AttemptState.ESCALATED
        assert transition.then is Then.NEXT


def test_stale_claim_is_unknown_and_charged():
    a = attempt(AttemptState.SENDING, claimed_at=NOW - timedelta(seconds=200), provider="twilio")
    transition = on_stale_claim(a, NOW, 0.05)
    assert transition.target is AttemptState.UNKNOWN
    assert transition.values["error_code"] == "worker_lost"
    assert transition.values["cost"] == 0.05
    assert transition.values["escalate_at"] == NOW  # its timeout already passed


def test_a_throttled_send_waits_for_its_slot_and_keeps_its_tries():
    """Rate limited: back to pending for exactly the provider's next slot, the try given back,
    however many tries were used and however long the step has run."""
    a = attempt(AttemptState.SENDING, "delivered", tries=5, started_at=NOW - timedelta(seconds=59))
    report = SendReport("not_sent", "telegram", "throttled", retry_after=2.5)
    transition = after_send(a, report, NOW, POLICY)
    assert transition.target is AttemptState.PENDING
    assert transition.values["due_at"] == NOW + timedelta(seconds=2.5)
    assert transition.values["tries"] == 4
    assert transition.outcome == "throttled"
