"""Races between receipts, the worker and the sweep, made deterministic on the real database.

Each test reproduces a defect seen from outside: a read push that still let a paid
SMS go out, a receipt turning an escalated attempt into delivered, a receipt from
one provider confirming another provider's send, a paid send lost to a database blip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlmodel import Session

from config.settings import SandboxSettings
from dispatcher.api.app import create_app
from dispatcher.claims import mark_taken
from dispatcher.dispatch import claim, deliver
from dispatcher.models import Attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.receipt_application import _apply_to
from dispatcher.receipt_tables import ProviderEvent
from dispatcher.receipts import ingest, store
from dispatcher.scheduler import Lease, Scheduler
from dispatcher.sweep import sweep
from dispatcher.work import Work
from providers.base import Message, ReceiptEvent, ReceiptKind, SendResult
from tests.conftest import AUTH
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain, pending_bells
from tests.support.scenario import PHONE, PUSH_TOKEN, attempts, put_customer, receipt, send, show
from tests.support.services import POSTGRES_URL

PUSH_AND_SMS = [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}]


def test_receipt_during_the_send_is_applied_when_it_is_recorded(make: Make, clock: FakeClock):
    """A read posted while the push is 'sending' (API clock ahead) stops the cascade: no SMS."""
    runtime, api = make()
    ahead = replace(runtime, clock=lambda: clock() + timedelta(seconds=5))
    with TestClient(create_app(ahead), headers=AUTH) as api_ahead:
        put_customer(api, "race1", contacts=PUSH_AND_SMS)
        nid = send(api, "race1")["id"]
        (bell,) = pending_bells(runtime)
        token = claim(runtime, bell, clock())
        assert token is not None
        assert receipt(api_ahead, bell, "read")["outcome"] == "waiting"  # mid-send
        assert deliver(runtime, bell, token, clock()) == "sent"
    assert show(api, nid)["state"] == "read"
    sweep(runtime, now=clock.advance(61))
    assert pending_bells(runtime) == []
    assert attempts(api, nid) == [("push", "read")]


def test_a_stored_receipt_wins_over_the_timer(make: Make, clock: FakeClock):
    """A satisfying receipt stored but not applied yet is applied before any escalation."""
    runtime, api = make()
    put_customer(api, "race2", contacts=PUSH_AND_SMS)
    nid = send(api, "race2")["id"]
    drain(runtime)
    push_id = show(api, nid)["attempts"][0]["id"]
    with Session(runtime.engine, expire_on_commit=False) as session:
        event = ReceiptEvent(
            provider="app", event_id="e1", kind=ReceiptKind.READ, reference=push_id
        )
        row = store(session, event, clock())
        assert row is not None
        row.next_check_at = clock() + timedelta(hours=1)  # left waiting, as if it lost a race
        session.add(row)
        session.commit()
    report = sweep(runtime, now=clock.advance(61))
    assert report.escalated == 0
    assert show(api, nid)["state"] == "read"
    assert attempts(api, nid) == [("push", "read")]


def test_a_receipt_racing_the_sweep_never_reopens_an_escalated_attempt(
    make: Make, clock: FakeClock
):
    """The receipt decided on 'sent'; the sweep escalated first: state stays escalated."""
    runtime, api = make()
    put_customer(api, "race3", contacts=PUSH_AND_SMS)
    nid = send(api, "race3")["id"]
    drain(runtime)
    push_id = show(api, nid)["attempts"][0]["id"]
    with Session(runtime.engine, expire_on_commit=False) as session:
        stale = session.get(Attempt, push_id)  # the receipt's view: 'sent'
        assert stale is not None
        assert stale.state == "sent"
    sweep(runtime, now=clock.advance(61))  # meanwhile the sweep escalates it
    with Session(runtime.engine, expire_on_commit=False) as session:
        event = store(
            session,
            ReceiptEvent(
                provider="app", event_id="d1", kind=ReceiptKind.DELIVERED, reference=push_id
            ),
            clock(),
        )
        assert event is not None
        session.add(stale)
        _apply_to(Work(session, clock()), event, stale)
        session.commit()
    view = show(api, nid)
    assert [(a["channel"], a["state"]) for a in view["attempts"]] == [
        ("push", "escalated"),
        ("sms", "pending"),
    ]
    assert view["attempts"][0]["delivered_at"] is not None


@pytest.mark.parametrize("provider", ["telegram", "twilio", "app"])
def test_a_receipt_confirms_only_its_own_providers_attempt(
    make: Make, clock: FakeClock, provider: str
):
    """A press of forged Telegram callback data naming an SMS attempt confirms nothing."""
    runtime, api = make()
    put_customer(api, "race4", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "race4")["id"]
    drain(runtime)
    sms_id = show(api, nid)["attempts"][0]["id"]
    forged = ReceiptEvent(provider=provider, event_id="f1", kind=ReceiptKind.READ, reference=sms_id)
    with Session(runtime.engine, expire_on_commit=False) as session:
        (outcome,) = ingest(session, [forged], clock(), [])
        session.commit()
        stored = session.get(ProviderEvent, 1)
    assert outcome == "foreign"
    assert stored is not None
    assert stored.outcome == "foreign"
    assert show(api, nid)["state"] == "in_progress"
    assert attempts(api, nid) == [("sms", "sent")]


def test_an_unknown_outcome_records_the_price(make: Make):
    """The provider may have billed a send whose outcome is unknown: its price is recorded."""
    runtime, api = make(sandbox=SandboxSettings(scenarios={PHONE: "unknown"}), costs={"sms": 0.05})
    put_customer(api, "race5", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "race5")["id"]
    assert drain(runtime) == ["unknown"]
    view = show(api, nid)
    assert view["attempts"][0]["cost"] == pytest.approx(0.05)
    assert view["cost"] == pytest.approx(0.05)


def test_republish_only_what_is_not_queued(make: Make, clock: FakeClock):
    """Old doorbells are rung again only when their queue is empty (or its depth unknown)."""
    runtime, api = make(republish_after=30)
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    put_customer(api, "race6", contacts=PUSH_AND_SMS)
    send(api, "race6")
    pending_bells(runtime)  # published once, not consumed yet
    publisher.depths["push"] = 250  # a backlog: its doorbell is queued behind others
    assert sweep(runtime, now=clock.advance(31)).republished == 0
    publisher.depths["push"] = 0  # the queue drained and the attempt is still pending: lost
    assert sweep(runtime, now=clock.advance(1)).republished == 1
    assert sweep(runtime, now=clock.advance(1)).republished == 0  # just rung again
    del publisher.depths["push"]  # the broker cannot say: age alone decides
    assert sweep(runtime, now=clock.advance(31)).republished == 1


def test_a_group_taken_by_a_worker_is_not_rung_again(make: Make, clock: FakeClock):
    """A backlog held in a worker's reserved groups leaves the queue empty; the worker marks
    a group's attempts taken when it starts it, so the sweep does not take them for lost."""
    runtime, api = make(republish_after=30)
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    put_customer(api, "race7", contacts=PUSH_AND_SMS)
    nid = send(api, "race7")["id"]
    attempt_id = pending_bells(runtime)[0]
    publisher.depths["push"] = 0  # the group left the queue: a worker holds it
    clock.advance(31)
    assert mark_taken(runtime, [attempt_id, "no-such-attempt"], now=clock()) == 1
    assert sweep(runtime, now=clock.advance(1)).republished == 0
    assert sweep(runtime, now=clock.advance(30)).republished == 1  # taken long ago: lost
    drain(runtime)
    assert mark_taken(runtime, [attempt_id], now=clock()) == 0  # only pending ones
    assert show(api, nid)["attempts"][0]["state"] != "pending"


