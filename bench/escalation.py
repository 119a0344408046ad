"""Figure 6: escalation lateness with many timers due while sends are backlogged.

``timers`` notifications whose push was sent get ``escalate_at`` spread evenly over
``window`` seconds; a running worker (sandbox answering after 200 ms) and beat (the
1-s sweep) do the rest. With backlog, ``backlog`` pending sends are already waiting
(their doorbells lost, so the sweep republishes them). Lateness is the moment the
bench sees the ``escalated`` event committed, minus ``escalate_at`` (polled every
0.2 s: resolution +0.2 s). Baseline: the same timers with no backlog.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from bench.delivery import LATENCY_MS
from bench.rows import Clone, Rowdict, Template, clones, insert, naive_now
from bench.stack import Stack, wipe
from bench.table import Row

POLL = 0.2


@dataclass
class Lateness:
    timers: int
    seen: int
    p50: float
    p99: float
    max: float
    backlog: int
    late_insert: float  #: seconds the last timers were written after the first fell due


def pending(tpl: Template, n: int, now: datetime) -> Iterator[Clone]:
    def notification(_: int, row: Rowdict) -> Rowdict:
        return {**row, "state": "in_progress", "created_at": now, "finished_at": None}

    def attempt(_: int, row: Rowdict) -> Rowdict:
        return {
            **row,
            "state": "pending",
            "due_at": now,
            "published_at": None,
            "claimed_at": None,
            "claim_token": None,
            "sent_at": None,
            "escalate_at": None,
            "provider_message_id": None,
            "tries": 0,
        }

    return clones(tpl, n, notification, attempt, with_events=False)


def waiting(tpl: Template, due: list[datetime], now: datetime) -> Iterator[Clone]:
    """Notifications whose first step was sent and waits for a read until ``due[i]``."""

    def notification(_: int, row: Rowdict) -> Rowdict:
        return {
            **row,
            "state": "in_progress",
            "created_at": now,
            "expires_at": now + timedelta(hours=3),
            "finished_at": None,
        }

    def attempt(i: int, row: Rowdict) -> Rowdict:
        return {
            **row,
            "state": "sent",
            "claimed_at": now,
            "sent_at": now,
            "escalate_at": due[i],
            "finished_at": None,
        }

    return clones(tpl, len(due), notification, attempt)


def _observe(engine: Engine, due: dict[str, datetime], deadline: float) -> tuple[list[float], int]:
    late: dict[str, float] = {}
    last_id = 0
    while len(late) < len(due) and time.monotonic() < deadline:
        time.sleep(POLL)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, attempt_id FROM event WHERE type = 'escalated' AND id > :after"),
                {"after": max(0, last_id - 5000)},  # ids may commit out of order
            ).all()
        now = naive_now()
        for event_id, attempt_id in rows:
            last_id = max(last_id, int(event_id))
            if attempt_id in due and attempt_id not in late:
                late[attempt_id] = (now - due[attempt_id]).total_seconds()
    end = naive_now()
    values = sorted(late.get(a, (end - d).total_seconds()) for a, d in due.items())
    return values, len(late)


def lateness(stack: Stack, tpl: Template, timers: int, window: float, backlog: int) -> Lateness:
    wipe(stack.engine, keep=("customer", "contactpoint"))
    stack.flush_redis()
    worker = stack.worker(sandbox__latency_ms=str(LATENCY_MS))
    beat = stack.beat(sandbox__latency_ms=str(LATENCY_MS))
    try:
        now = naive_now()
        insert(stack.engine, pending(tpl, backlog, now))
        start = naive_now() + timedelta(seconds=5 + timers / 2000)
        due = [start + timedelta(seconds=window * i / timers) for i in range(timers)]
        rows = list(waiting(tpl, due, naive_now()))
        by_attempt = {r[1][0]["id"]: r[1][0]["escalate_at"] for r in rows}
        insert(stack.engine, rows)
        late_insert = max(0.0, (naive_now() - start).total_seconds())
        wait = (start - naive_now()).total_seconds() + window + 60
        values, seen = _observe(stack.engine, by_attempt, time.monotonic() + wait)
    finally:
        stack.stop(beat)
        stack.stop(worker)
    n = len(values)
    return Lateness(
        timers,
        seen,
        values[n // 2],
        values[min(n - 1, int(n * 0.99))],
        values[-1],
        backlog,
        late_insert,
    )


def rows(backend: str, idle: Lateness, busy: Lateness, window: float, scaled: bool) -> list[Row]:
    size = f"{busy.timers:,} timers due within {window:.0f} s" + (
        " (scaled down)" if scaled else ""
    )
    missing = (
        f"; {busy.timers - busy.seen:,} not escalated by the end" if busy.seen < busy.timers else ""
    )
    return [
        Row(
            "6",
            "escalation lateness p99, sends backlogged",
            backend,
            "same timers, no backlog",
            idle.p99,
            busy.p99,
            "s",
            "≤ 1.5 s",
            f"{size}, {busy.backlog:,} sends backlogged; busy p50 {busy.p50:.2f} s, max "
            f"{busy.max:.2f} s; idle p50 {idle.p50:.2f} s, max {idle.max:.2f} s{missing}",
        )
    ]
