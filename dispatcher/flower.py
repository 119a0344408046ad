"""What Flower shows: send outcomes as task states, receipts and escalations as rows.

* **Sends.** A send task returns ``sent via <provider>`` (SUCCESS). A rejected or
  misconfigured send raises :class:`SendFailed` (FAILURE: red, counted, under
  Failed); an unknown outcome raises :class:`OutcomeUnknown` (FAILURE too: it may
  have been billed and waits for a receipt); a "not sent" that will be retried
  raises Celery's ``Retry`` (RETRY). Each is raised *after* the outcome was recorded
  and committed, and never by ``task.retry()``: nothing is republished by Celery
  (the sweep rings the retry's doorbell from the database), and with late acks the
  failed message is acknowledged (``task_acks_on_failure_or_timeout``), so a
  FAILURE is never redelivered.
* **Groups.** A ``send.<channel>.group`` task (several attempts woken by one
  message) returns its outcomes counted: ``32 attempts: 31 sent via fcm, 1 failed
  via fcm: invalid_address``, FAILURE if one failed or is unknown; ``args`` holds
  the attempt ids and ``kwargs`` the notification ids, so a search by either finds it.
* **Receipts and escalations** are not tasks. The process that applies one (API,
  beat, or a worker) sends one ``task-succeeded`` event for it after commit, from
  a background thread, so nothing waits on Redis: rows ``receipt.read``,
  ``receipt.delivered``, ``receipt.failed`` and ``escalation``. Flower lists them
  like tasks, under that process's name (``cascade-api@host``).

Rows carry ids and outcome words only: ``args`` is the attempt id, ``kwargs`` the
notification id and channel. Searching Flower for a notification id finds its sends,
receipts and escalations.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.exceptions import Retry

from dispatcher.history import Row
from dispatcher.send_groups import summary

log = logging.getLogger(__name__)


class SendFailed(Exception):
    """The provider rejected the send (recipient, message or configuration): next step."""


class OutcomeUnknown(Exception):
    """The provider may have taken it: never resent; waits for a receipt or the timeout."""


class NotSent(Exception):
    """The provider provably did not take it; the sweep sends it again when due."""


#: History rows of a provider round (source ``worker``), by event type.
_ROUND = frozenset({"sent", "failed", "unknown", "retry_scheduled", "throttled"})
#: Attempt id -> history rows committed about it while its send task runs. Keyed by
#: attempt, not thread: with the threads pool one thread may record a whole round.
_seen: dict[str, list[Row]] = {}
_seen_lock = threading.Lock()


@contextmanager
def watching(attempt_id: str) -> Iterator[list[Row]]:
    """Collect the history rows committed about ``attempt_id`` meanwhile (its outcome)."""
    rows: list[Row] = []
    with _seen_lock:
        _seen[attempt_id] = rows
    try:
        yield rows
    finally:
        with _seen_lock:
            _seen.pop(attempt_id, None)


def _watch(rows: Sequence[Row]) -> None:
    if not _seen:
        return
    with _seen_lock:
        for row in rows:
            seen = _seen.get(row.get("attempt_id") or "")
            if seen is not None:
                seen.append(row)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """A send task's outcome as Flower and the log show it: ids and words only."""

    outcome: str  #: sent | failed | unknown | retry | throttled | not_claimed | cancelled ...
    provider: str | None = None
    code: str | None = None
    delay_s: float = 0.0

    @property
    def fields(self) -> dict[str, object]:
        return {k: v for k, v in (("provider", self.provider), ("code", self.code)) if v}

    def text(self) -> str:
        via = f" via {self.provider}" if self.provider else ""
        why = f": {self.code}" if self.code else ""
        return f"{self.outcome}{via}{why}"


def describe(outcome: str, attempt_id: str, rows: Sequence[Row]) -> SendOutcome:
    """The outcome with the provider and code the committed history row names."""
    row = next(
        (r for r in reversed(rows) if r.get("attempt_id") == attempt_id and r["type"] in _ROUND),
        None,
    )
    detail: dict[str, Any] = (row or {}).get("detail") or {}
    return SendOutcome(
        outcome,
        detail.get("provider"),
        detail.get("code"),
        float(detail.get("delay_s") or 0),
    )


