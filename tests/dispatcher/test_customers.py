"""One profile per customer: contacts across channels, preferences, history, cascades."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.scenario import EMAIL, PHONE, put_customer, send


def test_put_replaces_contacts_and_patch_changes_only_what_is_given(api: TestClient):
    """PUT replaces the profile (dropped contacts disappear); PATCH touches only given fields."""
    put_customer(
        api,
        "c1",
        contacts=[{"channel": "sms", "address": PHONE}, {"channel": "email", "address": EMAIL}],
        opt_out_categories=["marketing"],
        quiet_hours={"start": "22:00", "end": "07:30"},
    )
    put_customer(
        api,
        "c1",
        contacts=[{"channel": "email", "address": EMAIL}],
        opt_out_categories=["marketing"],
        quiet_hours={"start": "22:00", "end": "07:30"},
    )
    response = api.patch("/v1/customers/c1/preferences", json={"channel_order": ["email", "sms"]})
    assert response.status_code == 200
    body = response.json()
    assert [(c["channel"], c["address"], c["status"]) for c in body["contacts"]] == [
        ("email", EMAIL, "active")
    ]
    assert body["preferences"] == {
        "channel_order": ["email", "sms"],
        "opt_out_channels": [],
        "opt_out_categories": ["marketing"],
        "quiet_hours": {"start": "22:00:00", "end": "07:30:00"},
        "max_per_day": {},
    }
    assert api.get("/v1/customers/c1").json() == body


def test_history_is_one_timeline_across_channels(api: TestClient):
    """The customer's history lists every notification's events in order, with no message text."""
    put_customer(api, "c2")
    first = send(api, "c2")["id"]
    second = send(api, "c2", category="marketing")["id"]
    history = api.get("/v1/customers/c2/history").json()
    assert [(e["notification_id"], e["type"]) for e in history] == [
        (first, "accepted"),
        (second, "accepted"),
    ]
    assert "door" not in str(history)


def test_category_opt_out_suppresses(api: TestClient):
    """A customer who opted out of marketing gets no marketing, and transactional still flows."""
    put_customer(api, "c3", opt_out_categories=["marketing"])
    assert send(api, "c3", category="marketing")["reason"] == "opted_out_category"
    assert send(api, "c3")["state"] == "accepted"


def test_cascades_are_listed(api: TestClient):
    """The loaded cascades are visible with their steps."""
    listed = api.get("/v1/cascades").json()
    assert [c["name"] for c in listed] == ["basic", "short"]
    one = api.get("/v1/cascades/basic").json()
    assert [s["channel"] for s in one["steps"]] == ["push", "messenger", "email", "sms"]
    assert one["ttl"] == 3600


def test_metrics_are_exposed(api: TestClient):
    """Prometheus metrics include the provider failure counters."""
    response = api.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert "cascade_provider_failures" in response.text
