"""A send group: several attempts of one channel woken by one message, sent concurrently.

The publisher puts the doorbells of one transaction that wake the same channel into
one ``send.<channel>.group`` message (``CASCADE_SEND_GROUP`` ids at most). Its task
hands each attempt to this process's send threads and waits for all of them; each
attempt goes through :func:`~dispatcher.dispatch.send_attempt` exactly as a single
doorbell's does (compare-and-set claim, provider call, recorded outcome), and the
sends of a group, like those of the threads pool, share claim and record rounds.

So the broker message, its events and its acknowledgement are paid once per group,
and a prefork child sends a whole group at once instead of one attempt at a time.
Delivered twice (a redelivery, a republished group), every attempt already claimed
finds nothing to claim: no provider is called again.

A rate-limited channel's group sends at most ``rate * max_wait`` of its
attempts at once (:meth:`~dispatcher.throttle.Throttle.pace`): more would only wait
past ``CASCADE_THROTTLE_MAX_WAIT`` for the token bucket and go back to the database
as ``throttled``; paced, they take their slots in turn.

Threads per process: ``CASCADE_SEND_GROUP`` in a prefork child (it runs one group at
a time); the pool's concurrency with the threads pool, so the process never has
more sends in flight than it has today.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

Result = TypeVar("Result")


class SendThreads:
    """A pool of ``size`` threads per process (rebuilt after a fork), started on first use."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._lock = threading.Lock()
        self._pid = -1
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._pool = ThreadPoolExecutor(self._size, thread_name_prefix="send")
            return self._pool

    def run_all(
        self,
        send: Callable[[str, str], Result],
        ids: Sequence[tuple[str, str]],
        pace: int | None = None,
    ) -> list[Result]:
        """``send(attempt_id, notification_id)`` for each pair, concurrently (at most
        ``pace`` of this group at once, if given); results in order. Every send runs to
        its end before this returns; then the first error (if any) is raised, each one
        logged with its attempt id."""
        executor = self._executor()
        call = send
        if pace is not None and pace < len(ids):
            gate = threading.BoundedSemaphore(pace)

            def call(attempt_id: str, notification_id: str) -> Result:
                with gate:
                    return send(attempt_id, notification_id)

        futures: list[Future[Result]] = [executor.submit(call, *pair) for pair in ids]
        errors: list[BaseException] = []
        for (attempt_id, _), future in zip(ids, futures, strict=True):
            error = future.exception()
            if error is not None:
                log.error(
                    "a send of a group raised",
                    extra={"attempt_id": attempt_id, "error": type(error).__name__},
                )
                errors.append(error)
        if errors:
            raise errors[0]
        return [future.result() for future in futures]

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=True)
            self._pool = None


def threads_per_process(pool: str, concurrency: int, group: int) -> int:
    """How many sends of groups one process runs at once (see the module docstring)."""
    return concurrency if pool == "threads" else group


def summary(outcomes: Sequence[str]) -> str:
    """``"32 attempts: 30 sent via fcm, 2 failed via fcm: invalid_address"``."""
    counted = Counter(outcomes)
    parts = ", ".join(f"{count} {text}" for text, count in counted.most_common())
    noun = "attempt" if len(outcomes) == 1 else "attempts"
    return f"{len(outcomes)} {noun}: {parts}"
