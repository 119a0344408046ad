"""Readiness: is anything sweeping, and which queues have a live worker?

Two small marks in Redis, both advisory (losing them loses no notification):

* every ``dispatcher worker`` main process keeps ``cascade:workers:<hostname>``
  (its queues) alive, refreshed every :data:`BEAT` seconds and expiring after
  :data:`WORKER_TTL` without one: a killed worker drops out on its own;
* the sweeping beat sets ``cascade:sweep:last`` to the time of its last sweep.

:func:`report` turns them into the readiness view (``GET /readyz``): ready when the
database and the broker answer, the last sweep is recent, and every queue has a
worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

log = logging.getLogger(__name__)

WORKERS = "cascade:workers:"
LAST_SWEEP = "cascade:sweep:last"
BEAT = 5.0  #: seconds between a worker's presence refreshes
WORKER_TTL = 15  #: a worker not heard of for this long is gone


def mark_swept(client: redis.Redis, at: datetime) -> None:
    """Beat, after each sweep it ran: the time of the last sweep."""
    client.set(LAST_SWEEP, at.timestamp())


class Presence:
    """A worker's mark in Redis, refreshed by a daemon thread until :meth:`stop`."""

    def __init__(self, client: redis.Redis, hostname: str, queues: Iterable[str]) -> None:
        self._client = client
        self._key = WORKERS + hostname
        self._value = json.dumps({"queues": sorted(queues)})
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="cascade-presence").start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._client.set(self._key, self._value, ex=WORKER_TTL)
            except (redis.RedisError, OSError) as exc:
                log.warning("worker presence not written", extra={"error": type(exc).__name__})
            self._stop.wait(BEAT)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError, OSError):
            self._client.delete(self._key)


def workers_per_queue(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    """Live workers consuming each queue."""
    counts = dict.fromkeys(queues, 0)
    keys = list(client.scan_iter(match=WORKERS + "*", count=500))
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue
        for queue in json.loads(raw).get("queues", []):
            if queue in counts:
                counts[queue] += 1
    return counts


def last_sweep(client: redis.Redis) -> datetime | None:
    raw = client.get(LAST_SWEEP)
    return datetime.fromtimestamp(float(raw), UTC) if raw is not None else None


@dataclass
class Readiness:
    database: str = "ok"
    broker: str = "ok"
    last_sweep: datetime | None = None
    last_sweep_age_s: float | None = None
    workers: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "database": self.database,
            "broker": self.broker,
            "last_sweep": self.last_sweep.isoformat() if self.last_sweep else None,
            "last_sweep_age_s": self.last_sweep_age_s,
            "workers": self.workers,
            "problems": self.problems,
        }


def check_broker(
    report: Readiness, client: redis.Redis, queues: Iterable[str], now: datetime, stale: float
) -> None:
    """Fill in the broker's part: last sweep and workers per queue."""
    try:
        swept = last_sweep(client)
        report.workers = workers_per_queue(client, queues)
    except (redis.RedisError, OSError) as exc:
        report.broker = f"error: {type(exc).__name__}"
        report.problems.append("broker unreachable")
        return
    report.last_sweep = swept
    if swept is None:
        report.problems.append("no sweep yet: is `dispatcher beat` running?")
    else:
        report.last_sweep_age_s = round((now - swept).total_seconds(), 3)
        if report.last_sweep_age_s > stale:
            report.problems.append(
                f"last sweep {report.last_sweep_age_s:.0f} s ago: is `dispatcher beat` running?"
            )
    idle = [queue for queue, n in report.workers.items() if n == 0]
    if idle:
        report.problems.append(f"no live worker for queue(s): {', '.join(idle)}")
