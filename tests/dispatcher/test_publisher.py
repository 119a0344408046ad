"""Doorbells on the real broker: what the sweep asks before ringing one again."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import redis

from dispatcher.publisher import CeleryPublisher, Doorbell, grouped
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


def test_a_quiet_doorbell_is_the_same_task_message_without_the_sent_event(
    redis_url: str, tmp_path: Path
):
    """Fan-out doorbells (announce=False): the message a worker receives is the one
    ``send_task`` writes, headers and routing alike; only Flower's task-sent event is
    left out (one PUBLISH on the events channel instead of two)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    settings = make_settings("sqlite://", redis_url, tmp_path)
    publisher = CeleryPublisher(create_celery(settings))
    events = client.pubsub()  # type: ignore[no-untyped-call]
    events.psubscribe("*celeryev*")
    assert events.get_message(timeout=1) is not None  # the subscription itself

    def sent_events(attempt_id: str) -> int:
        """task-sent events for ``attempt_id`` (pub/sub spans every Redis database: other
        processes' heartbeats and tasks may pass by too)."""
        seen = 0
        while (message := events.get_message(timeout=0.2)) is not None:
            envelope = json.loads(message["data"])
            event = json.loads(base64.b64decode(envelope["body"]))
            seen += event.get("type") == "task-sent" and event.get("args") == f"['{attempt_id}']"
        return seen

    publisher.publish([Doorbell("a1", "vk", "n1")])
    assert sent_events("a1") == 1
    publisher.publish([Doorbell("a2", "vk", "n2", announce=False)])
    assert sent_events("a2") == 0
    quiet, loud = (json.loads(raw) for raw in client.lrange("vk", 0, -1))
    unique = ("id", "root_id", "argsrepr", "kwargsrepr")
    assert {k: v for k, v in quiet["headers"].items() if k not in unique} == {
        k: v for k, v in loud["headers"].items() if k not in unique
    }
    assert (quiet["headers"]["argsrepr"], quiet["headers"]["kwargsrepr"]) == (
        "['a2']",
        "{'notification_id': 'n2'}",
    )
    assert quiet["properties"]["delivery_info"] == loud["properties"]["delivery_info"]
    events.close()


def test_doorbells_of_one_channel_travel_in_groups(redis_url: str, tmp_path: Path):
    """Five vk doorbells and one viber, groups of two: three vk messages (2, 2, 1) and one
    viber message; a group carries its attempt and notification ids, nothing else."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    settings = make_settings("sqlite://", redis_url, tmp_path)
    publisher = CeleryPublisher(create_celery(settings), group=2)
    bells = [Doorbell(f"a{i}", "vk", f"n{i}") for i in range(5)]
    publisher.publish([*bells[:3], Doorbell("b", "viber", "m"), *bells[3:]])
    messages = [json.loads(raw) for raw in reversed(client.lrange("vk", 0, -1))]
    bodies = [
        (m["headers"]["task"], *json.loads(base64.b64decode(m["body"]))[:2]) for m in messages
    ]
    assert bodies == [
        ("send.vk.group", [["a0", "a1"]], {"notification_ids": ["n0", "n1"]}),
        ("send.vk.group", [["a2", "a3"]], {"notification_ids": ["n2", "n3"]}),
        ("send.vk", ["a4"], {"notification_id": "n4"}),
    ]
    assert publisher.queue_depth("viber") == 1


def test_grouped_keeps_each_channels_order_and_the_size():
    bells = [Doorbell(f"a{i}", "sms" if i % 3 else "push") for i in range(10)]
    groups = grouped(bells, 3)
    assert [[b.attempt_id for b in group] for group in groups] == [
        ["a0", "a3", "a6"],
        ["a9"],
        ["a1", "a2", "a4"],
        ["a5", "a7", "a8"],
    ]
    assert grouped(bells, 0) == [
        [bell] for bell in sorted(bells, key=lambda b: b.channel != "push")
    ]
