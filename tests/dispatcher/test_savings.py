"""/v1/stats over time (cost against SMS-only per hour or day) and redundant sends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session

from dispatcher.models import Notification
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.dispatcher.test_stats import drain, stats_of
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, PUSH_TOKEN, put_customer, receipt, send, show

PUSH_AND_SMS = [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}]
MONDAY = datetime(2026, 11, 2, 10, 15, tzinfo=UTC)


def points(stats: dict[str, Any]) -> list[tuple[str, int, float, float, float, float]]:
    return [
        (
            p["start"],
            p["notifications"],
            p["cost"],
            p["sms_only_cost"],
            p["saved"],
            p["saved_to_date"],
        )
        for p in stats["series"]
    ]


def read_on_push(api: TestClient, runtime: Runtime, customer: str) -> str:
    nid = send(api, customer)["id"]
    drain(runtime)
    receipt(api, show(api, nid)["attempts"][0]["id"], "read")
    return str(nid)


def delivered_by_sms(api: TestClient, runtime: Runtime, clock: FakeClock, customer: str) -> str:
    nid = send(api, customer)["id"]
    drain(runtime)
    sweep(runtime, now=clock.advance(61))  # the push was not read within its 60 s
    drain(runtime)
    receipt(api, show(api, nid)["attempts"][1]["id"], "delivered")
    return str(nid)


def test_series_buckets_cost_against_sms_only_by_hour_and_day(
    api: TestClient, runtime: Runtime, clock: FakeClock
):
    """Each bucket holds its notifications' cost, the SMS-only cost and the running saving."""
    clock.current = MONDAY
    put_customer(api, "t-phone", contacts=PUSH_AND_SMS, opt_out_categories=["marketing"])
    put_customer(api, "t-push", contacts=[{"channel": "push", "address": PUSH_TOKEN}])
    read_on_push(api, runtime, "t-phone")  # 10:15, free, could have been one SMS
    delivered_by_sms(api, runtime, clock, "t-phone")  # 10:16, one SMS, as SMS-only
    clock.advance(3600)  # 11:16
    read_on_push(api, runtime, "t-phone")
    assert send(api, "t-phone", category="marketing")["state"] == "suppressed"  # never counted
    clock.current = MONDAY.replace(day=3, hour=9)
    read_on_push(api, runtime, "t-push")  # no phone: no SMS-only cost either
    read_on_push(api, runtime, "t-phone")
    week = stats_of(api, since="7d")
    assert week["bucket"] == "day"
    assert points(week) == [
        ("2026-11-02T00:00:00Z", 4, 0.05, 0.15, 0.1, 0.1),
        ("2026-11-03T00:00:00Z", 2, 0.0, 0.05, 0.05, 0.15),
    ]
    assert (week["cost"], week["sms_only_cost"], week["saved"]) == (0.05, 0.2, 0.15)
    monday = stats_of(api, since="2026-11-02T00:00:00Z", until="2026-11-03T00:00:00Z")
    assert monday["bucket"] == "hour"  # two days or less: hourly
    assert points(monday) == [
        ("2026-11-02T10:00:00Z", 2, 0.05, 0.1, 0.05, 0.05),
        ("2026-11-02T11:00:00Z", 2, 0.0, 0.05, 0.05, 0.1),
    ]
    hourly = stats_of(api, since="7d", bucket="hour")
    assert [p[0] for p in points(hourly)] == [
        "2026-11-02T10:00:00Z",
        "2026-11-02T11:00:00Z",
        "2026-11-03T09:00:00Z",
    ]
    with Session(runtime.engine) as session:  # rows written without the column: from steps
        session.execute(update(Notification).values(sms_step=None))
        session.commit()
    assert stats_of(api, since="7d")["series"] == week["series"]
    assert stats_of(api, since="7d", cascade="short")["series"] == []
    response = api.get("/v1/stats", params={"bucket": "month"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "bucket"


def test_redundant_sends_are_later_steps_sent_after_an_earlier_confirmed_one(
    api: TestClient, runtime: Runtime, clock: FakeClock
):
    """A push read after the SMS went out makes that SMS redundant; in-time reads do not."""
    start = clock()
    put_customer(api, "r1", contacts=PUSH_AND_SMS)
    read_on_push(api, runtime, "r1")  # read in time: nothing redundant
    delivered_by_sms(api, runtime, clock, "r1")  # push never read: the SMS was needed
    late = send(api, "r1")["id"]
    drain(runtime)
    sweep(runtime, now=clock.advance(61))
    drain(runtime)
    attempts = show(api, late)["attempts"]
    assert [(a["channel"], a["state"]) for a in attempts] == [
        ("push", "escalated"),
        ("sms", "sent"),
    ]
    receipt(api, attempts[0]["id"], "read")  # read late, but before the SMS was delivered
    receipt(api, attempts[1]["id"], "delivered")  # the SMS arrives too: a late receipt
    stats = stats_of(api, since=start.isoformat())
    assert stats["redundant"] == [{"channel": "sms", "sends": 1, "cost": 0.05}]
    assert (stats["redundant_sends"], stats["redundant_cost"]) == (1, 0.05)
    assert stats["late_receipts"] == 1
    assert stats_of(api, since=clock().isoformat())["redundant"] == []
