"""End to end: API -> real Redis -> real Celery worker -> sandbox providers -> receipts.

Time is injected where the cascade waits: the test calls the sweep with a
``now`` past the step's timeout instead of sleeping through it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.e2e.conftest import Stack
from tests.support.scenario import (
    EMAIL,
    PHONE,
    TEXT,
    attempts,
    put_customer,
    receipt,
    send,
    sends_for,
    show,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def wait_state(api: TestClient, nid: str, step: int, state: str) -> dict[str, object]:
    def probe() -> dict[str, object] | None:
        found = show(api, nid)["attempts"]
        if len(found) > step and found[step]["state"] == state:
            return dict(found[step])
        return None

    return wait_until(probe, what=f"attempt {step} of {nid} to be {state}")


def attempt_ids(api: TestClient, nid: str) -> set[str]:
    return {a["id"] for a in show(api, nid)["attempts"]}


def test_push_read_in_time_sends_nothing_else(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Push read within its timeout: the notification is read and nothing else is ever sent."""
    put_customer(e2e_api, "c-read")
    nid = send(e2e_api, "c-read")["id"]
    push = wait_state(e2e_api, nid, 0, "sent")
    assert receipt(e2e_api, str(push["id"]), "read") == {
        "outcome": "finished",
        "notification_state": "read",
    }
    sweep(e2e_runtime, now=later(3600 - 1))
    assert attempts(e2e_api, nid) == [("push", "read")]
    assert [s["channel"] for s in sends_for(stack.outbox, attempt_ids(e2e_api, nid))] == ["push"]


