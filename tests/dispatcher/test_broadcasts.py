"""Broadcasts on the real database: API, fan-out in batches, redelivery, sweep restart, cancel.

Doorbells and fan-out tasks are recorded; the tests run them as the worker would.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from dispatcher.fanout import fan_out
from dispatcher.models import Notification
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.dispatcher.test_api_errors import fields, problem
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import PUSH_TOKEN, put_customer

PUSH = [{"channel": "push", "address": PUSH_TOKEN}]


def body(audience: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "cascade": "basic",
        "category": "promo",
        "content": {"title": "Sale", "text": "Everything half price"},
        "audience": audience,
        **extra,
    }


def broadcast(api: TestClient, audience: dict[str, Any], **extra: Any) -> str:
    response = api.post("/v1/broadcasts", json=body(audience, **extra))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def fan_outs(runtime: Runtime) -> list[str]:
    """Run every queued fan-out task (and those they queue) as the worker would."""
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    outcomes = []
    while publisher.fan_outs:
        broadcast_id, batch = publisher.fan_outs.pop(0)
        outcomes.append(fan_out(runtime, broadcast_id, batch))
    return outcomes


def status(api: TestClient, broadcast_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def per_customer(runtime: Runtime, broadcast_id: str) -> dict[str, int]:
    with Session(runtime.engine) as session:
        rows = session.exec(
            select(Notification.customer_id, func.count())
            .where(Notification.broadcast_id == broadcast_id)
            .group_by(Notification.customer_id)
        ).all()
    return {customer: int(count) for customer, count in rows}


def test_id_list_fans_out_in_batches_with_single_send_rules(make: Make):
    """Batches of 2: one notification per distinct id; opt-out, no contact, quiet hours,
    unknown ids handled per customer; only the reachable ones are sent."""
    runtime, api = make(broadcast_batch=2, broadcast_lanes=2)
    for cid in ("a", "b"):
        put_customer(api, cid, PUSH)
    put_customer(api, "out", PUSH, opt_out_categories=["promo"])
    put_customer(api, "none", [])
    put_customer(api, "night", PUSH, quiet_hours={"start": "00:00", "end": "23:59"})
    ids = ["a", "b", "out", "none", "night", "ghost", "a"]
    bid = broadcast(api, {"customer_ids": ids})
    assert status(api, bid)["state"] == "fanning_out"
    # 6 ids, 3 batches in 2 lanes: batches 0 and 1 queued by the POST, 2 by batch 0.
    assert fan_outs(runtime) == ["created", "created", "done"]
    assert per_customer(runtime, bid) == {c: 1 for c in set(ids)}
    assert sorted(drain(runtime)) == ["sent", "sent"]
    got = status(api, bid)
    assert (got["audience"], got["processed"], got["created"]) == (6, 6, 6)
    assert got["suppressed"] == {
        "opted_out_category": 1,
        "no_contact": 1,
        "unknown_customer": 1,
    }
    assert (got["opted_out"], got["sent"], got["scheduled"], got["in_progress"]) == (1, 2, 1, 3)
    assert got["state"] == "sending"
    # The fan-out's attempts count in the stats of their cascade (they carry its name).
    stats = api.get("/v1/stats", params={"cascade": "basic"}).json()
    assert [(c["channel"], c["sent"]) for c in stats["channels"]] == [("push", 2)]


def test_a_batch_done_twice_creates_nothing_twice(make: Make):
    """The same fan-out message delivered twice: the second finds the batch done."""
    runtime, api = make(broadcast_batch=2)
    for cid in ("a", "b", "c"):
        put_customer(api, cid, PUSH)
    bid = broadcast(api, {"customer_ids": ["a", "b", "c"]})
    assert fan_out(runtime, bid, 0) == "created"
    assert fan_out(runtime, bid, 0) == "stale"
    assert fan_outs(runtime) == ["stale", "done"]  # the POST's own message, then batch 1
    assert fan_out(runtime, bid, 1) == "stale"
    assert per_customer(runtime, bid) == {"a": 1, "b": 1, "c": 1}
    assert status(api, bid)["created"] == 3


def test_two_runs_of_one_batch_at_once_commit_once(make: Make):
    """Two workers run the same batch concurrently: one commits, the other creates nothing."""
    runtime, api = make(broadcast_batch=150)
    put_customer(api, "a", PUSH)
    ids = ["a", *(f"g{i:03d}" for i in range(299))]
    bid = broadcast(api, {"customer_ids": ids})
    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda _: fan_out(runtime, bid, 0), range(2)))
    assert outcomes == ["created", "stale"]
    assert fan_outs(runtime) == ["stale", "done"]  # the POST's messages for batches 0 and 1
    assert per_customer(runtime, bid) == {c: 1 for c in ids}


def test_sweep_restarts_a_fan_out_whose_task_was_lost(make: Make, clock: FakeClock):
    """The first fan-out task is lost: the sweep queues it again once it stalled."""
    runtime, api = make(broadcast_stalled_after=60)
    put_customer(api, "a", PUSH)
    bid = broadcast(api, {"customer_ids": ["a"]})
    assert isinstance(runtime.publisher, RecordingPublisher)
    runtime.publisher.fan_outs.clear()  # Redis lost it
    assert sweep(runtime, now=clock.advance(30)).fan_outs == 0
    assert sweep(runtime, now=clock.advance(31)).fan_outs == 1
    assert sweep(runtime, now=clock.advance(1)).fan_outs == 0  # not again every tick
    assert fan_outs(runtime) == ["done"]
    assert per_customer(runtime, bid) == {"a": 1}
    assert sweep(runtime, now=clock.advance(3600)).fan_outs == 0  # finished: left alone


def test_filters_all_and_locale(make: Make):
    """'all' takes every customer; 'locale' those with that locale (no tags exist)."""
    runtime, api = make()
    for cid, locale in (("de1", "de"), ("de2", "de"), ("fr1", "fr")):
        response = api.put(f"/v1/customers/{cid}", json={"locale": locale, "contacts": PUSH})
        assert response.status_code == 200
    everyone = broadcast(api, {"filter": "all"})
    german = broadcast(api, {"locale": "de"})
    fan_outs(runtime)
    assert per_customer(runtime, everyone) == {"de1": 1, "de2": 1, "fr1": 1}
    assert per_customer(runtime, german) == {"de1": 1, "de2": 1}
    assert status(api, german)["audience"] == 2


def test_daily_cap_applies_per_customer(make: Make):
    """A customer at max_per_day for the category is suppressed as frequency_cap."""
    runtime, api = make()
    put_customer(api, "capped", PUSH, max_per_day={"promo": 1})
    put_customer(api, "free", PUSH)
    first = broadcast(api, {"customer_ids": ["capped", "free"]})
    second = broadcast(api, {"customer_ids": ["capped", "free"]})
    fan_outs(runtime)
    assert status(api, first)["suppressed"] == {}
    assert status(api, second)["suppressed"] == {"frequency_cap": 1}


def test_cancel_stops_what_is_not_sent(make: Make):
    """Cancel after fan-out: pending attempts are cancelled by state and never sent."""
    runtime, api = make(broadcast_batch=1)
    for cid in ("a", "b"):
        put_customer(api, cid, PUSH)
    bid = broadcast(api, {"customer_ids": ["a", "b"]})
    assert isinstance(runtime.publisher, RecordingPublisher)
    publisher = runtime.publisher
    broadcast_id, batch = publisher.fan_outs.pop(0)
    fan_out(runtime, broadcast_id, batch)  # only the first batch before the cancel
    response = api.post(f"/v1/broadcasts/{bid}/cancel")
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["state"], got["cancelled"], got["created"]) == ("cancelled", 1, 1)
    assert drain(runtime) == ["not_claimed"]  # the doorbell rings; nothing to claim
    assert fan_outs(runtime) == ["stale"]  # no new fan-out
    assert per_customer(runtime, bid) == {"a": 1}
    problem(api.post(f"/v1/broadcasts/{bid}/cancel"), 409)


def test_idempotency_key_replays_or_conflicts(make: Make):
    """Same key and body: the same broadcast, no second fan-out; another body: 409."""
    runtime, api = make()
    put_customer(api, "a", PUSH)
    headers = {"Idempotency-Key": "sale-1"}
    first = api.post("/v1/broadcasts", json=body({"customer_ids": ["a"]}), headers=headers)
    again = api.post("/v1/broadcasts", json=body({"customer_ids": ["a"]}), headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert fan_outs(runtime) == ["done"]
    other = api.post("/v1/broadcasts", json=body({"filter": "all"}), headers=headers)
    assert fields(problem(other, 409)) == ["Idempotency-Key"]


def test_bad_input_names_the_field(make: Make):
    """Validation errors are problem JSON naming the field; unknown ids are 404."""
    _, api = make()
    cases = [
        (body({"customer_ids": ["a"]}, cascade="nope"), "cascade"),
        (body({"customer_ids": ["ok", "bad id!"]}), "audience.customer_ids[1]"),
        (body({"customer_ids": []}), "audience.customer_ids"),
        (body({"filter": "all", "locale": "de"}), "audience"),
        (body({"filter": "vip"}), "audience.filter"),
        (body({"customer_ids": ["a"]}, content=None, template="order"), "data"),
        ({"cascade": "basic", "content": {"text": "x"}}, "audience"),
    ]
    for payload, field in cases:
        got = problem(api.post("/v1/broadcasts", json=payload), 422)
        assert field in fields(got), (field, got)
    problem(api.get("/v1/broadcasts/nope"), 404)
    problem(api.post("/v1/broadcasts/nope/cancel"), 404)


def test_large_id_lists_have_their_own_body_limit(make: Make):
    """A body over the general limit is 413 on notifications but fine for a broadcast."""
    _, api = make(max_body_bytes=2048)
    ids = [f"customer-{i:05d}" for i in range(300)]  # ~5 KB
    got = api.post("/v1/broadcasts", json=body({"customer_ids": ids}))
    assert got.status_code == 202, got.text
    assert got.json()["audience"] == 300
    padded = {"customer_id": "a", "cascade": "basic", "content": {"text": "x" * 4000}}
    problem(api.post("/v1/notifications", json=padded), 413)
