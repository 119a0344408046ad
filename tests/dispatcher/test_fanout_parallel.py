"""Parallel fan-out batches on the real database: claims, lanes, restarts, shared plans.

Batches of one broadcast run at once in threads (each its own session, as worker
processes would), duplicates included; every customer still gets one notification.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlmodel import Session, col, select

from dispatcher.customer_tables import ContactPoint
from dispatcher.fanout import fan_out
from dispatcher.models import Attempt, Notification
from dispatcher.publisher import RecordingPublisher
from dispatcher.sweep import sweep
from tests.dispatcher.test_broadcasts import PUSH, broadcast, fan_outs, per_customer, status
from tests.support.clock import FakeClock
from tests.support.dispatching import Make
from tests.support.scenario import put_customer


def push(token: str) -> list[dict[str, Any]]:
    return [{"channel": "push", "address": f"fcm-token-{token:a<40}"}]


def test_batches_at_once_and_twice_create_one_notification_per_customer(make: Make):
    """Four batches, each run two or three times by threads at once: one commits each,
    exactly one of them completes the broadcast, one notification per customer."""
    runtime, api = make(broadcast_batch=25, broadcast_lanes=4)
    real = [f"r{i:02d}" for i in range(10)]
    for cid in real:
        put_customer(api, cid, PUSH)
    ids = [*real, *(f"g{i:03d}" for i in range(90))]
    bid = broadcast(api, {"customer_ids": ids})
    assert isinstance(runtime.publisher, RecordingPublisher)
    runtime.publisher.fan_outs.clear()  # run here instead, all at once
    runs = [0, 1, 2, 3, 0, 1, 2, 3, 3, 0]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda b: fan_out(runtime, bid, b), runs))
    assert sorted(outcomes) == ["created"] * 3 + ["done"] + ["stale"] * 6
    assert per_customer(runtime, bid) == {c: 1 for c in ids}
    got = status(api, bid)
    assert (got["state"], got["processed"], got["created"]) == ("sending", 100, 100)
    assert got["suppressed"] == {"unknown_customer": 90}
    assert set(fan_outs(runtime)) <= {"stale"}  # nothing left to do


def test_sweep_requeues_only_unclaimed_batches(make: Make, clock: FakeClock):
    """Lanes of 2, batches of 1: batch 0 ran, the other messages were lost; the sweep
    queues the unclaimed batches (one lane's worth each), which finish the rest."""
    runtime, api = make(broadcast_batch=1, broadcast_lanes=2, broadcast_stalled_after=60)
    ids = ["a", "b", "c", "d"]
    for cid in ids:
        put_customer(api, cid, PUSH)
    bid = broadcast(api, {"customer_ids": ids})
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    assert publisher.fan_outs == [(bid, 0), (bid, 1)]
    publisher.fan_outs.clear()
    assert fan_out(runtime, bid, 0) == "created"
    assert publisher.fan_outs == [(bid, 2)]  # its lane goes on
    publisher.fan_outs.clear()  # Redis lost it
    assert sweep(runtime, now=clock.advance(61)).fan_outs == 1
    assert publisher.fan_outs == [(bid, 1), (bid, 2)]
    assert fan_outs(runtime) == ["created", "created", "done"]  # 1, 2, then 3 (1's lane)
    assert per_customer(runtime, bid) == dict.fromkeys(ids, 1)


def test_members_of_one_shape_keep_their_own_contacts_and_rules(make: Make):
    """Customers with the same preferences share one plan, but each attempt uses the
    customer's own contact; quiet hours and opt-outs still apply per customer."""
    runtime, api = make(broadcast_batch=10)
    for cid in ("a", "b", "c"):
        put_customer(api, cid, push(cid))
    put_customer(api, "night", push("n"), quiet_hours={"start": "00:00", "end": "23:59"})
    put_customer(api, "out", push("o"), opt_out_channels=["push"])
    bid = broadcast(api, {"customer_ids": ["a", "b", "c", "night", "out"]})
    assert fan_outs(runtime) == ["done"]
    with Session(runtime.engine) as session:
        used = dict(
            session.exec(
                select(Notification.customer_id, Attempt.contact_id)
                .join(Attempt, col(Attempt.notification_id) == col(Notification.id))
                .where(Notification.broadcast_id == bid)
            ).all()
        )
        own = dict(session.exec(select(ContactPoint.customer_id, ContactPoint.id)).all())
    assert used == {c: own[c] for c in ("a", "b", "c", "night")}
    assert len(set(used.values())) == 4
    got = status(api, bid)
    assert got["scheduled"] == 1  # night: postponed out of quiet hours
    assert got["suppressed"] == {"opted_out": 1}