def test_messenger_read_means_no_email_and_no_sms(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Push unread, WhatsApp read: the cascade stops before e-mail and SMS."""
    put_customer(e2e_api, "c-msg")
    nid = send(e2e_api, "c-msg")["id"]
    wait_state(e2e_api, nid, 0, "sent")
    sweep(e2e_runtime, now=later(61))
    whatsapp = wait_state(e2e_api, nid, 1, "sent")
    assert whatsapp["channel"] == "whatsapp"
    receipt(e2e_api, str(whatsapp["id"]), "read")
    sweep(e2e_runtime, now=later(3000))
    assert show(e2e_api, nid)["state"] == "read"
    assert attempts(e2e_api, nid) == [("push", "escalated"), ("whatsapp", "read")]
    channels = [s["channel"] for s in sends_for(stack.outbox, attempt_ids(e2e_api, nid))]
    assert channels == ["push", "whatsapp"]


def test_nobody_confirms_every_step_once_then_exhausted(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Nobody confirms: each step is tried in order, SMS exactly once, state exhausted."""
    put_customer(e2e_api, "c-silent")
    nid = send(e2e_api, "c-silent")["id"]
    for step, timeout in enumerate([60, 120, 180, 240]):
        wait_state(e2e_api, nid, step, "sent")
        sweep(e2e_runtime, now=later(timeout + 1))
    wait_until(lambda: show(e2e_api, nid)["state"] == "exhausted", what="exhausted")
    sweep(e2e_runtime, now=later(3500))
    assert attempts(e2e_api, nid) == [
        ("push", "escalated"),
        ("whatsapp", "escalated"),
        ("email", "escalated"),
        ("sms", "escalated"),
    ]
    channels = [s["channel"] for s in sends_for(stack.outbox, attempt_ids(e2e_api, nid))]
    assert channels == ["push", "whatsapp", "email", "sms"]
    assert show(e2e_api, nid)["cost"] > 0
    log = stack.log.read_text()
    for secret in (PHONE, EMAIL, TEXT):
        assert secret not in log


def test_opted_out_of_push_starts_at_messenger(e2e_api: TestClient, stack: Stack):
    """A customer who opted out of push is reached first on their messenger."""
    put_customer(e2e_api, "c-optout", opt_out_channels=["push"])
    accepted = send(e2e_api, "c-optout")
    assert [s["channel"] for s in accepted["steps"]] == ["whatsapp", "email", "sms"]
    wait_state(e2e_api, accepted["id"], 0, "sent")
    events = show(e2e_api, accepted["id"])["events"]
    skipped = [e["detail"] for e in events if e["type"] == "skipped"]
    assert skipped == [{"step": 0, "step_channel": "push", "reason": "opted_out"}]
    assert attempts(e2e_api, accepted["id"]) == [("whatsapp", "sent")]


def test_preferred_order_keeps_each_steps_timeout(e2e_api: TestClient, e2e_runtime: Runtime):
    """Preferring e-mail over messengers reorders the steps; each keeps its own timeout."""
    put_customer(e2e_api, "c-prefers", channel_order=["email", "whatsapp"])
    accepted = send(e2e_api, "c-prefers")
    steps = [(s["channel"], s["wait_for"], s["timeout"]) for s in accepted["steps"]]
    assert steps == [
        ("email", "delivered", 180.0),
        ("whatsapp", "read", 120.0),
        ("push", "read", 60.0),
        ("sms", "delivered", 240.0),
    ]
    email = wait_state(e2e_api, accepted["id"], 0, "sent")
    sent_at = datetime.fromisoformat(str(email["sent_at"]))
    assert datetime.fromisoformat(str(email["escalate_at"])) - sent_at == timedelta(seconds=180)
    sweep(e2e_runtime, now=later(121))
    assert attempts(e2e_api, accepted["id"]) == [("email", "sent")]  # 180 s not yet over
    sweep(e2e_runtime, now=later(181))
    assert wait_state(e2e_api, accepted["id"], 1, "sent")["channel"] == "whatsapp"


def test_late_push_receipt_finishes_after_messenger_was_sent(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """The push is read after WhatsApp went out: finished, both in history, nothing more sent."""
    put_customer(e2e_api, "c-late")
    nid = send(e2e_api, "c-late")["id"]
    push = wait_state(e2e_api, nid, 0, "sent")
    sweep(e2e_runtime, now=later(61))
    wait_state(e2e_api, nid, 1, "sent")
    assert receipt(e2e_api, str(push["id"]), "read")["notification_state"] == "read"
    sweep(e2e_runtime, now=later(3000))
    view = show(e2e_api, nid)
    assert view["state"] == "read"
    assert [(a["channel"], a["state"], a["read_at"] is not None) for a in view["attempts"]] == [
        ("push", "escalated", True),
        ("whatsapp", "sent", False),
    ]
    history = e2e_api.get("/v1/customers/c-late/history").json()
    assert [(e["type"], e["channel"]) for e in history if e["type"] == "sent"] == [
        ("sent", "push"),
        ("sent", "whatsapp"),
    ]
    assert [s["channel"] for s in sends_for(stack.outbox, attempt_ids(e2e_api, nid))] == [
        "push",
        "whatsapp",
    ]


def test_ttl_passes_no_more_sends_and_expired(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """After the TTL nothing more is sent and the notification is expired."""
    put_customer(e2e_api, "c-ttl")
    nid = send(e2e_api, "c-ttl", ttl="90s")["id"]
    wait_state(e2e_api, nid, 0, "sent")
    sweep(e2e_runtime, now=later(61))
    wait_state(e2e_api, nid, 1, "sent")
    sweep(e2e_runtime, now=later(91))
    sweep(e2e_runtime, now=later(3000))
    view = show(e2e_api, nid)
    assert view["state"] == "expired"
    assert attempts(e2e_api, nid) == [("push", "escalated"), ("whatsapp", "sent")]
    assert len(sends_for(stack.outbox, attempt_ids(e2e_api, nid))) == 2


def test_idempotency_key_replays_and_conflicts(e2e_api: TestClient, stack: Stack):
    """The same Idempotency-Key returns the same notification; another body gets 409."""
    put_customer(e2e_api, "c-idem")
    body = {"customer_id": "c-idem", "cascade": "basic", "content": {"text": TEXT}}
    headers = {"Idempotency-Key": "order-42-shipped"}
    first = e2e_api.post("/v1/notifications", json=body, headers=headers)
    second = e2e_api.post("/v1/notifications", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    other = e2e_api.post(
        "/v1/notifications", json={**body, "content": {"text": "something else"}}, headers=headers
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    nid = first.json()["id"]
    wait_state(e2e_api, nid, 0, "sent")
    assert len(sends_for(stack.outbox, attempt_ids(e2e_api, nid))) == 1
