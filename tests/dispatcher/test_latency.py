"""A provider whose delivery receipts slow down markedly is demoted by the sweep."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine
from sqlmodel import Session

from config.cascade_files import load_cascades
from dispatcher.models import Attempt, Notification
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from dispatcher.sweep import sweep
from tests.conftest import make_settings
from tests.support.clock import FakeClock


@pytest.fixture(name="rt")
def _rt(database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock):
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        channels={"sms": ["twilio", "smsru"]},
        providers={
            "twilio": {"account_sid": "AC1", "auth_token": "t", "sender": "+15005550006"},
            "smsru": {"api_id": "k"},
        },
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    router = build_router(settings, client)
    yield Runtime(
        settings,
        load_cascades(settings.cascades_dir, router.available_channels()),
        db_engine,
        router,
        RecordingPublisher(),
        clock,
    )
    router.close()


def deliveries(rt: Runtime, provider: str, delivered_at: list[datetime], latency: float) -> None:
    """Past sends of ``provider``, each delivered ``latency`` seconds after it was sent."""
    with Session(rt.engine) as session:
        notification = Notification(
            customer_id="x", cascade="basic", category="t", expires_at=rt.now(), created_at=rt.now()
        )
        session.add(notification)
        session.flush()
        for step, at in enumerate(delivered_at):
            session.add(
                Attempt(
                    notification_id=notification.id,
                    step=step,
                    channel="sms",
                    provider=provider,
                    wait_for="delivered",
                    timeout_seconds=60,
                    state="delivered",
                    due_at=at,
                    created_at=at,
                    sent_at=at - timedelta(seconds=latency),
                    delivered_at=at,
                )
            )
        session.commit()


def spread(end: datetime, count: int, every: float) -> list[datetime]:
    return [end - timedelta(seconds=every * i) for i in range(count)]


def test_slow_receipts_demote_only_the_slow_provider(rt: Runtime, clock: FakeClock):
    """Twilio's receipts go from 5 s to 90 s: demoted; SMS.ru stays as fast as usual."""
    now = clock()
    for provider in ("twilio", "smsru"):
        deliveries(rt, provider, spread(now - timedelta(hours=2), 30, 60), latency=5)
    deliveries(rt, "twilio", spread(now, 25, 10), latency=90)
    deliveries(rt, "smsru", spread(now, 25, 10), latency=6)
    assert sweep(rt, now=now).demoted == ["twilio"]
    assert rt.router.health.demoted("twilio", now)
    assert not rt.router.health.demoted("smsru", now)
    assert sweep(rt, now=clock.advance(rt.settings.demote_cooldown + 1)).demoted == ["twilio"]


def test_too_few_samples_or_small_change_is_not_slow(rt: Runtime, clock: FakeClock):
    """Ten slow receipts, or 5 s -> 20 s (under the 30 s floor), demote nobody."""
    now = clock()
    deliveries(rt, "twilio", spread(now - timedelta(hours=2), 30, 60), latency=5)
    deliveries(rt, "twilio", spread(now, 10, 10), latency=90)
    deliveries(rt, "smsru", spread(now - timedelta(hours=2), 30, 60), latency=5)
    deliveries(rt, "smsru", spread(now, 25, 10), latency=20)
    assert sweep(rt, now=now).demoted == []
