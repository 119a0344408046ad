"""Queue faults: duplicate Celery messages, a flushed Redis, what a message may carry,
and the real beat driving the sweep."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient

from dispatcher.publisher import CeleryPublisher, Doorbell, Publisher
from dispatcher.queues import create_celery
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.e2e.conftest import ROOT, Stack, stop
from tests.support.scenario import (
    EMAIL,
    PHONE,
    PUSH_TOKEN,
    TEXT,
    put_customer,
    send,
    sends_for,
    show,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


class Twice:
    """Rings every doorbell twice: the same Celery message delivered two times."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner

    def publish(self, doorbells: Sequence[Doorbell]) -> None:
        self.inner.publish([bell for bell in doorbells for _ in range(2)])

    def queue_depth(self, channel: str) -> int | None:
        return self.inner.queue_depth(channel)

    def fan_out(self, broadcast_id: str, batch: int) -> None:
        self.inner.fan_out(broadcast_id, batch)


def stop_consuming(app: Celery, queue: str) -> None:
    """The worker stops taking ``queue`` (confirmed: a busy machine answers control slowly)."""
    replies = app.control.cancel_consumer(queue, reply=True, timeout=30, limit=1)
    assert replies, f"the worker did not confirm it stopped consuming {queue}"


def queue_three(api: TestClient, prefix: str) -> list[tuple[str, str]]:
    """Three customers sent a notification each: (notification id, first attempt id)."""
    queued_: list[tuple[str, str]] = []
    for n in range(3):
        put_customer(api, f"{prefix}-{n}")
        nid = send(api, f"{prefix}-{n}")["id"]
        queued_.append((nid, show(api, nid)["attempts"][0]["id"]))
    return queued_


