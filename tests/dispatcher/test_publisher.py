"""Doorbells on the real broker: what the sweep asks before ringing one again."""

from __future__ import annotations

from pathlib import Path

import redis

from dispatcher.publisher import CeleryPublisher, Doorbell
from dispatcher.queues import create_celery
from tests.conftest import make_settings


def test_queue_depth_counts_what_waits_in_the_channel_queue(redis_url: str, tmp_path: Path):
    """No worker listens here: three doorbells wait in ``vk``; an absent queue is empty."""
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings("sqlite://", redis_url, tmp_path)
    publisher = CeleryPublisher(create_celery(settings))
    assert publisher.queue_depth("vk") == 0
    publisher.publish([Doorbell(f"a{i}", "vk") for i in range(3)] + [Doorbell("b", "viber")])
    assert publisher.queue_depth("vk") == 3
    assert publisher.queue_depth("viber") == 1


def test_queue_depth_is_unknown_when_the_broker_is_away(tmp_path: Path):
    settings = make_settings("sqlite://", "redis://127.0.0.1:1/0", tmp_path)
    app = create_celery(settings)
    app.conf.broker_connection_timeout = 0.5
    app.conf.broker_connection_max_retries = 0
    assert CeleryPublisher(app).queue_depth("vk") is None
