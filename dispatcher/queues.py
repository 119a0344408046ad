"""The Celery application: broker settings, queues and routes (DESIGN §8).

Publishing needs only this (tasks are sent by name); the tasks themselves live in
:mod:`dispatcher.worker`. Arguments are ids only, serialised as JSON. The broker is
``CASCADE_BROKER_URL`` (RabbitMQ: ``amqp://…``) or, by default, the Redis at
``CASCADE_REDIS_URL``; Redis is needed either way (locks, demotion, rate limits).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from config.settings import Settings
from providers.base import Channel

#: One queue per channel, plus the engine. The sweep runs in ``dispatcher beat`` itself.
QUEUES = [*(c.value for c in Channel), "engine"]


def create_celery(settings: Settings) -> Celery:
    app = Celery("cascade", broker=settings.effective_broker_url, set_as_current=False)
    time_limit = settings.send_time_limit
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=time_limit,
        task_soft_time_limit=max(1.0, time_limit - 5),
        # Far above the task time limit: Redis redelivers unacked messages after it.
        # (RabbitMQ redelivers when the consumer's connection closes; it ignores this.)
        broker_transport_options={"visibility_timeout": max(3600, int(time_limit * 10))},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=settings.task_events,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="engine",
        task_routes={
            **{f"send.{c.value}": {"queue": c.value} for c in Channel},
        },
        timezone="UTC",
        enable_utc=True,
    )
    return app