def test_same_message_twice_calls_provider_once(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Two copies of send.push(attempt) race in two worker processes: one provider call."""
    e2e_runtime.publisher = Twice(e2e_runtime.publisher)
    put_customer(e2e_api, "c-dup")
    nid = send(e2e_api, "c-dup")["id"]
    attempt_id = show(e2e_api, nid)["attempts"][0]["id"]
    wait_until(
        lambda: stack.log.read_text().count(f"attempt {attempt_id}:") >= 2,
        what="both copies to be processed",
    )
    log = stack.log.read_text()
    assert log.count(f"attempt {attempt_id}: sent") == 1
    assert log.count(f"attempt {attempt_id}: not_claimed") == 1
    assert len(sends_for(stack.outbox, {attempt_id})) == 1


def test_a_group_delivered_twice_sends_each_attempt_once(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Three push attempts woken by one ``send.push.group`` message, delivered twice (the
    worker's two processes may take one copy each): each attempt is sent once."""
    app = create_celery(stack.settings)
    client = redis.Redis.from_url(stack.settings.redis_url)
    stop_consuming(app, "push")
    try:
        bells = [Doorbell(a, "push", nid) for nid, a in queue_three(e2e_api, "c-group")]
        client.delete("push")  # their single doorbells: the group below wakes them instead
        grouping = CeleryPublisher(app, group=32)
        grouping.publish(bells)
        grouping.publish(bells)
        raw = queued(client, "push")
        assert len(raw) == 2
        for secret in (PHONE, EMAIL, TEXT, PUSH_TOKEN):
            assert secret.encode() not in raw[0]
        assert json.loads(raw[0])["headers"]["task"] == "send.push.group"
    finally:
        app.control.add_consumer("push", reply=True, timeout=30, limit=1)
    ids = [bell.attempt_id for bell in bells]
    wait_until(
        lambda: all(stack.log.read_text().count(f"attempt {a}:") >= 2 for a in ids),
        what="both copies of the group to be processed",
    )
    log = stack.log.read_text()
    for attempt_id in ids:
        assert log.count(f"attempt {attempt_id}: sent") == 1
        assert log.count(f"attempt {attempt_id}: not_claimed") == 1
    assert len(sends_for(stack.outbox, set(ids))) == 3


def step_sent(api: TestClient, nid: str, step: int) -> bool:
    found = show(api, nid)["attempts"]
    return len(found) > step and found[step]["state"] == "sent"


def in_state(api: TestClient, nid: str, state: str) -> bool:
    return bool(show(api, nid)["state"] == state)


def queued(client: redis.Redis, queue: str) -> list[bytes]:
    return [
        item.encode() if isinstance(item, str) else item for item in client.lrange(queue, 0, -1)
    ]


def queued_attempts(client: redis.Redis, queue: str) -> list[str]:
    """The attempt ids of the task messages waiting in ``queue`` (a group's too)."""
    ids: list[str] = []
    for raw in queued(client, queue):
        args, _, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.extend(args[0] if isinstance(args[0], list) else args)
    return ids


def test_messages_carry_ids_only(e2e_api: TestClient, stack: Stack):
    """A published task carries the attempt and notification ids and nothing personal (no
    phone, e-mail, text)."""
    app = create_celery(stack.settings)
    stop_consuming(app, "push")
    try:
        put_customer(e2e_api, "c-pii")
        nid = send(e2e_api, "c-pii")["id"]
        attempt_id = show(e2e_api, nid)["attempts"][0]["id"]
        raw = queued(redis.Redis.from_url(stack.settings.redis_url), "push")
        assert len(raw) == 1
        for secret in (PHONE, EMAIL, TEXT, PUSH_TOKEN):
            assert secret.encode() not in raw[0]
        message = json.loads(raw[0])
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert (message["headers"]["task"], args, kwargs) == (
            "send.push",
            [attempt_id],
            {"notification_id": nid},
        )
        assert message["headers"]["argsrepr"] == repr([attempt_id])
    finally:
        app.control.add_consumer("push", reply=True, timeout=30, limit=1)
    wait_until(partial(step_sent, e2e_api, nid, 0), what="the queued push to be sent")


def test_redis_flushed_in_flight_nothing_lost(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Redis loses every queued message; the sweep republishes from the database and all finish."""
    app = create_celery(stack.settings)
    client = redis.Redis.from_url(stack.settings.redis_url)
    stop_consuming(app, "push")
    try:
        queued_three = queue_three(e2e_api, "c-flush")
        ids = [nid for nid, _ in queued_three]
        first_attempts = {attempt_id for _, attempt_id in queued_three}
        assert set(queued_attempts(client, "push")) == first_attempts
        client.flushdb()
        assert queued(client, "push") == []
    finally:
        app.control.add_consumer("push", reply=True, timeout=30, limit=1)
    republish = stack.settings.republish_after
    report = sweep(e2e_runtime, now=datetime.now(UTC) + timedelta(seconds=republish + 1))
    assert report.republished == 3
    for step, timeout in enumerate([60, 120, 180, 240]):
        for nid in ids:
            wait_until(partial(step_sent, e2e_api, nid, step), what=f"step {step} of {nid} sent")
        sweep(e2e_runtime, now=datetime.now(UTC) + timedelta(seconds=timeout + 1))
    for nid in ids:
        wait_until(partial(in_state, e2e_api, nid, "exhausted"), what="exhausted")
        attempt_ids = {a["id"] for a in show(e2e_api, nid)["attempts"]}
        assert [s["channel"] for s in sends_for(stack.outbox, attempt_ids)] == [
            "push",
            "whatsapp",
            "email",
            "sms",
        ]


def test_beat_drives_the_sweep(e2e_api: TestClient, stack: Stack, tmp_path: Path):
    """With the real beat running, 1-second steps escalate and finish with no help from the test."""
    with (tmp_path / "beat.log").open("ab") as handle:
        beat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dispatcher.cli",
                "beat",
            ],
            cwd=ROOT,
            env=stack.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        log = tmp_path / "beat.log"
        wait_until(lambda: "sweeping" in log.read_text(), timeout=60, what="beat to lead")
        put_customer(e2e_api, "c-beat")
        nid = send(e2e_api, "c-beat", cascade="short")["id"]
        wait_until(lambda: show(e2e_api, nid)["state"] == "exhausted", timeout=30, what="exhausted")
    finally:
        stop(beat)
    view = show(e2e_api, nid)
    assert [(a["channel"], a["state"]) for a in view["attempts"]] == [
        ("push", "escalated"),
        ("sms", "escalated"),
    ]
    assert [e["source"] for e in view["events"] if e["type"] == "escalated"] == ["sweep", "sweep"]
