"""Engagement counts on the real database (both backends), and the adaptive order through
the API: counts kept as attempts end, decayed in the upsert, read once per notification."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlmodel import col, select

from config.settings import SandboxSettings
from dispatcher import engagement, timeline
from dispatcher.customer_tables import Engagement
from dispatcher.customers import ensure_customer
from dispatcher.db import session_scope
from dispatcher.experiments import assign
from dispatcher.models import Event, Notification
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from providers.base import Channel
from tests.conftest import CASCADES
from tests.dispatcher.test_broadcasts import fan_outs
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import EMAIL, PHONE, PUSH_TOKEN, put_customer, receipt, send, show

ADAPTIVE = """\
name: adaptive
ttl: 1h
order: adaptive
steps:
  - channel: push
    wait_for: read
    timeout: 60s
  - channel: messenger
    among: [whatsapp, vk]
    wait_for: read
    timeout: 120s
  - channel: email
    wait_for: delivered
    timeout: 180s
  - channel: sms
    wait_for: delivered
    timeout: 240s
"""
AB_TEST = ADAPTIVE.replace("name: adaptive", "name: abtest").replace("order: adaptive\n", "") + (
    "experiment:\n"
    "  variants:\n"
    "    - {name: static, weight: 1}\n"
    "    - {name: adaptive, weight: 1, order: adaptive}\n"
)
CONTACTS = [
    {"channel": "push", "address": PUSH_TOKEN},
    {"channel": "whatsapp", "address": PHONE},
    {"channel": "vk", "address": "5550101"},
    {"channel": "email", "address": EMAIL},
    {"channel": "sms", "address": PHONE},
]
HOUR = 3600.0


@pytest.fixture(name="adaptive")
def _adaptive(make: Make, tmp_path: Path) -> tuple[Runtime, TestClient]:
    """The test cascades plus an ``order: adaptive`` one; population rates read fresh."""
    directory = tmp_path / "cascades"
    directory.mkdir()
    (directory / "basic.yaml").write_text((CASCADES / "basic.yaml").read_text())
    (directory / "adaptive.yaml").write_text(ADAPTIVE)
    (directory / "abtest.yaml").write_text(AB_TEST)
    engagement._population.clear()
    return make(cascades_dir=directory, engagement_population_refresh=1)


def counts(engine: Engine, customer_id: str) -> dict[str, tuple[float, float]]:
    with session_scope(engine) as session:
        rows = session.exec(select(Engagement).where(Engagement.customer_id == customer_id))
        return {r.channel: (round(r.confirmed, 3), round(r.tried, 3)) for r in rows}


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.lower())

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def ignore_push_read_vk(runtime: Runtime, api: TestClient, clock: FakeClock) -> str:
    """One notification planned push first: push goes unread past its minute, vk is read."""
    nid = str(send(api, "ad1", cascade="adaptive")["id"])
    assert drain(runtime) == ["sent"]
    assert show(api, nid)["attempts"][0]["channel"] == "push"
    sweep(runtime, now=clock.advance(61))
    assert drain(runtime) == ["sent"]
    vk = show(api, nid)["attempts"][1]
    assert vk["channel"] == "vk"
    assert receipt(api, vk["id"], "read")["outcome"] == "finished"
    return nid


def test_attempts_ending_update_the_counts_and_the_next_order(
    adaptive: tuple[Runtime, TestClient], clock: FakeClock, db_engine: Engine
):
    """A push that timed out counts as tried, a vk read as confirmed, in the transactions
    that ended them (untried channels get no row); the next notification starts on vk,
    and its timeline says why with the real counts."""
    runtime, api = adaptive
    put_customer(api, "ad1", contacts=CONTACTS)
    first = ignore_push_read_vk(runtime, api, clock)
    assert [s["channel"] for s in show(api, first)["steps"]] == ["push", "vk", "email", "sms"]
    assert counts(db_engine, "ad1") == {"push": (0.0, 1.0), "vk": (1.0, 1.0)}
    clock.advance(HOUR)
    second = send(api, "ad1", cascade="adaptive")
    assert [s["channel"] for s in second["steps"]] == ["vk", "push", "email", "sms"]
    ordered = [e for e in show(api, second["id"])["events"] if e["type"] == "ordered"]
    assert ordered[0]["detail"]["reason"] == "vk first: 1/1 read within 2 min"
    assert ordered[0]["detail"]["steps"][1] == "push: 0/1 read within 1 min"
    with session_scope(db_engine) as session:
        found = timeline.load(session, second["id"])
    assert found is not None
    assert found["order"] == "vk first: 1/1 read within 2 min"
    assert drain(runtime) == ["sent"]
    receipt(api, show(api, second["id"])["attempts"][0]["id"], "read")
    # The first read is an hour old: it weighs 0.5 ** (1 h / 30 days) = 0.999 now.
    assert counts(db_engine, "ad1") == {"push": (0.0, 1.0), "vk": (1.999, 1.999)}


def test_failed_send_counts_as_tried(make: Make, tmp_path: Path, db_engine: Engine):
    """A push the provider rejects ends unconfirmed: tried, not confirmed."""
    directory = tmp_path / "cascades"
    directory.mkdir()
    (directory / "adaptive.yaml").write_text(ADAPTIVE)
    runtime, api = make(
        cascades_dir=directory, sandbox=SandboxSettings(scenarios={PUSH_TOKEN: "rejected"})
    )
    put_customer(api, "ad1", contacts=CONTACTS)
    send(api, "ad1", cascade="adaptive")
    assert drain(runtime) == ["failed", "sent"]
    assert counts(db_engine, "ad1") == {"push": (0.0, 1.0)}


def test_adaptive_reads_one_customer_and_static_reads_nothing(
    adaptive: tuple[Runtime, TestClient], clock: FakeClock, db_engine: Engine
):
    """The hot path: a static cascade never touches the engagement table; an adaptive one
    reads the customer's rows once (the population's rates come from the cache)."""
    _, api = adaptive
    assert api.get("/v1/cascades/adaptive").json()["order"] == "adaptive"
    assert api.get("/v1/cascades/basic").json()["order"] == "static"
    put_customer(api, "ad2", contacts=CONTACTS)
    send(api, "ad2", cascade="adaptive")  # warms the population cache
    with statements(db_engine) as seen:
        send(api, "ad2", cascade="basic")
    assert not [s for s in seen if "engagement" in s]
    with statements(db_engine) as seen:
        send(api, "ad2", cascade="adaptive")
    reads = [s for s in seen if "engagement" in s]
    assert len(reads) == 1
    assert "where engagement.customer_id" in reads[0]


def test_upsert_decays_stored_counts_to_the_newest_observation(db_engine: Engine, clock: FakeClock):
    """Counts one half-life old weigh half when new ones are added; an older observation
    arriving late is decayed instead, and the row keeps its newer time."""
    half_life = engagement._config.half_life
    start = clock()
    with session_scope(db_engine) as session:
        ensure_customer(session, "ad3", start)
    for at, confirmed in [(start, True), (start + timedelta(seconds=half_life), False)]:
        with session_scope(db_engine) as session:
            engagement.observe(
                session, customer_id="ad3", channel="push", confirmed=confirmed, at=at
            )
    assert counts(db_engine, "ad3") == {"push": (0.5, 1.5)}
    late = start - timedelta(seconds=half_life)
    with session_scope(db_engine) as session:
        engagement.observe(session, customer_id="ad3", channel="push", confirmed=True, at=late)
    assert counts(db_engine, "ad3") == {"push": (0.75, 1.75)}
    with session_scope(db_engine) as session:
        row = session.get_one(Engagement, ("ad3", "push"))
        assert row.as_of == pytest.approx((start + timedelta(seconds=half_life)).timestamp())
        now = start + timedelta(seconds=2 * half_life)
        assert engagement.counts_of(session, "ad3", now, half_life)[
            Channel.PUSH
        ].tried == pytest.approx(0.875)


def test_observations_of_a_rolled_back_transaction_are_dropped(db_engine: Engine, clock: FakeClock):
    """An attempt end that is rolled back leaves no count behind."""
    with session_scope(db_engine) as session:
        ensure_customer(session, "ad4", clock())

    def fail() -> None:
        with session_scope(db_engine) as session:
            engagement.observe(session, customer_id="ad4", channel="sms", confirmed=True, at=now)
            raise RuntimeError("boom")

    now = clock()
    with pytest.raises(RuntimeError):
        fail()
    with session_scope(db_engine) as session:
        engagement.observe(session, customer_id="ad4", channel="push", confirmed=False, at=clock())
    assert counts(db_engine, "ad4") == {"push": (0.0, 1.0)}


def test_population_rates_are_everyones_decayed_share(db_engine: Engine, clock: FakeClock):
    """Two customers' telegram counts make the population's rate (Laplace-smoothed)."""
    now = clock()
    with session_scope(db_engine) as session:
        for customer_id, confirmed in [("ad5", True), ("ad6", True), ("ad7", False)]:
            ensure_customer(session, customer_id, now)
            engagement.observe(
                session, customer_id=customer_id, channel="telegram", confirmed=confirmed, at=now
            )
    with session_scope(db_engine) as session:
        rates = engagement.population(session, now, engagement._config.half_life)
    assert rates == {Channel.TELEGRAM: pytest.approx((2 + 1) / (3 + 2))}


def test_broadcast_members_are_ordered_by_their_own_history(
    adaptive: tuple[Runtime, TestClient], clock: FakeClock, db_engine: Engine
):
    """A broadcast on an adaptive cascade plans each member with their own counts (read
    for the batch in one query): the vk reader starts on vk, a newcomer on push, and each
    gets an ``ordered`` event."""
    runtime, api = adaptive
    for customer_id in ("ad8", "ad9", "ad10"):
        put_customer(api, customer_id, contacts=CONTACTS)
    with session_scope(db_engine) as session:
        for customer_id, channel, confirmed, times in [
            ("ad8", "push", False, 30),
            ("ad8", "vk", True, 9),
            ("ad8", "vk", False, 1),
            ("ad10", "push", True, 30),
        ]:
            for _ in range(times):
                engagement.observe(
                    session,
                    customer_id=customer_id,
                    channel=channel,
                    confirmed=confirmed,
                    at=clock(),
                )
    response = api.post(
        "/v1/broadcasts",
        json={
            "cascade": "adaptive",
            "content": {"title": "Sale", "text": "Everything half price"},
            "audience": {"customer_ids": ["ad8", "ad9"]},
        },
    )
    assert response.status_code == 202, response.text
    with statements(db_engine) as seen:
        assert fan_outs(runtime) == ["done"]
    assert len([s for s in seen if "from engagement" in s]) == 2  # the batch, the population
    with session_scope(db_engine) as session:
        firsts = {
            n.customer_id: n.steps[0]["channel"]
            for n in session.exec(
                select(Notification).where(col(Notification.broadcast_id).is_not(None))
            )
        }
        reasons = {
            e.customer_id: e.detail["reason"]
            for e in session.exec(select(Event).where(Event.type == "ordered"))
        }
    assert firsts == {"ad8": "vk", "ad9": "push"}
    assert reasons == {
        "ad8": "vk first: 9/10 read within 2 min",
        "ad9": "push first: no history; 50% of all push messages read within 1 min",
    }


def test_an_experiment_compares_static_and_adaptive_order(
    adaptive: tuple[Runtime, TestClient], clock: FakeClock, db_engine: Engine
):
    """A variant may set ``order``: with the same history, the customer in the adaptive
    variant starts on the messenger they read, the one in the static variant on push."""
    _, api = adaptive
    weights = [("static", 1.0), ("adaptive", 1.0)]
    ids = [f"ab{n}" for n in range(20)]
    static_id = next(i for i in ids if assign(i, "abtest", weights) == "static")
    adaptive_id = next(i for i in ids if assign(i, "abtest", weights) == "adaptive")
    for customer_id in (static_id, adaptive_id):
        put_customer(api, customer_id, contacts=CONTACTS)
        with session_scope(db_engine) as session:
            for channel, confirmed, times in [("push", False, 30), ("vk", True, 10)]:
                for _ in range(times):
                    engagement.observe(
                        session,
                        customer_id=customer_id,
                        channel=channel,
                        confirmed=confirmed,
                        at=clock(),
                    )
    static = send(api, static_id, cascade="abtest")
    adaptive_ = send(api, adaptive_id, cascade="abtest")
    assert [s["channel"] for s in static["steps"]] == ["push", "whatsapp", "email", "sms"]
    assert adaptive_["steps"][0]["channel"] == "vk"
    events = {
        nid: [e["type"] for e in show(api, nid)["events"]]
        for nid in (static["id"], adaptive_["id"])
    }
    assert "ordered" not in events[static["id"]]
    assert "ordered" in events[adaptive_["id"]]
