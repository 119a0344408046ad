"""The sweep escalates due timers in batches: one compare-and-set per group, same outcomes.

A batch must do exactly what one escalation at a time did: every due step escalates
once, its next step is created and rung, its history written; an attempt that moved
on meanwhile (a receipt committed between the sweep's read and its write) loses the
compare-and-set and nothing follows for it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import redis
from sqlalchemy import update
from sqlmodel import Session, col, select

from dispatcher.decisions import on_timeout
from dispatcher.lifecycle import apply_many
from dispatcher.models import Attempt, Event, Notification
from dispatcher.scheduler import MIN_PAUSE, Lease, Scheduler
from dispatcher.sweep import sweep
from dispatcher.work import Work
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain, pending_bells
from tests.support.scenario import PHONE, PUSH_TOKEN, attempts, put_customer, receipt, send
from tests.support.waiting import wait_until

PUSH_AND_SMS = [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}]
MANY = 25


def test_many_due_timers_escalate_once_each_in_one_pass(make: Make, clock: FakeClock):
    runtime, api = make()
    put_customer(api, "batch", contacts=PUSH_AND_SMS)
    ids = [send(api, "batch")["id"] for _ in range(MANY)]
    assert drain(runtime) == ["sent"] * MANY
    assert attempts(api, ids[0]) == [("push", "sent")]
    with Session(runtime.engine) as session:
        first = session.exec(select(Attempt).where(Attempt.notification_id == ids[0])).one()
    assert receipt(api, first.id, "read")["outcome"] == "finished"

    report = sweep(runtime, now=clock.advance(61))

    assert report.escalated == MANY - 1
    assert len(pending_bells(runtime)) == MANY - 1  # the SMS steps, rung after commit
    assert attempts(api, ids[0]) == [("push", "read")]
    for nid in ids[1:]:
        assert attempts(api, nid) == [("push", "escalated"), ("sms", "pending")]
    with Session(runtime.engine) as session:
        escalated = Counter(
            session.exec(select(Event.notification_id).where(Event.type == "escalated")).all()
        )
    assert escalated == Counter(ids[1:])
    assert sweep(runtime, now=clock.advance(1)).escalated == 0


def test_an_attempt_that_moved_on_loses_the_batched_compare_and_set(make: Make, clock: FakeClock):
    runtime, api = make()
    put_customer(api, "cas", contacts=PUSH_AND_SMS)
    ids = [send(api, "cas")["id"] for _ in range(3)]
    drain(runtime)
    now = clock.advance(61)
    with Session(runtime.engine) as session:
        notifications = {n.id: n for n in session.exec(select(Notification)).all()}
        loaded = session.exec(select(Attempt).where(col(Attempt.notification_id).in_(ids))).all()
        session.expunge_all()
    moved = next(a for a in loaded if a.notification_id == ids[1])
    assert receipt(api, moved.id, "read")["outcome"] == "finished"  # commits in between

    with Session(runtime.engine) as session:
        work = Work(session, now)
        items = []
        for attempt in loaded:
            session.add(attempt)
            notification = notifications[attempt.notification_id]
            session.add(notification)
            transition = on_timeout(attempt, now)
            assert transition is not None
            items.append((notification, attempt, transition))
        assert apply_many(work, items, source="sweep") == 2
        session.commit()
    assert [b.channel for b in work.bells] == ["sms", "sms"]
    assert attempts(api, ids[1]) == [("push", "read")]
    assert attempts(api, ids[0]) == [("push", "escalated"), ("sms", "pending")]
    assert attempts(api, ids[2]) == [("push", "escalated"), ("sms", "pending")]


def test_beat_wakes_for_a_timer_due_before_the_next_full_pass(
    make: Make, clock: FakeClock, redis_url: str
):
    """Full passes 30 s apart: a timer due 0.3 s after the first one still escalates at once."""
    runtime, api = make()
    put_customer(api, "soon", contacts=PUSH_AND_SMS)
    nid = send(api, "soon")["id"]
    drain(runtime)  # the push is sent; its timer falls due 60 s later
    started = time.monotonic()
    base = clock() + timedelta(seconds=59.7)
    following = replace(runtime, clock=lambda: base + timedelta(seconds=time.monotonic() - started))
    scheduler = Scheduler(following, Lease(redis.Redis.from_url(redis_url), "test:wake", 60), 30)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    try:
        wait_until(
            lambda: attempts(api, nid) == [("push", "escalated"), ("sms", "pending")],
            timeout=10,
            what="the escalation",
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    assert time.monotonic() - started < 10  # not at the next full pass, 30 s later


def test_pause_is_until_the_next_timer_or_the_next_full_pass(make: Make, clock: FakeClock):
    runtime, api = make()
    scheduler = Scheduler(runtime, Lease(redis.Redis(), "unused", 60), 1)
    scheduler.leading = True

    def ahead() -> float:  # the next full pass, 0.9 s from now
        return time.monotonic() + 0.9

    assert 0.85 < scheduler.pause(ahead()) <= 0.9  # no timer at all
    put_customer(api, "closed", contacts=PUSH_AND_SMS)
    closed = send(api, "closed")["id"]
    drain(runtime)
    assert api.post(f"/v1/notifications/{closed}/cancel").status_code == 200
    with Session(runtime.engine) as session:  # a timer left on a closed one (older rows)
        session.execute(
            update(Attempt)
            .where(col(Attempt.notification_id) == closed)
            .values(escalate_at=clock() - timedelta(seconds=1))
        )
        session.commit()
    assert 0.85 < scheduler.pause(ahead()) <= 0.9  # never picked: no reason to wake
    put_customer(api, "later", contacts=PUSH_AND_SMS)
    send(api, "later")
    drain(runtime)
    clock.advance(59.7)
    assert 0.25 < scheduler.pause(ahead()) <= 0.3  # the push's timer, 0.3 s away
    clock.advance(5)
    assert scheduler.pause(ahead()) == MIN_PAUSE  # overdue: at once, but never a busy loop
    scheduler.leading = False
    assert 0.85 < scheduler.pause(ahead()) <= 0.9  # standing by: only the full pass's lease try
