"""One profile per customer: contacts across channels, preferences, history, cascades."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from dispatcher.customer_tables import Customer
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


def test_cascade_durations_are_seconds_everywhere(api: TestClient):
    """ttl and every step timeout are numbers of seconds, as in a notification's steps;
    a group lists its members with the condition each waits for."""
    one = api.get("/v1/cascades/basic").json()
    assert (one["ttl"], [s["timeout"] for s in one["steps"]]) == (3600, [60, 120, 180, 240])
    assert one["steps"][1]["among"] == [
        {"channel": "whatsapp", "wait_for": "read"},
        {"channel": "viber", "wait_for": "read"},
        {"channel": "vk", "wait_for": "read"},
        {"channel": "telegram", "wait_for": "sent"},
    ]
    assert one["steps"][0]["among"] == []
    put_customer(api, "c9")
    sent = send(api, "c9")
    assert [s["timeout"] for s in sent["steps"]][:1] == [60]


def test_metrics_are_exposed(api: TestClient):
    """Prometheus metrics include the provider failure counters."""
    response = api.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert "cascade_provider_failures" in response.text


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"channel_order": ["sms", "sms"]}, "channel_order"),
        ({"opt_out_channels": ["pigeon"]}, "opt_out_channels[0]"),
        ({"max_per_day": {"transactional": -1}}, "max_per_day.transactional"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"opt_out_categories": ["x" * 33]}, "opt_out_categories[0]"),
    ],
)
def test_patch_validates_like_put_and_writes_nothing(
    api: TestClient, patch: dict[str, object], field: str
):
    """A bad PATCH is a 422 naming the field; the profile, and sending to it, still work."""
    before = put_customer(api, "c4", channel_order=["email"])
    response = api.patch("/v1/customers/c4/preferences", json=patch)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert api.get("/v1/customers/c4").json() == before
    assert send(api, "c4")["state"] == "accepted"


def test_put_and_patch_share_one_preferences_schema(api: TestClient):
    """What PUT refuses, PATCH refuses with the same field and message."""
    bad = {"max_per_day": {"marketing": -5}}
    put = api.put("/v1/customers/c5", json={"preferences": bad})
    put_customer(api, "c5")
    patch = api.patch("/v1/customers/c5/preferences", json=bad)
    assert (put.status_code, patch.status_code) == (422, 422)
    assert [e["message"] for e in put.json()["errors"]] == [
        e["message"] for e in patch.json()["errors"]
    ]
    assert put.json()["errors"][0]["field"] == "preferences." + patch.json()["errors"][0]["field"]


def test_stored_bad_preferences_do_not_break_the_customer(api: TestClient, db_engine: Engine):
    """Rows written by the old unvalidated PATCH (repeats, negative caps) still read and send."""
    put_customer(api, "c6")
    with Session(db_engine) as session:
        customer = session.get_one(Customer, "c6")
        customer.channel_order = ["sms", "sms", "email"]
        customer.max_per_day = {"transactional": -1}
        session.add(customer)
        session.commit()
    response = api.get("/v1/customers/c6")
    assert response.status_code == 200, response.text
    assert response.json()["preferences"]["channel_order"] == ["sms", "email"]
    assert response.json()["preferences"]["max_per_day"] == {}
    assert send(api, "c6")["state"] == "accepted"
