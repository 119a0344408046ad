"""Figures 7 and 9 on PostgreSQL: one sweep pass, and ``GET /v1/stats``, as the data grows.

The database is filled with clones of notifications Cascade wrote in figures 4 and 5:
``size`` in flight (push sent, waiting for a read for an hour) and ``size`` finished
(read) spread over the last 23 hours. 500 more are due for escalation. Then (7) one
sweep pass is timed in this process (``sweep(rt)``, after a warm-up pass that finds
nothing), and (9) ``GET /v1/stats`` (default: the last 24 h) through the running API,
the median of three calls after one warm-up. First at ``small``, then at ``size``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from bench.escalation import waiting
from bench.intake import AUTH
from bench.rows import Clone, Rowdict, Template, analyze, clones, insert, naive_now
from bench.stack import KEY, Stack, wipe
from bench.table import Row
from config.settings import Settings
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import build_runtime
from dispatcher.sweep import sweep

DUE = 500


@dataclass
class Point:
    size: int
    sweep_seconds: float
    escalated: int
    stats_seconds: float
    inserted_per_second: float  #: notifications (with attempts and events) per second


def finished(tpl: Template, n: int, offset: int) -> Iterator[Clone]:
    now = naive_now()
    base: datetime = tpl.notification["created_at"]

    def when(i: int) -> timedelta:
        return (
            now - timedelta(hours=23) + timedelta(hours=23) * (offset + i) / max(n + offset, 1)
        ) - base

    def shift(i: int, row: Rowdict) -> Rowdict:
        delta = when(i)
        return {k: v + delta if isinstance(v, datetime) else v for k, v in row.items()}

    for i, (notification, attempts, events) in enumerate(clones(tpl, n, shift, shift)):
        delta = when(i)
        yield notification, attempts, [{**e, "at": e["at"] + delta} for e in events]


def _fill(stack: Stack, sent: Template, read: Template, n: int, offset: int) -> float:
    now = naive_now()
    later = [now + timedelta(hours=1)] * n
    count, seconds = insert(stack.engine, waiting(sent, later, now))
    more, more_seconds = insert(stack.engine, finished(read, n, offset))
    return (count + more) / max(seconds + more_seconds, 1e-6)


def _sweep_pass(stack: Stack) -> tuple[float, int]:
    settings = Settings(
        _env_file=None,
        database_url=stack.url,
        redis_url=stack.redis_url,
        cascades_dir=stack.tmp / "cascades",
        data_dir=stack.tmp,
        api_keys=[KEY],
    )
    rt = build_runtime(settings, RecordingPublisher())
    sweep(rt, now=rt.now() - timedelta(days=2))  # warm-up: connections, nothing due
    started = time.perf_counter()
    report = sweep(rt)
    return time.perf_counter() - started, report.escalated


def _stats(api_port: int) -> float:
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=AUTH, timeout=600) as c:
        for _ in range(4):
            started = time.perf_counter()
            c.get("/v1/stats").raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def _point(stack: Stack, api_port: int, sent: Template, size: int, rate: float) -> Point:
    before = naive_now() - timedelta(minutes=1)
    insert(stack.engine, waiting(sent, [before] * DUE, before))
    analyze(stack.engine)
    seconds, escalated = _sweep_pass(stack)
    return Point(size, seconds, escalated, _stats(api_port), rate)


def measure(
    stack: Stack, api_port: int, sent: Template, read: Template, small: int, size: int
) -> tuple[Point, Point]:
    wipe(stack.engine, keep=("customer", "contactpoint"))
    stack.flush_redis()
    rate = _fill(stack, sent, read, small, 0)
    first = _point(stack, api_port, sent, small, rate)
    rate = _fill(stack, sent, read, size - small, small)
    return first, _point(stack, api_port, sent, size, rate)


def rows(backend: str, small: Point, large: Point, full: bool) -> list[Row]:
    flag = "" if full else " (default size; `--full` for 1,000,000)"
    return [
        Row(
            "7",
            f"one sweep pass, {large.size:,} pending{flag}",
            backend,
            f"same pass at {small.size:,} pending",
            small.sweep_seconds * 1000,
            large.sweep_seconds * 1000,
            "ms",
            "≤ 1.2x",
            f"{DUE} due each time; escalated {small.escalated} / {large.escalated}",
        ),
        Row(
            "9",
            f"`GET /v1/stats`, {large.size:,} finished + {large.size:,} in flight{flag}",
            backend,
            f"same at {small.size:,} + {small.size:,}",
            small.stats_seconds * 1000,
            large.stats_seconds * 1000,
            "ms",
            "≤ 200 ms",
            "median of 3 after a warm-up",
        ),
    ]
