"""Sending, failing, retrying and receipts on the real database, with an injected clock.

The provider is the sandbox (scripted per address); doorbells are recorded, and
``send_attempt`` is called directly as the worker would.
"""

from __future__ import annotations

from sqlalchemy import text

from config.settings import SandboxSettings
from dispatcher.dispatch import send_attempt
from dispatcher.sweep import sweep
from providers.base import Channel
from providers.sandbox import SandboxBehaviour
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain, pending_bells
from tests.support.scenario import (
    EMAIL,
    PHONE,
    PUSH_TOKEN,
    attempts,
    put_customer,
    receipt,
    send,
    show,
)


def test_not_sent_retries_with_backoff_then_fails_over_to_next_step(make: Make, clock: FakeClock):
    """A provider that never takes the message: retried with growing delays, then the next step."""
    runtime, api = make(
        max_send_tries=3,
        retry_backoff=10,
        sandbox=SandboxSettings(scenarios={PUSH_TOKEN: "not_sent"}),
    )
    put_customer(api, "r1")
    nid = send(api, "r1")["id"]
    assert drain(runtime) == ["retry"]
    first = show(api, nid)["attempts"][0]
    assert (first["state"], first["tries"], first["error_code"]) == (
        "pending",
        1,
        "sandbox_not_sent",
    )
    sweep(runtime, now=clock.advance(9))
    assert pending_bells(runtime) == []  # not due yet: 10 s backoff
    sweep(runtime, now=clock.advance(2))
    assert drain(runtime) == ["retry"]  # second try, next delay 20 s
    sweep(runtime, now=clock.advance(21))
    assert drain(runtime) == ["failed", "sent"]  # third try exhausts; WhatsApp goes out
    assert attempts(api, nid) == [("push", "escalated"), ("whatsapp", "sent")]


def test_invalid_address_marks_contact_and_escalates_now(make: Make):
    """An unregistered push token: contact invalid, next step now, token never used again."""
    runtime, api = make(sandbox=SandboxSettings(scenarios={PUSH_TOKEN: "invalid"}))
    put_customer(api, "r2")
    nid = send(api, "r2")["id"]
    assert drain(runtime) == ["failed", "sent"]
    assert attempts(api, nid) == [("push", "escalated"), ("whatsapp", "sent")]
    contacts = {c["channel"]: c for c in api.get("/v1/customers/r2").json()["contacts"]}
    assert (contacts["push"]["status"], contacts["push"]["invalid_reason"]) == (
        "invalid",
        "sandbox_invalid",
    )
    assert [s["channel"] for s in send(api, "r2")["steps"]] == ["whatsapp", "email", "sms"]


def test_unknown_outcome_on_sms_is_never_resent(make: Make, clock: FakeClock):
    """A read timeout on SMS: attempt unknown, never sent again, escalates at its timeout."""
    runtime, api = make(sandbox=SandboxSettings(scenarios={PHONE: "unknown"}))
    put_customer(api, "r3", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "r3")["id"]
    assert drain(runtime) == ["unknown"]
    for _ in range(3):
        sweep(runtime, now=clock.advance(60))
        assert drain(runtime) == []
    assert attempts(api, nid) == [("sms", "unknown")]
    sweep(runtime, now=clock.advance(61))
    assert show(api, nid)["state"] == "exhausted"


def test_unknown_outcome_then_delivery_receipt_finishes(make: Make):
    """An unknown SMS that the provider later reports delivered finishes the notification."""
    runtime, api = make(sandbox=SandboxSettings(scenarios={PHONE: "unknown"}))
    put_customer(api, "r4", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "r4")["id"]
    drain(runtime)
    attempt_id = show(api, nid)["attempts"][0]["id"]
    assert receipt(api, attempt_id, "delivered")["outcome"] == "finished"
    assert show(api, nid)["state"] == "delivered"