def test_one_beat_sweeps_the_other_stands_by(make: Make, redis_url: str):
    """Two beats: the lease lets exactly one sweep; the standby takes over when it is gone."""
    runtime, _ = make()
    client = redis.Redis.from_url(redis_url)
    first = Scheduler(runtime, Lease(client, "test:lease", ttl=30), interval=1)
    second = Scheduler(runtime, Lease(client, "test:lease", ttl=30), interval=1)
    assert first.tick() is not None
    assert second.tick() is None
    assert first.tick() is not None  # renewed by its holder
    first.lease.release()
    assert second.tick() is not None
    assert first.tick() is None


class _DatabaseDropsAfterTheCall:
    """A provider that takes the message, then the database goes away for a moment."""

    name = "sandbox"

    def __init__(self, inner: object, drop: Callable[[], None]) -> None:
        self.inner = inner
        self.drop = drop
        self.channel = inner.channel  # type: ignore[attr-defined]  # the throttle keys on it

    def send(self, message: Message) -> SendResult:
        result: SendResult = self.inner.send(message)  # type: ignore[attr-defined]
        self.drop()
        return result


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # a server that can refuse
def test_a_paid_send_is_recorded_after_the_database_comes_back(
    make: Make, clock: FakeClock, database_url: str
):
    """The database drops between the provider's 200 and the recording: retried, not lost."""
    runtime, api = make(record_retry_for=20)
    put_customer(api, "race7", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "race7")["id"]
    (bell,) = pending_bells(runtime)
    token = claim(runtime, bell, clock())
    assert token is not None
    name = make_url(database_url).database
    timers: list[threading.Timer] = []

    def allow(flag: bool) -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(flag).lower()}')
            if not flag:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    def drop() -> None:
        allow(False)
        timers.append(threading.Timer(1.5, allow, (True,)))
        timers[-1].start()

    candidates = runtime.router.candidates

    def dropping(*args: Any, **kwargs: Any) -> list[Any]:
        return [_DatabaseDropsAfterTheCall(p, drop) for p in candidates(*args, **kwargs)]

    runtime.router.candidates = dropping  # type: ignore[method-assign]
    try:
        outcome = deliver(runtime, bell, token, clock())
    finally:
        for timer in timers:
            timer.join()
        allow(True)
    assert outcome == "sent"
    assert attempts(api, nid) == [("sms", "sent")]
