"""Ringing the doorbell: publishing attempt ids to the per-channel Celery queues.

The database is committed first; a publish that fails (Redis down) loses nothing,
because the sweep republishes pending attempts whose doorbell is older than
``republish_after``.

The doorbells of one transaction that wake the same channel travel together: up to
``CASCADE_SEND_GROUP`` attempt ids in one ``send.<channel>.group`` message, whose
worker sends them concurrently (:mod:`dispatcher.send_groups`). A doorbell alone is
``send.<channel>(attempt_id)`` as before. A message costs a worker about as much CPU
as a send does, so a burst (a broadcast, a busy intake round, a sweep's escalations)
pays it once per group instead of once per attempt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kombu.exceptions import ChannelError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Doorbell:
    """Wake a worker of ``channel`` for attempt ``attempt_id``."""

    attempt_id: str
    channel: str
    notification_id: str = ""  #: shown in Flower (kwargs), so a search by it finds the send
    #: Send Flower a ``task-sent`` event too. A broadcast's fan-out rings a thousand at
    #: a time without it (it doubles what each publish costs); Flower shows those sends
    #: from the worker's ``task-received`` on.
    announce: bool = True


class Publisher(Protocol):
    def publish(self, doorbells: Sequence[Doorbell]) -> None: ...

    def fan_out(self, broadcast_id: str, batch: int) -> None:
        """Queue ``broadcast.fan_out(broadcast_id, batch)`` on the engine queue."""
        ...

    def queue_depth(self, channel: str) -> int | None:
        """Messages waiting in ``channel``'s queue; None when the broker cannot say."""
        ...


#: The broadcast fan-out task (ids only: broadcast id and batch number).
FAN_OUT_TASK = "broadcast.fan_out"


def task_name(channel: str) -> str:
    """Readable task names in Flower: ``send.sms``, ``send.push`` ..."""
    return f"send.{channel}"


def group_task_name(channel: str) -> str:
    """The task that sends several attempts of ``channel``: ``send.sms.group`` ..."""
    return f"send.{channel}.group"


def grouped(doorbells: Sequence[Doorbell], size: int) -> list[list[Doorbell]]:
    """The doorbells by channel, in chunks of at most ``size``; first-rung order kept."""
    by_channel: dict[str, list[Doorbell]] = {}
    for bell in doorbells:
        by_channel.setdefault(bell.channel, []).append(bell)
    step = max(1, size)
    return [
        bells[start : start + step]
        for bells in by_channel.values()
        for start in range(0, len(bells), step)
    ]


def _send(
    app: Any,
    producer: Any,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    bells: list[Doorbell],
) -> None:
    """Publish one task message for ``bells`` (one channel). Announced: ``send_task`` with
    Flower's ``task-sent`` event. Quiet (a broadcast's fan-out): the message ``send_task``
    would publish, without that event, its argument reprs computed by ``saferepr`` or its
    retry wrapper (a failure is logged by the caller and the sweep republishes): about a
    third of the cost."""
    queue = bells[0].channel
    if all(bell.announce for bell in bells):
        app.send_task(name, args=args, kwargs=kwargs or None, queue=queue, producer=producer)
        return
    message = app.amqp.create_task_message(
        str(uuid.uuid4()),
        name,
        args,
        kwargs,
        create_sent_event=False,
        ignore_result=None,
        argsrepr=repr(args),
        kwargsrepr=repr(kwargs),
    )
    app.amqp.send_task_message(producer, name, message, queue=queue, retry=False)


def _message(bells: list[Doorbell]) -> tuple[str, list[Any], dict[str, Any]]:
    """Task name, args and kwargs waking ``bells``: ids only, as every message."""
    channel = bells[0].channel
    if len(bells) == 1:
        bell = bells[0]
        kwargs = {"notification_id": bell.notification_id} if bell.notification_id else {}
        return task_name(channel), [bell.attempt_id], kwargs
    ids = [bell.attempt_id for bell in bells]
    return group_task_name(channel), [ids], {"notification_ids": [b.notification_id for b in bells]}


class CeleryPublisher:
    """Publishes ``send.<channel>(attempt_id, notification_id=…)`` to queue ``<channel>``,
    or ``send.<channel>.group([attempt_id, …], notification_ids=[…])`` for several: ids
    only. ``group``: the most attempts one message carries (1: one message each)."""

    def __init__(self, app: object, group: int = 1) -> None:
        self._app = app
        self._group = max(1, group)

    def publish(self, doorbells: Sequence[Doorbell]) -> None:
        """All the doorbells of one transaction in one go: on Redis, one pipeline
        (kombu's ``Producer.batch``); other brokers publish them one by one."""
        if not doorbells:
            return
        app: Any = self._app
        try:
            with app.producer_or_acquire() as producer, producer.batch():
                for bells in grouped(doorbells, self._group):
                    _send(app, producer, *_message(bells), bells)
        except Exception as exc:
            for bell in doorbells:
                log.warning(
                    "publish failed; the sweep will republish",
                    extra={"attempt_id": bell.attempt_id, "error": type(exc).__name__},
                )

    def fan_out(self, broadcast_id: str, batch: int) -> None:
        try:
            self._app.send_task(  # type: ignore[attr-defined]
                FAN_OUT_TASK, args=[broadcast_id, batch], queue="engine"
            )
        except Exception as exc:
            log.warning(
                "fan-out publish failed; the sweep will restart it",
                extra={"broadcast_id": broadcast_id, "error": type(exc).__name__},
            )

    def queue_depth(self, channel: str) -> int | None:
        """A passive declare: works on Redis and AMQP brokers alike. A missing queue is empty."""
        try:
            with self._app.connection_for_read() as connection:  # type: ignore[attr-defined]
                declared = connection.default_channel.queue_declare(queue=channel, passive=True)
                return int(declared.message_count)
        except ChannelError:
            return 0  # Redis drops an empty list: the queue is not there, so nothing waits
        except Exception as exc:
            log.warning(
                "queue depth unknown", extra={"queue": channel, "error": type(exc).__name__}
            )
            return None


@dataclass
class RecordingPublisher:
    """A publisher for tests of database logic that need no queue: remembers doorbells."""

    published: list[Doorbell] = field(default_factory=list)
    depths: dict[str, int] = field(default_factory=dict)  #: what queue_depth answers
    fan_outs: list[tuple[str, int]] = field(default_factory=list)  #: (broadcast, batch)

    def publish(self, doorbells: Sequence[Doorbell]) -> None:
        self.published.extend(doorbells)

    def fan_out(self, broadcast_id: str, batch: int) -> None:
        self.fan_outs.append((broadcast_id, batch))

    def queue_depth(self, channel: str) -> int | None:
        return self.depths.get(channel)
