"""Figures 4, 5 and 10: what the worker delivers, and what it weighs.

(4) End to end: the notifications accepted in figure 3 wait in the queue; a worker and
    beat start with the sandbox push confirming ``read`` at once; notifications/s is
    finished notifications ÷ (last ``finished_at`` - first ``claimed_at``), read from
    the database, so worker start-up is not counted.
(5) Sends/s with the sandbox answering after 200 ms: sent attempts ÷ (last ``sent_at``
    - first ``claimed_at``). Baseline: Celery tasks that only wait 200 ms, same pool.
(10) Worker RSS (main process and each pool child) at the end of (4).
Both runs stop at a time cap; the notes say how many were done.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from bench.bare_celery import Drain
from bench.intake import load
from bench.stack import Stack, wipe, worker_rss
from bench.table import Row

READ_AT_ONCE = {
    "sandbox__channels__push__delivered_probability": "1",
    "sandbox__channels__push__delivered_after": "0",
    "sandbox__channels__push__read_probability": "1",
    "sandbox__channels__push__read_after": "0",
}
LATENCY_MS = 200


@dataclass
class Delivered:
    done: int
    total: int
    per_second: float
    seconds: float
    rss_main_kib: int = 0
    rss_children_kib: tuple[int, ...] = ()
    empty_claims: int = 0  #: send tasks that found nothing to claim (duplicate doorbells)
    tasks: int = 0  #: send tasks run


def _claims(stack: Stack, offset: int) -> tuple[int, int]:
    """(send tasks run, of which found nothing to claim), from the worker's log lines
    ``attempt <id>: <outcome>`` written since ``offset``."""
    path = stack.tmp / "worker.log"
    text = path.read_bytes()[offset:].decode(errors="replace") if path.exists() else ""
    outcomes = re.findall(r"attempt [0-9a-f-]{36}: (\w+)", text)
    return len(outcomes), outcomes.count("not_claimed")


def _log_size(stack: Stack) -> int:
    path = stack.tmp / "worker.log"
    return path.stat().st_size if path.exists() else 0


def scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def moment(value: object) -> datetime | None:
    """A time read with plain SQL: SQLite gives text, PostgreSQL a datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value if isinstance(value, datetime) else None


def _span(engine: Engine, end_sql: str) -> float:
    start = moment(scalar(engine, "SELECT min(claimed_at) FROM attempt"))
    end = moment(scalar(engine, end_sql))
    if start is None or end is None:
        return float("inf")
    return max((end - start).total_seconds(), 1e-3)


def _wait(engine: Engine, done_sql: str, total: int, cap: float) -> int:
    deadline, done, last_change, last = time.monotonic() + cap, 0, time.monotonic(), -1
    while time.monotonic() < deadline and done < total:
        time.sleep(0.5)
        done = int(str(scalar(engine, done_sql)))
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > 30:
            break  # stuck: report what was done
    return done


def threads_pool(threads: int) -> dict[str, str]:
    """One worker process running ``threads`` sends at a time (what issue 10 asks per process)."""
    return {"worker_pool": "threads", "worker_concurrency": str(threads)}


def end_to_end(stack: Stack, cap: float, threads: int) -> Delivered:
    engine = stack.engine
    total = int(str(scalar(engine, "SELECT count(*) FROM notification")))
    beat = stack.beat(**READ_AT_ONCE)
    offset = _log_size(stack)
    worker = stack.worker(**READ_AT_ONCE, **threads_pool(threads))
    try:
        started = time.monotonic()
        done = _wait(
            engine, "SELECT count(*) FROM notification WHERE finished_at IS NOT NULL", total, cap
        )
        seconds = time.monotonic() - started
        main_kib, children_kib = worker_rss(worker.pid)
    finally:
        stack.stop(beat)
        stack.stop(worker)
    span = _span(engine, "SELECT max(finished_at) FROM notification")
    tasks, empty = _claims(stack, offset)
    return Delivered(done, total, done / span, seconds, main_kib, tuple(children_kib), empty, tasks)


def sends(
    stack: Stack, api_port: int, n: int, cap: float, threads: int, processes: int = 1
) -> Delivered:
    """Figure 5 with ``processes`` worker processes of ``threads`` threads each."""
    wipe(stack.engine, keep=("customer", "contactpoint"))
    stack.flush_redis()
    load(api_port, total=n)
    workers = [
        stack.worker(sandbox__latency_ms=str(LATENCY_MS), **threads_pool(threads))
        for _ in range(processes)
    ]
    try:
        started = time.monotonic()
        done = _wait(stack.engine, "SELECT count(*) FROM attempt WHERE sent_at IS NOT NULL", n, cap)
        seconds = time.monotonic() - started
    finally:
        for worker in workers:
            stack.stop(worker)
    span = _span(stack.engine, "SELECT max(sent_at) FROM attempt")
    return Delivered(done, n, done / span, seconds)


def rows(
    backend: str,
    noop: Drain,
    waiting: Drain,
    e2e: Delivered,
    latency: Delivered,
    two: Delivered,
) -> list[Row]:
    rss_children = sum(e2e.rss_children_kib)
    bare_children = sum(noop.rss_children_kib)
    return [
        Row(
            "4",
            "end to end (accepted → final), sandbox push read at once",
            backend,
            "(1) bare Celery no-op, same pool",
            noop.per_second,
            e2e.per_second,
            "/s",
            "≥ 0.25x (aim 0.5x)",
            f"{e2e.done:,} of {e2e.total:,} finished in {e2e.seconds:.0f} s; "
            f"{e2e.empty_claims:,} of {e2e.tasks:,} send tasks found nothing to claim",
        ),
        Row(
            "5",
            f"sends/s, sandbox answers after {LATENCY_MS} ms",
            backend,
            f"Celery task sleeping {LATENCY_MS} ms, same pool",
            waiting.per_second,
            latency.per_second,
            "/s",
            "≥ 300/s per worker process",
            f"{latency.done:,} of {latency.total:,} sent in {latency.seconds:.0f} s",
        ),
        Row(
            "5b",
            f"sends/s, {LATENCY_MS} ms, 2 worker processes (scale-out)",
            backend,
            "(5): 1 worker process",
            latency.per_second,
            two.per_second,
            "/s",
            "scales with workers",
            f"{two.done:,} of {two.total:,} sent in {two.seconds:.0f} s; 2 cores cap it here",
        ),
        Row(
            "10",
            "worker RSS, total (main + children)",
            backend,
            "bare Celery worker, same pool",
            (noop.rss_main_kib + bare_children) / 1024,
            (e2e.rss_main_kib + rss_children) / 1024,
            "MiB",
            "",
            f"after figure 4; {len(e2e.rss_children_kib)} process(es) under the main one",
        ),
    ]
