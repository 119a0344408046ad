"""RabbitMQ as the Celery broker: a whole cascade end to end on the machine's RabbitMQ.

A private vhost per run (``rabbitmqctl add_vhost``); the real worker consumes from
RabbitMQ while Redis keeps only locks, demotion state and rate limits. Time is
injected at the sweep, never slept through.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from kombu import Connection
from kombu.exceptions import ChannelError

from config.cascade_files import load_cascades
from config.settings import Settings
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.publisher import CeleryPublisher, Doorbell
from dispatcher.queues import create_celery
from dispatcher.runtime import Runtime, build_router
from dispatcher.sweep import sweep
from tests.conftest import AUTH, make_settings
from tests.e2e.conftest import start_worker, stop, worker_env
from tests.support.database import truncate
from tests.support.scenario import attempts, put_customer, receipt, send, sends_for, show
from tests.support.services import rabbitmq_vhost
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    # A new name each time: the module's fixtures are set up once per database backend.
    with rabbitmq_vhost(f"cascade-test-{os.getpid()}-{uuid.uuid4().hex[:8]}") as url:
        yield url


def wait_for_worker(settings: Settings, process: subprocess.Popen[bytes], log: Path) -> None:
    """Ping the worker over AMQP until it answers; a connection reset while RabbitMQ is
    still opening the fresh vhost to us is "not yet", not a failure."""
    app = create_celery(settings)

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return bool(app.control.ping(timeout=0.5))
        except (OSError, ConnectionError):
            return False

    wait_until(ready, timeout=60, what="the Celery worker to answer ping over AMQP")


@pytest.fixture(name="rabbit")
def _rabbit(
    amqp_url: str, database_url: str, redis_base: str, backend: str, tmp_path: Path
) -> Iterator[tuple[Runtime, Settings, Path]]:
    """A worker consuming from RabbitMQ; the test's own runtime publishes there too."""
    redis_url = f"{redis_base}/{13 if backend == 'sqlite' else 14}"
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings(database_url, redis_url, tmp_path, broker_url=amqp_url)
    outbox = tmp_path / "outbox.jsonl"
    env = {**worker_env(settings, outbox), "CASCADE_BROKER_URL": amqp_url}
    log = tmp_path / "worker.log"
    process = start_worker(env, log, f"amqp-{backend}")
    try:
        wait_for_worker(settings, process, log)
        engine = get_engine(settings.effective_database_url)
        truncate(engine)
        router = build_router(settings, redis.Redis.from_url(redis_url))
        cascades = load_cascades(settings.cascades_dir, router.available_channels())
        publisher = CeleryPublisher(create_celery(settings))
        yield Runtime(settings, cascades, engine, router, publisher), settings, outbox
    finally:
        stop(process)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_cascade_runs_on_rabbitmq(rabbit: tuple[Runtime, Settings, Path]):
    """push unread -> messenger unread -> SMS delivered, every send through RabbitMQ;
    nothing of Celery's is queued in Redis."""
    runtime, settings, outbox = rabbit
    with TestClient(create_app(runtime), headers=AUTH) as api:
        health = api.get("/healthz").json()
        assert (health["broker"], health["redis"]) == ("ok", "ok")  # RabbitMQ and Redis
        put_customer(api, "r1")
        nid = send(api, "r1")["id"]

        def step_sent(step: int) -> bool:
            found = show(api, nid)["attempts"]
            return len(found) > step and found[step]["state"] == "sent"

        wait_until(lambda: step_sent(0), what="the push sent through RabbitMQ")
        sweep(runtime, now=later(61))
        wait_until(lambda: step_sent(1), what="the messenger sent through RabbitMQ")
        sweep(runtime, now=later(61 + 121))
        wait_until(lambda: step_sent(2), what="the e-mail sent through RabbitMQ")
        sweep(runtime, now=later(61 + 121 + 181))
        wait_until(lambda: step_sent(3), what="the SMS sent through RabbitMQ")
        sms = show(api, nid)["attempts"][3]
        assert receipt(api, sms["id"], "delivered")["notification_state"] == "delivered"
        assert attempts(api, nid) == [
            ("push", "escalated"),
            ("whatsapp", "escalated"),
            ("email", "escalated"),
            ("sms", "delivered"),
        ]
        ids = {a["id"] for a in show(api, nid)["attempts"]}
    assert [s["channel"] for s in sends_for(outbox, ids)] == ["push", "whatsapp", "email", "sms"]
    # The doorbells went to RabbitMQ: Celery's queues (Redis lists named after them) are absent.
    cache = redis.Redis.from_url(settings.redis_url)
    assert cache.keys("_kombu*") + cache.keys("push*") == []


def purge(url: str, queue: str) -> None:
    """Empty ``queue`` (purged, not deleted: kombu remembers what it declared, and would
    publish into a deleted queue's void)."""
    with Connection(url) as connection:
        channel: Any = connection.channel()
        with contextlib.suppress(ChannelError):  # not declared yet: empty
            channel.queue_purge(queue)
        channel.close()


def test_queue_depth_on_amqp(amqp_url: str, database_url: str, redis_base: str, tmp_path: Path):
    """The sweep's "is the doorbell still queued?" question works on RabbitMQ: a passive
    declare counts the waiting messages; a queue never declared counts as empty."""
    settings = make_settings(database_url, f"{redis_base}/13", tmp_path, broker_url=amqp_url)
    publisher = CeleryPublisher(create_celery(settings))
    purge(amqp_url, "vk")  # no worker consumes in this test
    publisher.publish([Doorbell(f"a{i}", "vk") for i in range(3)])
    assert publisher.queue_depth("vk") == 3
    assert publisher.queue_depth("never-declared") == 0
    purge(amqp_url, "vk")


def test_health_names_an_unreachable_amqp_broker(runtime: Runtime):
    """With CASCADE_BROKER_URL pointing where nothing listens, /healthz is a 503 naming it."""
    from tests.simulators.server import free_port

    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/x"
    settings = runtime.settings.model_copy(update={"broker_url": dead})
    dead_runtime = Runtime(
        settings, runtime.cascades, runtime.engine, runtime.router, runtime.publisher
    )
    with TestClient(create_app(dead_runtime), headers=AUTH) as api:
        response = api.get("/healthz")
    assert response.status_code == 503
    assert "broker: error" in response.json()["detail"]
    assert "redis: ok" in response.json()["detail"]