def test_stale_claim_becomes_unknown_not_resent(make: Make, clock: FakeClock):
    """A worker died mid-send (claim never recorded): the sweep marks it unknown, no resend."""
    from dispatcher.dispatch import claim

    runtime, api = make(sending_stale_after=120)
    put_customer(api, "r5", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "r5")["id"]
    (bell,) = pending_bells(runtime)
    assert claim(runtime, bell, clock()) is not None  # ... and the worker is killed here
    sweep(runtime, now=clock.advance(119))
    assert attempts(api, nid) == [("sms", "sending")]
    report = sweep(runtime, now=clock.advance(2))
    assert report.stale == 1
    assert show(api, nid)["attempts"][0]["error_code"] == "worker_lost"
    assert send_attempt(runtime, bell) == "not_claimed"
    assert attempts(api, nid) == [("sms", "unknown")]


def test_receipt_before_sent_is_applied_after(make: Make):
    """A receipt arriving while the attempt is still 'sending' waits and is applied on 'sent'."""
    from dispatcher.dispatch import claim, deliver

    runtime, api = make()
    put_customer(api, "r6")
    nid = send(api, "r6")["id"]
    (bell,) = pending_bells(runtime)
    token = claim(runtime, bell, runtime.now())
    assert token is not None
    assert receipt(api, bell, "read")["outcome"] == "waiting"
    assert show(api, nid)["state"] == "accepted"
    assert deliver(runtime, bell, token, runtime.now()) == "sent"
    assert (show(api, nid)["state"], attempts(api, nid)) == ("read", [("push", "read")])


def test_duplicate_receipt_applied_once(make: Make):
    """The same receipt twice: the second is a duplicate and changes nothing."""
    runtime, api = make()
    put_customer(api, "r7")
    nid = send(api, "r7")["id"]
    drain(runtime)
    attempt_id = show(api, nid)["attempts"][0]["id"]
    assert receipt(api, attempt_id, "read")["outcome"] == "finished"
    assert receipt(api, attempt_id, "read")["outcome"] == "duplicate"
    types = [e["type"] for e in show(api, nid)["events"]]
    assert types.count("read") == 1


def test_sandbox_simulated_read_is_applied_by_the_sweep(make: Make, clock: FakeClock):
    """Sandbox promises a read after 5 s: stored as a provider event, applied when due."""
    behaviour = SandboxBehaviour(
        delivered_probability=1.0, delivered_after=2, read_probability=1.0, read_after=5
    )
    runtime, api = make(sandbox=SandboxSettings(channels={Channel.PUSH: behaviour}))
    put_customer(api, "r8")
    nid = send(api, "r8")["id"]
    drain(runtime)
    sweep(runtime, now=clock.advance(3))
    assert attempts(api, nid) == [("push", "delivered")]
    assert show(api, nid)["state"] == "in_progress"
    sweep(runtime, now=clock.advance(3))
    assert (show(api, nid)["state"], attempts(api, nid)) == ("read", [("push", "read")])


def test_sandbox_receipts_due_at_once_are_stored_applied_in_the_recording(make: Make):
    """Sandbox read at once: applied in the transaction that records the send (no sweep,
    no SMS), each stored once, already closed, beside a real receipt that came mid-send."""
    behaviour = SandboxBehaviour(
        delivered_probability=1.0, delivered_after=0, read_probability=1.0, read_after=0
    )
    runtime, api = make(sandbox=SandboxSettings(channels={Channel.PUSH: behaviour}))
    put_customer(api, "r8b")
    nid = send(api, "r8b")["id"]
    assert drain(runtime) == ["sent"]
    assert (show(api, nid)["state"], attempts(api, nid)) == ("read", [("push", "read")])
    assert pending_bells(runtime) == []
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT kind, outcome, attempt_id, applied_at IS NOT NULL FROM providerevent "
                "ORDER BY id"
            )
        ).all()
    attempt_id = show(api, nid)["attempts"][0]["id"]
    assert [tuple(r) for r in rows] == [
        ("delivered", "applied", attempt_id, True),
        ("read", "finished", attempt_id, True),
    ]


