"""Bare Celery (baselines of figures 1, 5 and 10): tasks that do nothing, or only wait.

The worker runs with Cascade's Celery configuration, pool and concurrency
(``celery -A bench.bare_celery worker --pool prefork -c N -E``), so what Cascade
adds on top is the only difference. Each task records when it started and ended
(one RPUSH), so start-up is not counted, as Cascade's rate is read from its rows.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import redis

from bench.stack import Stack, wait_for_worker, worker_rss
from config.settings import get_settings
from dispatcher.queues import create_celery

QUEUE = "bench-bare"
TIMES = "bench-bare-times"
settings = get_settings()
app = create_celery(settings)
_done: list[redis.Redis] = []


def _record(started: float) -> None:
    """One RPUSH per task of when it started and ended: the bench's clock, like Cascade's rows."""
    if not _done:
        _done.append(redis.Redis.from_url(settings.redis_url))
    _done[0].rpush(TIMES, f"{started} {time.time()}")


@app.task(name="bench.noop", queue=QUEUE)
def noop(_: int) -> None:
    """Nothing (but record when)."""
    _record(time.time())


@app.task(name="bench.wait", queue=QUEUE)
def wait(seconds: float) -> None:
    """What a send is without Cascade: the provider's latency."""
    started = time.time()
    time.sleep(seconds)
    _record(started)


@dataclass
class Drain:
    tasks: int
    per_second: float
    rss_main_kib: int
    rss_children_kib: list[int]


def drain(
    stack: Stack, tasks: int, wait_seconds: float = 0.0, pool: str = "prefork", concurrency: int = 0
) -> Drain:
    """Publish ``tasks`` messages, start a worker; tasks ÷ (last end - first start)."""
    broker = redis.Redis.from_url(stack.redis_url)
    broker.delete(QUEUE, TIMES)  # only ours: Cascade's queued doorbells stay
    env = stack.env()
    publisher = create_celery(get_settings().model_copy(update={"redis_url": stack.redis_url}))
    with publisher.producer_or_acquire() as producer:
        for i in range(tasks):
            name, args = ("bench.wait", [wait_seconds]) if wait_seconds else ("bench.noop", [i])
            publisher.send_task(name, args=args, queue=QUEUE, producer=producer)
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-Q", QUEUE]
    argv += [
        "-c",
        str(concurrency or stack.concurrency),
        "--pool",
        pool,
        "-E",
        "--loglevel",
        "WARNING",
    ]
    worker = stack.spawn("bare-worker", argv, env)
    try:
        wait_for_worker(stack.redis_url, worker)
        while int(broker.llen(TIMES)) < tasks:
            time.sleep(0.05)
        main_kib, children_kib = worker_rss(worker.pid)
        times = [tuple(map(float, t.split())) for t in broker.lrange(TIMES, 0, -1)]
        span = max(t[1] for t in times) - min(t[0] for t in times)
        return Drain(tasks, tasks / max(span, 1e-6), main_kib, children_kib)
    finally:
        stack.stop(worker)
