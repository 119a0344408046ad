"""GET /v1/stats: rates per channel, time to read, cost, and money saved against SMS-only."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update
from sqlmodel import Session, col

from dispatcher.dispatch import send_attempt
from dispatcher.models import Event, Notification
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, PUSH_TOKEN, put_customer, receipt, send, show

MIGRATION = (
    Path(__file__).parents[2] / "dispatcher/migrations/versions/c3d4e5f6a7b8_stats_indexes.py"
)


def migration() -> Any:
    spec = importlib.util.spec_from_file_location("stats_migration", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def backfill_sql() -> str:
    """The migration's backfill of ``finished_channel``: what ``finish()`` is to write."""
    return str(migration().FINISHED_CHANNEL)


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


def stats_of(api: TestClient, **params: str) -> dict[str, Any]:
    response = api.get("/v1/stats", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_since_until_and_cascade_narrow_every_figure(
    api: TestClient, runtime: Runtime, clock: FakeClock
):
    """Only notifications created in [since, until) of the cascade asked for are counted."""
    put_customer(api, "p1")
    early = clock()
    send(api, "p1", cascade="short")
    drain(runtime)
    middle = clock.advance(600)
    send(api, "p1")
    send(api, "p1", cascade="short")
    drain(runtime)
    late = clock.advance(600)
    send(api, "p1")
    drain(runtime)
    everything = stats_of(api, since=early.isoformat())
    assert (everything["notifications"], everything["channels"][0]["sent"]) == (4, 4)
    window = stats_of(api, since=middle.isoformat(), until=late.isoformat())
    assert window["notifications"] == 2
    assert [(c["channel"], c["sent"]) for c in window["channels"]] == [("push", 2)]
    short = stats_of(api, since=early.isoformat(), cascade="short")
    assert (short["notifications"], short["by_state"]) == (2, {"in_progress": 2})
    assert [(c["channel"], c["sent"]) for c in short["channels"]] == [("push", 2)]
    assert stats_of(api, since=late.isoformat(), cascade="short")["notifications"] == 0


def test_since_accepts_relative_periods(api: TestClient, runtime: Runtime, clock: FakeClock):
    """since=1h counts the last hour, since=7d the last week; a word is a 422 naming since."""
    put_customer(api, "p2")
    send(api, "p2")
    clock.advance(3 * 86400)
    send(api, "p2")
    clock.advance(2 * 3600)
    send(api, "p2")
    assert stats_of(api, since="1h")["notifications"] == 1
    assert stats_of(api, since="3h")["notifications"] == 2
    assert stats_of(api, since="7d")["notifications"] == 3
    assert stats_of(api)["notifications"] == 2  # the default: one day
    until = (clock() - timedelta(hours=1)).isoformat()
    assert stats_of(api, since="1d", until=until)["notifications"] == 1  # back from until
    for bad in ("yesterday", "1y", "-1h", "0h"):
        response = api.get("/v1/stats", params={"since": bad})
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == "since"


def test_sms_only_baseline_counts_only_notifications_with_an_sms_step(
    api: TestClient, runtime: Runtime, clock: FakeClock
):
    """A customer without a phone could never have had an SMS: not in the SMS-only cost."""
    start = clock()
    put_customer(api, "with-phone")
    put_customer(api, "no-phone", contacts=[{"channel": "push", "address": PUSH_TOKEN}])
    send(api, "with-phone")
    send(api, "no-phone")
    send(api, "no-phone")
    stats = stats_of(api, since=start.isoformat())
    assert stats["notifications"] == 3
    assert (stats["sms_only_cost"], stats["saved"]) == (0.05, 0.05)
    with Session(runtime.engine) as session:  # rows written without the column: from steps
        session.execute(update(Notification).values(sms_step=None))
        session.commit()
    assert stats_of(api, since=start.isoformat())["sms_only_cost"] == 0.05
    with Session(runtime.engine) as session:  # the migration's backfill agrees
        session.execute(text(migration().SMS_STEP[runtime.engine.dialect.name]))
        session.commit()
        flags = session.execute(
            select(col(Notification.customer_id), col(Notification.sms_step))
        ).all()
    assert sorted(flags) == [("no-phone", False), ("no-phone", False), ("with-phone", True)]


def test_finished_channel_column_and_history_fallback_agree(
    api: TestClient, runtime: Runtime, clock: FakeClock
):
    """Finished-on counts come from finished_channel, or from history where it is NULL."""
    start = clock()
    put_customer(api, "f1")
    on_push = [send(api, "f1")["id"] for _ in range(3)]
    on_sms = send(api, "f1")["id"]
    drain(runtime)
    clock.advance(10)
    for seconds, notification in zip((5, 20, 90), on_push, strict=True):
        receipt(api, show(api, notification)["attempts"][0]["id"], "read")
        clock.advance(seconds)
    for _ in range(3):  # push -> whatsapp -> email -> sms, each unconfirmed
        sweep(runtime, now=clock.advance(300))
        drain(runtime)
    receipt(api, show(api, on_sms)["attempts"][3]["id"], "delivered")
    with Session(runtime.engine) as session:  # finish() wrote the finishing channel
        assert session.get(Notification, on_sms).finished_channel == "sms"  # type: ignore[union-attr]
    from_column = stats_of(api, since=start.isoformat())
    with Session(runtime.engine) as session:  # rows written before the column: history decides
        session.execute(update(Notification).values(finished_channel=None))
        session.commit()
    from_history = stats_of(api, since=start.isoformat())
    assert from_history == from_column
    finished = {c["channel"]: c["finished_here"] for c in from_history["channels"]}
    assert finished == {"push": 3, "whatsapp": 0, "email": 0, "sms": 1}
    push = next(c for c in from_history["channels"] if c["channel"] == "push")
    assert push["median_seconds_to_read"] == 15.0  # 10, 15, 35 s: the middle one
    with Session(runtime.engine) as session:  # what finish() writes, then lose the history
        session.execute(text(backfill_sql()))
        session.execute(delete(Event).where(col(Event.type) == "finished"))
        session.commit()
        assert session.get(Notification, on_sms).finished_channel == "sms"  # type: ignore[union-attr]
    assert stats_of(api, since=start.isoformat()) == from_history