def test_quiet_hours_postpone_the_step(make: Make, clock: FakeClock):
    """A step due in the customer's quiet hours waits for their end, then goes out."""
    from datetime import UTC, datetime

    clock.current = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)  # 02:30 in Moscow
    runtime, api = make()
    api.put(
        "/v1/customers/r9",
        json={
            "timezone": "Europe/Moscow",
            "contacts": [{"channel": "push", "address": PUSH_TOKEN}],
            "preferences": {"quiet_hours": {"start": "22:00", "end": "08:00"}},
        },
    )
    nid = send(api, "r9", ttl="12h")["id"]
    assert pending_bells(runtime) == []
    first = show(api, nid)["attempts"][0]
    assert first["due_at"].startswith("2026-11-25T05:00:00")  # 08:00 Moscow
    sweep(runtime, now=clock.advance(3600))
    assert pending_bells(runtime) == []
    sweep(runtime, now=datetime(2026, 11, 25, 5, 0, 1, tzinfo=UTC))
    assert drain(runtime) == ["sent"]


def test_frequency_cap_suppresses(make: Make):
    """Over the customer's daily cap for a category, the notification is suppressed (202)."""
    _, api = make()
    put_customer(api, "r10", max_per_day={"transactional": 1})
    assert send(api, "r10")["state"] == "accepted"
    second = send(api, "r10")
    assert (second["state"], second["reason"], second["steps"]) == (
        "suppressed",
        "frequency_cap",
        [],
    )


def test_no_contact_left_is_suppressed(make: Make):
    """Opted out of every channel the customer has: suppressed with the reason, nothing queued."""
    runtime, api = make()
    put_customer(
        api, "r11", contacts=[{"channel": "email", "address": EMAIL}], opt_out_channels=["email"]
    )
    accepted = send(api, "r11")
    assert (accepted["state"], accepted["reason"]) == ("suppressed", "opted_out")
    assert pending_bells(runtime) == []


def test_cancel_stops_everything_not_sent(make: Make, clock: FakeClock):
    """Cancelling cancels the pending attempt; a later doorbell sends nothing."""
    runtime, api = make()
    put_customer(api, "r12")
    nid = send(api, "r12")["id"]
    (bell,) = pending_bells(runtime)
    assert api.post(f"/v1/notifications/{nid}/cancel").json()["state"] == "cancelled"
    assert send_attempt(runtime, bell) == "not_claimed"
    assert attempts(api, nid) == [("push", "cancelled")]
    assert api.post(f"/v1/notifications/{nid}/cancel").status_code == 409


def test_unmatched_receipt_rechecked_sparingly_then_given_up(make: Make, clock: FakeClock):
    """A receipt for no known message waits, is looked at every 30 s, and is closed after 2 days."""
    from sqlmodel import Session

    from dispatcher.receipt_tables import ProviderEvent
    from dispatcher.receipts import ingest
    from providers.base import ReceiptEvent, ReceiptKind

    runtime, _ = make()
    stray = ReceiptEvent(
        provider="sandbox", event_id="e1", kind=ReceiptKind.READ, provider_message_id="nope"
    )
    with Session(runtime.engine) as session:
        assert ingest(session, [stray], clock(), []) == ["waiting"]
        session.commit()
    assert sweep(runtime, now=clock.advance(10)).receipts == 0

    def row() -> ProviderEvent:
        with Session(runtime.engine) as session:
            found = session.get(ProviderEvent, 1)
            assert found is not None
            return found

    first_check = row().next_check_at
    assert first_check is not None
    sweep(runtime, now=clock.advance(25))  # 35 s after receipt: looked at again, still waiting
    second_check = row().next_check_at
    assert second_check is not None
    assert second_check > first_check
    sweep(runtime, now=clock.advance(2 * 86400))
    assert (row().outcome, row().applied_at is not None) == ("unmatched", True)
