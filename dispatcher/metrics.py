"""Prometheus metrics, counted from the history every process commits.

Counters are derived from committed history rows (:data:`dispatcher.history.observers`),
so ``/metrics`` counts what the database holds, whichever process did the work:
accepted notifications, sends by channel, provider and outcome, receipts by kind,
escalations, suppressions by reason, finished notifications, redundant sends and
cost. Send latency is timed around each send task. Provider failures and demotions
are counted in :mod:`dispatcher.health`.

Several processes per host (prefork children, API, beat) write their samples to
one directory in prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
set by ``dispatcher`` from ``CASCADE_METRICS_DIR`` before anything imports
prometheus_client); whoever serves ``/metrics`` on that host merges every file in
it. Gauges (queue depth, age of the oldest overdue escalation) are measured when
scraped, by the API only: they describe the shared broker and database, not a host.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import Engine, func, select, text
from sqlmodel import col

from dispatcher.history import Row
from dispatcher.models import Attempt, Notification, timer_predicate
from dispatcher.states import OPEN_STATES

ACCEPTED = Counter("cascade_notifications_accepted", "Notifications accepted", ["cascade"])
SENDS = Counter("cascade_sends", "Provider rounds by outcome", ["channel", "provider", "outcome"])
RECEIPTS = Counter("cascade_receipts", "Receipts applied, by kind", ["channel", "kind"])
ESCALATIONS = Counter("cascade_escalations", "Steps escalated to the next", ["channel"])
SUPPRESSIONS = Counter("cascade_suppressions", "Notifications suppressed", ["reason"])
FINISHED = Counter("cascade_notifications_finished", "Notifications finished", ["state"])
REDUNDANT = Counter(
    "cascade_redundant_sends", "Confirmations after the notification finished", ["channel"]
)
COST = Counter("cascade_cost", "Cost of sends (sent or possibly sent)", ["channel", "provider"])
SEND_SECONDS = Histogram(
    "cascade_send_seconds",
    "Send task duration: claim, provider call, recording",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

#: History sources that record a provider round (the rest are receipts or the API).
_SENDERS = frozenset({"worker", "sweep"})
#: History event types that are outcomes of a provider round.
_SEND_OUTCOMES = {
    "sent": "sent",
    "failed": "failed",
    "unknown": "unknown",
    "retry_scheduled": "retry",
    "throttled": "throttled",
}
_RECEIPT_KINDS = frozenset({"sent", "delivered", "read", "failed", "clicked"})


def _key(row: Row) -> tuple[Counter, tuple[str, ...]] | None:
    """The counter and label values one history row adds 1 to (None: not counted)."""
    kind, source = row["type"], row.get("source")
    detail: dict[str, Any] = row.get("detail") or {}
    channel = row.get("channel") or "none"
    if kind == "accepted":
        return ACCEPTED, (str(detail.get("cascade") or "none"),)
    if kind in _SEND_OUTCOMES and source in _SENDERS:
        return SENDS, (channel, str(detail.get("provider") or "none"), _SEND_OUTCOMES[kind])
    if kind in _RECEIPT_KINDS:
        return RECEIPTS, (channel, kind)
    if kind == "escalated":
        return ESCALATIONS, (channel,)
    if kind == "suppressed":
        return SUPPRESSIONS, (str(detail.get("reason") or "none"),)
    if kind == "finished":
        return FINISHED, (str(detail.get("state") or "none"),)
    if kind == "late_receipt":
        return REDUNDANT, (channel,)
    return None


def count(rows: Sequence[Row]) -> None:
    """A history observer: add what a committed transaction recorded (one call per label set)."""
    tally: Tally[tuple[Counter, tuple[str, ...]]] = Tally()
    costs: dict[tuple[str, str], float] = {}
    for row in rows:
        key = _key(row)
        if key is not None:
            tally[key] += 1
        cost = (row.get("detail") or {}).get("cost")
        if cost and row.get("source") in _SENDERS:
            provider = str(row["detail"].get("provider") or "none")
            where = (str(row.get("channel") or "none"), provider)
            costs[where] = costs.get(where, 0.0) + float(cost)
    for (counter, labels), times in tally.items():
        counter.labels(*labels).inc(times)
    for (channel, provider), amount in costs.items():
        COST.labels(channel, provider).inc(amount)


def install() -> None:
    """Count this process's committed history (once per process)."""
    from dispatcher import history

    if count not in history.observers:
        history.observers.append(count)


class LiveGauges(Collector):
    """Measured at scrape time: queue depth per queue, age of the oldest overdue escalation."""

    def __init__(
        self,
        engine: Engine,
        depth: Callable[[str], int | None],
        queues: Iterable[str],
        now: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._depth = depth
        self._queues = list(queues)
        self._now = now

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "cascade_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        for queue in self._queues:
            value = self._depth(queue)
            if value is not None:
                depth.add_metric([queue], value)
        yield depth
        age = self.overdue_age()
        if age is not None:
            yield GaugeMetricFamily(
                "cascade_oldest_overdue_escalation_seconds",
                "How long the most overdue escalation has been due (0: none overdue)",
                value=age,
            )

    def overdue_age(self) -> float | None:
        """Seconds since the oldest open timer fell due; 0 when none is due; None if unknown."""
        now = self._now()
        query = (
            select(func.min(Attempt.escalate_at))
            .join(Notification, col(Notification.id) == col(Attempt.notification_id))
            .where(
                text(timer_predicate("attempt.")),
                col(Attempt.escalate_at) <= now,
                col(Notification.state).in_([s.value for s in OPEN_STATES]),
            )
        )
        try:
            with self._engine.connect() as connection:
                oldest = connection.execute(query).scalar()
        except Exception:
            return None
        if oldest is None:
            return 0.0
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        return max(0.0, (now - oldest).total_seconds())


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry(extra: Collector | None = None) -> CollectorRegistry:
    """Every process's samples on this host (multiprocess mode), else this process's."""
    path = multiprocess_dir()
    if path is None:
        base = REGISTRY
        if extra is None:
            return base
        merged = CollectorRegistry(auto_describe=False)
        merged.register(_Forward(base))
        merged.register(extra)
        return merged
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
    if extra is not None:
        merged.register(extra)
    return merged


class _Forward(Collector):
    """This process's default registry, as one collector of another registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Any]:
        return self._source.collect()


def exposition(extra: Collector | None = None) -> bytes:
    return generate_latest(registry(extra))


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside
    """Serve this host's /metrics (``dispatcher worker`` / ``beat`` without an API here)."""
    start_http_server(port, addr=address, registry=registry())
