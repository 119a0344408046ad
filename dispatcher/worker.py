"""Celery tasks: thin. Ids in, plain functions do the work, the database keeps the state.

``celery -A dispatcher.worker worker -Q push,telegram,...,engine`` runs them;
``dispatcher worker`` does the same with the right queues.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from config.settings import get_settings
from dispatcher import flower, logs, metrics
from dispatcher.claims import mark_taken
from dispatcher.db import dispose_all, retry_disconnect
from dispatcher.dispatch import send_attempt
from dispatcher.fanout import fan_out
from dispatcher.publisher import FAN_OUT_TASK, CeleryPublisher, group_task_name, task_name
from dispatcher.queues import create_celery
from dispatcher.readiness import Presence
from dispatcher.runtime import Runtime, build_runtime
from dispatcher.send_groups import SendThreads, threads_per_process
from providers.base import Channel

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO; some carry device endpoints or tokens. Ids only here.
logging.getLogger("httpx").setLevel(logging.WARNING)

settings = get_settings()
app = create_celery(settings)
_runtime: dict[int, Runtime] = {}
_building = threading.Lock()
_presence: list[Presence] = []
#: ``dispatcher flower`` runs ``celery -A dispatcher.worker flower``: same app, own name.
PROCESS = os.environ.get("CASCADE_PROCESS", "worker")
if PROCESS == "flower":
    logs.configure("flower", settings.log_format, settings.log_level)


@worker_init.connect
def _monitor(**_: Any) -> None:
    """In a real worker only (not when a test imports this module): Flower rows for the
    receipts and escalations its tasks apply, and counters (inherited by forked children)."""
    flower.install(app, PROCESS)
    metrics.install()


@setup_logging.connect
def _logging(**_: Any) -> None:
    """Celery leaves logging to us when this signal has a receiver: one format everywhere."""
    logs.configure(PROCESS, settings.log_format, settings.log_level)


@worker_ready.connect
def _present(sender: Any = None, **_: Any) -> None:
    """Tell readiness which queues this worker consumes; serve /metrics if asked to."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    queues = list(app.amqp.queues.consume_from or app.amqp.queues)
    presence = Presence(client, getattr(sender, "hostname", None) or "worker", queues)
    presence.start()
    _presence.append(presence)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)


@worker_shutdown.connect
def _absent(**_: Any) -> None:
    while _presence:
        _presence.pop().stop()


def runtime() -> Runtime:
    """This process's runtime, built on first use (after fork in prefork children; once
    for all threads with the threads pool)."""
    pid = os.getpid()
    with _building:
        if pid not in _runtime:
            _runtime.clear()
            publisher = CeleryPublisher(app, settings.send_group)
            _runtime[pid] = build_runtime(settings, publisher, pre_ping=False)
    return _runtime[pid]


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    dispose_all()
    _runtime.clear()


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_runtime(**_: Any) -> None:
    """Close this process's provider connections (APNs keeps an HTTP/2 one) on the way out."""
    _send_threads.shutdown()
    built = _runtime.pop(os.getpid(), None)
    if built is not None:
        built.close()


_send_threads = SendThreads(
    threads_per_process(settings.worker_pool, settings.worker_concurrency, settings.send_group)
)


def _register_send(channel: Channel) -> None:
    latency = metrics.SEND_SECONDS.labels(channel.value)

    def send_one(attempt_id: str, notification_id: str | None) -> flower.SendOutcome:
        started = time.perf_counter()
        with flower.watching(attempt_id) as rows:
            outcome = send_attempt(runtime(), attempt_id)
        latency.observe(time.perf_counter() - started)
        sent = flower.describe(outcome, attempt_id, rows)
        ids = {"notification_id": notification_id, "channel": channel.value}
        log.info("attempt %s: %s", attempt_id, outcome, extra={**ids, **sent.fields})
        return sent

    def send(attempt_id: str, notification_id: str | None = None) -> str:
        """Send one attempt; Flower shows its outcome as the task's state (see flower.py)."""
        return flower.task_result(send_one(attempt_id, notification_id))

    def send_group(attempt_ids: list[str], notification_ids: list[str] | None = None) -> str:
        """Send several attempts at once (see send_groups.py); Flower shows them counted."""
        notes = [*(notification_ids or []), *[""] * len(attempt_ids)]
        pairs = list(zip(attempt_ids, notes, strict=False))
        rt = runtime()
        try:  # taken: the sweep must not ring them again while they wait for a thread
            retry_disconnect(lambda: mark_taken(rt, list(attempt_ids)))
        except Exception as exc:  # at worst they are rung again: their claims keep that harmless
            log.warning("group not marked taken", extra={"error": type(exc).__name__})
        pace = rt.throttle.pace(rt.router.channel_providers(channel), channel.value)
        return flower.group_result(_send_threads.run_all(send_one, pairs, pace))

    send.__name__ = f"send_{channel.value}"
    send_group.__name__ = f"send_{channel.value}_group"
    # ``throws``: expected outcomes, logged in one line without a traceback.
    throws = (flower.SendFailed, flower.OutcomeUnknown)
    app.task(name=task_name(channel.value), queue=channel.value, throws=throws)(send)
    app.task(name=group_task_name(channel.value), queue=channel.value, throws=throws)(send_group)


for _channel in Channel:
    _register_send(_channel)


@app.task(name=FAN_OUT_TASK, queue="engine")
def fan_out_broadcast(broadcast_id: str, batch: int) -> str:
    """One batch of a broadcast's members: notifications created in one transaction."""
    outcome = retry_disconnect(lambda: fan_out(runtime(), broadcast_id, batch))
    log.info("broadcast %s batch %d: %s", broadcast_id, batch, outcome)
    return outcome
