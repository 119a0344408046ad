"""Celery tasks: thin. Ids in, plain functions do the work, the database keeps the state.

``celery -A dispatcher.worker worker -Q push,telegram,...,engine`` runs them;
``dispatcher worker`` does the same with the right queues.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from config.settings import get_settings
from dispatcher.db import dispose_all
from dispatcher.dispatch import send_attempt
from dispatcher.fanout import fan_out
from dispatcher.publisher import FAN_OUT_TASK, CeleryPublisher, task_name
from dispatcher.queues import create_celery
from dispatcher.runtime import Runtime, build_runtime
from providers.base import Channel

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO; some carry device endpoints or tokens. Ids only here.
logging.getLogger("httpx").setLevel(logging.WARNING)

settings = get_settings()
app = create_celery(settings)
_runtime: dict[int, Runtime] = {}
_building = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, built on first use (after fork in prefork children; once
    for all threads with the threads pool)."""
    pid = os.getpid()
    with _building:
        if pid not in _runtime:
            _runtime.clear()
            _runtime[pid] = build_runtime(settings, CeleryPublisher(app))
    return _runtime[pid]


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    dispose_all()
    _runtime.clear()


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_runtime(**_: Any) -> None:
    """Close this process's provider connections (APNs keeps an HTTP/2 one) on the way out."""
    built = _runtime.pop(os.getpid(), None)
    if built is not None:
        built.close()


def _register_send(channel: Channel) -> None:
    def send(attempt_id: str) -> str:
        outcome = send_attempt(runtime(), attempt_id)
        log.info("attempt %s: %s", attempt_id, outcome)
        return outcome

    send.__name__ = f"send_{channel.value}"
    app.task(name=task_name(channel.value), queue=channel.value)(send)


for _channel in Channel:
    _register_send(_channel)


@app.task(name=FAN_OUT_TASK, queue="engine")
def fan_out_broadcast(broadcast_id: str, batch: int) -> str:
    """One batch of a broadcast's members: notifications created in one transaction."""
    outcome = fan_out(runtime(), broadcast_id, batch)
    log.info("broadcast %s batch %d: %s", broadcast_id, batch, outcome)
    return outcome