def task_result(sent: SendOutcome) -> str:
    """The send task's result, or the exception that makes Flower show the outcome."""
    if sent.outcome == "failed":
        raise SendFailed(sent.text())
    if sent.outcome == "unknown":
        raise OutcomeUnknown(f"{sent.text()}; not resent")
    if sent.outcome in ("retry", "throttled"):
        raise Retry(exc=NotSent(sent.text()), when=sent.delay_s)  # type: ignore[arg-type]
    return sent.text()


def group_result(outcomes: Sequence[SendOutcome]) -> str:
    """A group's result: every attempt's outcome, counted. FAILURE in Flower when one
    of them failed or has an unknown outcome (retries are in the text; the sweep rings
    them from the database, as for a single send)."""
    text = summary([sent.text() for sent in outcomes])
    words = {sent.outcome for sent in outcomes}
    if "failed" in words:
        raise SendFailed(text)
    if "unknown" in words:
        raise OutcomeUnknown(f"{text}; unknown ones not resent")
    return text


#: Receipt kinds that get a row, and escalations.
_RECEIPTS = frozenset({"delivered", "read", "failed", "clicked"})
_SENDERS = frozenset({"worker", "sweep"})


def row_event(row: Row) -> dict[str, Any] | None:
    """The Flower row for one committed history row, or None if it gets none."""
    kind, source = row["type"], row.get("source") or ""
    detail: dict[str, Any] = row.get("detail") or {}
    channel = row.get("channel") or ""
    if kind in _RECEIPTS and source not in _SENDERS and row.get("attempt_id"):
        name = f"receipt.{kind}"
        result = f"{kind} ({channel}, {source})"
        if detail.get("late"):
            result += ": late, the notification had finished"
    elif kind == "escalated":
        name = "escalation"
        result = f"{channel} escalated (was {detail.get('from_state', '?')})"
    else:
        return None
    return {
        "name": name,
        "args": repr([row.get("attempt_id")]),
        "kwargs": repr({"notification_id": row.get("notification_id"), "channel": channel}),
        "result": repr(result),
    }


class RowSender:
    """Sends Flower rows as Celery task events from a background thread.

    Bounded: when Redis is slow or away, rows beyond ``limit`` are dropped (they are
    a view; the history holds the truth). Restarts itself in a forked child.
    """

    def __init__(self, app: Celery, process: str, limit: int = 10_000) -> None:
        self._app = app
        self.hostname = f"cascade-{process}@{socket.gethostname()}"
        self._limit = limit
        self._pid = -1
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(limit)
        self.dropped = 0

    def observe(self, rows: Sequence[Row]) -> None:
        """A history observer: queue the rows' Flower events (never blocks)."""
        for row in rows:
            event = row_event(row)
            if event is not None:
                self.put(event)

    def put(self, event: dict[str, Any]) -> None:
        if self._pid != os.getpid():
            self._start()
        now = time.time()
        event.update(uuid=str(uuid.uuid4()), received=now, started=now, runtime=0.0)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue = queue.Queue(self._limit)
        threading.Thread(target=self._run, args=(self._queue,), daemon=True).start()

    def _run(self, pending: queue.Queue[dict[str, Any]]) -> None:
        while True:
            event = pending.get()
            try:
                with self._app.connection_for_write() as connection:
                    dispatcher = self._app.events.Dispatcher(
                        connection, hostname=self.hostname, enabled=True
                    )
                    while True:
                        dispatcher.send("task-succeeded", **event)
                        event = pending.get()
            except Exception as exc:
                log.warning("Flower row not sent", extra={"error": type(exc).__name__})
                time.sleep(1.0)


_installed: dict[str, RowSender] = {}


def install(app: Celery, process: str) -> RowSender:
    """Make this process send Flower rows for what it applies (once per process)."""
    from dispatcher import history

    if _watch not in history.observers:
        history.observers.append(_watch)
    sender = _installed.get("sender")
    if sender is None:
        sender = _installed["sender"] = RowSender(app, process)
        history.observers.append(sender.observe)
    return sender
