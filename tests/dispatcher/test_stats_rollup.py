"""The stats rollup answers exactly what the full recomputation answers, for any period.

A randomized workload runs through the real paths (API, send rounds, receipts on time
and late, retries, escalations by the sweep, unknown SMS outcomes, a cancelled
broadcast) over several hours of the injected clock, plus bulk UPDATE and DELETE
statements straight on the tables. Then random periods (edges anywhere in an hour,
whole hours, one cascade or all, ``now`` inside or after the period) are asked of both
:mod:`dispatcher.rollup` and the reference (:func:`dispatcher.stats.summary` and
:func:`dispatcher.savings.series`): with the deltas as the triggers left them, after
compacting them into hours, and after ``dispatcher stats rebuild``. Redundant sends
selected by the attempts' own period copies are checked against the notification join.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from config.settings import SandboxSettings, get_settings
from dispatcher import rollup, rollup_sums, savings, stats
from dispatcher.cli import main
from dispatcher.fanout import fan_out
from dispatcher.publisher import RecordingPublisher
from dispatcher.rollup_ledger import compact
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import EMAIL, PHONE, PUSH_TOKEN, put_customer, send, show

UNKNOWN_PHONE = "+14155550100"  #: the sandbox's SMS outcome is unknown
FLAKY_TOKEN = "fcm-token-" + "f" * 40  #: the sandbox answers "not sent": retried
REJECTED_TOKEN = "fcm-token-" + "r" * 40  #: the sandbox rejects: the next step at once
CUSTOMERS: dict[str, list[dict[str, str]]] = {
    "push": [{"channel": "push", "address": PUSH_TOKEN}],
    "push-sms": [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}],
    "all": [
        {"channel": "push", "address": PUSH_TOKEN},
        {"channel": "whatsapp", "address": PHONE},
        {"channel": "email", "address": EMAIL},
        {"channel": "sms", "address": PHONE},
    ],
    "unknown": [{"channel": "sms", "address": UNKNOWN_PHONE}],
    "flaky": [
        {"channel": "push", "address": FLAKY_TOKEN},
        {"channel": "sms", "address": PHONE},
    ],
    "rejected": [
        {"channel": "push", "address": REJECTED_TOKEN},
        {"channel": "email", "address": EMAIL},
    ],
}


def _receipts(api: Any, rng: random.Random, ids: list[str]) -> None:
    """Receipts for some sent attempts: read or delivered, on time or after escalation."""
    for nid in rng.sample(ids, k=min(len(ids), 8)):
        for attempt in show(api, nid)["attempts"]:
            if attempt["state"] in ("sent", "escalated") and rng.random() < 0.5:
                status = rng.choice(["read", "delivered"])
                api.post("/v1/receipts", json={"attempt_id": attempt["id"], "status": status})


def _broadcast_and_cancel(runtime: Runtime, api: Any) -> None:
    body = {
        "cascade": "basic",
        "category": "promo",
        "content": {"title": "Sale", "text": "Everything half price"},
        "audience": {"customer_ids": ["push", "push-sms", "all"]},
    }
    bid = api.post("/v1/broadcasts", json=body).json()["id"]
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    broadcast_id, batch = publisher.fan_outs.pop(0)
    fan_out(runtime, broadcast_id, batch)
    assert api.post(f"/v1/broadcasts/{bid}/cancel").status_code == 200
    publisher.fan_outs.clear()


def workload(runtime: Runtime, api: Any, clock: FakeClock, rng: random.Random) -> datetime:
    """About six hours of traffic; returns when it started."""
    start = clock()
    for customer, contacts in CUSTOMERS.items():
        put_customer(api, customer, contacts, opt_out_categories=["marketing"])
    ids: list[str] = []
    for round_ in range(6):
        clock.advance(rng.uniform(20, 70) * 60)
        for _ in range(5):
            customer = rng.choice(list(CUSTOMERS))
            cascade = rng.choice(["basic", "basic", "short"])
            category = rng.choice(["transactional"] * 4 + ["marketing"])
            ids.append(send(api, customer, cascade, category=category)["id"])
        drain(runtime)
        clock.advance(rng.uniform(5, 50))
        _receipts(api, rng, ids)
        sweep(runtime, now=clock.advance(rng.uniform(60, 400)))
        drain(runtime)
        _receipts(api, rng, ids)  # some now late: their step escalated meanwhile
        if round_ == 3:
            _broadcast_and_cancel(runtime, api)
        if round_ % 3 == 2:
            sweep(runtime, now=clock.advance(rng.uniform(100, 300)))
            drain(runtime)
    with runtime.engine.begin() as connection:  # bulk statements straight on the tables
        connection.execute(text("UPDATE attempt SET cost = cost + 0.01 WHERE channel = 'sms'"))
        victim = {"id": ids[rng.randrange(len(ids))]}
        connection.execute(text("DELETE FROM event WHERE notification_id = :id"), victim)
        connection.execute(text("DELETE FROM attempt WHERE notification_id = :id"), victim)
        connection.execute(text("DELETE FROM notification WHERE id = :id"), victim)
    return start


def periods(rng: random.Random, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Random periods: edges anywhere or on the hour, one cascade or all, now varied."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    asked = []
    for i in range(8):
        lo = start - timedelta(minutes=30) + (end - start) * rng.random()
        hi = lo + timedelta(minutes=rng.uniform(1, 60 * 8))
        if i % 4 == 0:
            lo = hour + timedelta(hours=rng.randrange(0, 4))
        if i % 5 == 1:
            hi = lo.replace(minute=0, second=0, microsecond=0) + timedelta(
                hours=rng.randrange(1, 6)
            )
        now = rng.choice([end, hi - timedelta(minutes=1), hi + timedelta(hours=1)])
        asked.append(
            {
                "since": lo,
                "until": hi,
                "cascade": rng.choice([None, None, "basic", "short"]),
                "now": now,
            }
        )
    asked.append({"since": start - timedelta(days=1), "until": end, "cascade": None, "now": end})
    return asked


def both(session: Session, asked: dict[str, Any]) -> tuple[Any, Any]:
    period = {k: asked[k] for k in ("since", "until", "cascade")}
    fast = rollup.summary(session, **period, sms_cost=0.05, now=asked["now"])
    full = stats.summary(session, **period, sms_cost=0.05)
    for bucket in ("hour", "day"):
        fast[bucket] = rollup.series(
            session, **period, sms_cost=0.05, bucket=bucket, now=asked["now"]
        )
        full[bucket] = savings.series(session, **period, sms_cost=0.05, bucket=bucket)
    fast["redundant"] = savings.redundant(session, **period)
    full["redundant"] = savings.redundant(session, **period, by_copies=False)
    return fast, full


def test_rollup_equals_the_full_recomputation(make: Make, clock: FakeClock, monkeypatch):
    """Random workload and random periods: every figure equal, before and after compaction
    and after a rebuild; the rollup covers every notification and attempt."""
    rng = random.Random(20261129)
    sandbox = SandboxSettings(
        scenarios={UNKNOWN_PHONE: "unknown", FLAKY_TOKEN: "not_sent", REJECTED_TOKEN: "rejected"}
    )
    runtime, api = make(sandbox=sandbox, broadcast_batch=2)
    start = workload(runtime, api, clock, rng)
    asked = periods(rng, start, clock())
    with Session(runtime.engine) as session:
        counts = session.execute(
            text(
                "SELECT (SELECT count(*) FROM stats_notification_delta), "
                "(SELECT count(*) FROM stats_notification_hour)"
            )
        ).one()
    assert counts[0] > 0, "the triggers appended deltas"
    checked = 0
    for stage in ("deltas", "compacted", "rebuilt"):
        if stage == "compacted":
            compact(runtime.engine)
        if stage == "rebuilt":
            url = runtime.engine.url.render_as_string(hide_password=False)
            monkeypatch.setenv("CASCADE_DATABASE_URL", url)
            get_settings.cache_clear()  # an earlier test's settings may be cached
            try:
                assert main(["stats", "rebuild"]) == 0
            finally:
                get_settings.cache_clear()
        with Session(runtime.engine) as session:
            if stage != "deltas":
                left = session.execute(text("SELECT count(*) FROM stats_notification_delta"))
                assert left.scalar_one() == 0
            for period in asked:
                fast, full = both(session, period)
                assert fast == full, (stage, period)
                checked += bool(full["notifications"])
    assert checked > 12  # most periods hold notifications
    with Session(runtime.engine) as session:
        whole = both(session, asked[-1])[1]
    assert whole["late_receipts"] > 0
    assert {"read", "delivered", "suppressed"} <= set(whole["by_state"])
    channels = {c["channel"]: c for c in whole["channels"]}
    assert channels["push"]["median_seconds_to_read"] is not None
    assert channels["sms"]["cost"] > 0
    assert whole["redundant"], "some sends were made after an earlier step was confirmed"


@pytest.mark.parametrize(
    ("since", "until", "now", "live"),
    [
        ("10:00", "14:00", "15:00", []),
        ("10:10", "14:00", "15:00", [("10:00", "10:10", -1)]),
        ("10:50", "14:00", "15:00", [("10:50", "11:00", 1)]),
        ("10:00", "13:59", "13:59", [("13:59", "14:00", -1)]),
        ("10:00", "13:05", "15:00", [("13:00", "13:05", 1)]),
        ("10:20", "10:40", "15:00", [("10:20", "10:40", 1)]),
        ("10:05", "10:50", "10:51", [("10:00", "10:05", -1), ("10:50", "11:00", -1)]),
    ],
)
def test_plan_reads_the_least_live_time(since: str, until: str, now: str, live: list[Any]):
    """Edges are added or subtracted, whichever spans less time before now."""

    def at(moment: str) -> datetime:
        hour, minute = moment.split(":")
        return datetime(2026, 11, 29, int(hour), int(minute), tzinfo=UTC)

    cut = rollup_sums.plan(at(since), at(until), at(now))
    assert [(lo, hi, sign) for lo, hi, sign in cut.live] == [(at(a), at(b), s) for a, b, s in live]
