"""Two SMS providers: the first has an outage (503 on every call).

Sends move to the second within the same step, the first is demoted for a
cool-down shared through Redis, nothing is sent twice, and after the cool-down
the recovered first provider is used again. Both providers are simulators over
real HTTP; time is the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.dispatch import send_attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from tests.conftest import AUTH, make_settings
from tests.simulators import smsru, twilio
from tests.simulators.server import serve
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, put_customer, send, show


@pytest.fixture(name="sims")
def _sims() -> Iterator[tuple[Any, str, Any, str]]:
    first, second = twilio.create_app(), smsru.create_app()
    with serve(first) as first_url, serve(second) as second_url:
        yield first, first_url, second, second_url


@pytest.fixture(name="world")
def _world(
    sims, database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock
):
    _, first_url, _, second_url = sims
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        channels={"sms": ["twilio", "smsru"]},
        providers={
            "twilio": {
                "base_url": first_url,
                "account_sid": twilio.ACCOUNT_SID,
                "auth_token": twilio.AUTH_TOKEN,
                "sender": "+15005550006",
                "cost": 0.0079,
            },
            "smsru": {"base_url": second_url, "api_id": smsru.API_ID, "cost": 0.04},
        },
        demote_after_failures=2,
        demote_cooldown=300,
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    router = build_router(settings, client)
    runtime = Runtime(
        settings,
        load_cascades(settings.cascades_dir, router.available_channels()),
        db_engine,
        router,
        RecordingPublisher(),
        clock,
    )
    with TestClient(create_app(runtime), headers=AUTH) as api:
        put_customer(api, "sms-only", contacts=[{"channel": "sms", "address": PHONE}])
        yield runtime, api
    router.close()


def send_one(runtime: Runtime, api: TestClient) -> dict[str, object]:
    nid = send(api, "sms-only")["id"]
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    (bell,) = publisher.published
    publisher.published.clear()
    assert send_attempt(runtime, bell.attempt_id) == "sent"
    (attempt,) = show(api, nid)["attempts"]
    return dict(attempt)


def test_outage_fails_over_demotes_and_recovers(
    world, sims, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """503s move sends to SMS.ru; Twilio is demoted, skipped, and used again after the cool-down."""
    runtime, api = world
    first, first_url, second, _ = sims
    httpx.post(f"{first_url}/_sim/mode", json={"mode": "outage"})
    caplog.set_level(logging.ERROR, logger="dispatcher.health")

    one = send_one(runtime, api)
    assert (one["provider"], one["state"], one["tries"]) == ("smsru", "sent", 1)
    assert (len(first.requests), len(first.sent)) == (3, 0)  # three quick tries, all refused
    assert not runtime.router.health.demoted("twilio", clock())

    two = send_one(runtime, api)
    assert two["provider"] == "smsru"
    assert runtime.router.health.demoted("twilio", clock())
    assert [r.message for r in caplog.records] == ["provider demoted"]

    httpx.post(f"{first_url}/_sim/mode", json={"mode": "normal"})
    clock.advance(299)
    three = send_one(runtime, api)
    assert three["provider"] == "smsru"
    assert len(first.requests) == 6  # demoted: not even asked

    clock.advance(2)
    four = send_one(runtime, api)
    assert four["provider"] == "twilio"
    assert len(first.sent) == 1

    accepted = [m["sid"] for m in first.sent] + [m["sms_id"] for m in second.sent]
    ids = [str(a["provider_message_id"]) for a in (one, two, three, four)]
    assert sorted(accepted) == sorted(ids)  # each notification accepted exactly once, overall
    costs = [a["cost"] for a in (one, two, three, four)]
    assert costs == [0.04, 0.04, 0.04, 0.0079]  # each provider's configured cost
    assert len(set(ids)) == 4


def test_recipient_rejection_does_not_fail_over(world, sims):
    """An invalid number is the recipient's problem: no second provider is tried, no demotion."""
    runtime, api = world
    _, _, second, _ = sims
    put_customer(api, "bad-number", contacts=[{"channel": "sms", "address": "+15005550001"}])
    nid = send(api, "bad-number")["id"]
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    (bell,) = publisher.published
    assert send_attempt(runtime, bell.attempt_id) == "failed"
    attempt = show(api, nid)["attempts"][0]
    assert (attempt["provider"], attempt["error_code"]) == ("twilio", "21211")
    assert second.requests == []
    assert show(api, nid)["state"] == "exhausted"
    assert not runtime.router.health.demoted("twilio", runtime.now())
