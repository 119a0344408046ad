"""GET /v1/stats: rates per channel, time to read, cost, and money saved against SMS-only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from dispatcher.dispatch import send_attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, PUSH_TOKEN, put_customer, receipt, send, show


def drain(runtime: Runtime) -> None:
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    while publisher.published:
        bells, publisher.published[:] = list(publisher.published), []
        for bell in bells:
            send_attempt(runtime, bell.attempt_id)


def test_stats_per_channel_cost_and_savings(api: TestClient, runtime: Runtime, clock: FakeClock):
    """Push read once in 30 s, one SMS delivered, one late push read, one suppressed."""
    start = clock()
    put_customer(
        api,
        "s1",
        contacts=[{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}],
        opt_out_categories=["marketing"],
    )
    read_on_push = send(api, "s1")["id"]
    on_sms = send(api, "s1")["id"]
    assert send(api, "s1", category="marketing")["state"] == "suppressed"
    drain(runtime)
    clock.advance(30)
    receipt(api, show(api, read_on_push)["attempts"][0]["id"], "read")
    sweep(runtime, now=clock.advance(31))
    drain(runtime)
    sms = show(api, on_sms)["attempts"][1]
    receipt(api, sms["id"], "delivered")
    receipt(api, show(api, on_sms)["attempts"][0]["id"], "read")  # the push, read too late
    stats = api.get("/v1/stats", params={"since": start.isoformat()}).json()
    assert stats["by_state"] == {"read": 1, "delivered": 1, "suppressed": 1}
    channels = {c["channel"]: c for c in stats["channels"]}
    assert {
        k: channels["push"][k]
        for k in (
            "sent",
            "read",
            "read_rate",
            "median_seconds_to_read",
            "finished_here",
            "finished_share",
        )
    } == {
        "sent": 2,
        "read": 2,
        "read_rate": 1.0,
        "median_seconds_to_read": 45.5,
        "finished_here": 1,
        "finished_share": 0.5,
    }
    assert {k: channels["sms"][k] for k in ("sent", "delivered", "delivery_rate", "cost")} == {
        "sent": 1,
        "delivered": 1,
        "delivery_rate": 1.0,
        "cost": 0.05,
    }
    assert (stats["cost"], stats["sms_only_cost"], stats["saved"]) == (0.05, 0.1, 0.05)
    assert stats["late_receipts"] == 1


def test_stats_filter_by_cascade_and_naive_time_refused(api: TestClient):
    """A cascade filter narrows the counts; a time without a zone is a 422 naming the field."""
    put_customer(api, "s2")
    send(api, "s2")
    assert api.get("/v1/stats", params={"cascade": "short"}).json()["notifications"] == 0
    assert api.get("/v1/stats", params={"cascade": "basic"}).json()["notifications"] == 1
    response = api.get("/v1/stats", params={"since": "2026-01-01T00:00:00"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "since"
