"""Bare Celery (baselines of figures 1, 5 and 10): tasks that do nothing, or only wait.

The worker runs with Cascade's Celery configuration, pool and concurrency
(``celery -A bench.bare_celery worker --pool prefork -c N -E``), so what Cascade
adds on top is the only difference. Each task increments a Redis counter (one
round trip), so the bench sees when the last one finished.
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
DONE = "bench-bare-done"
settings = get_settings()
app = create_celery(settings)
_done: list[redis.Redis] = []


def _count() -> None:
    """One INCR per task: how the bench knows the last one finished."""
    if not _done:
        _done.append(redis.Redis.from_url(settings.redis_url))
    _done[0].incr(DONE)


@app.task(name="bench.noop", queue=QUEUE)
def noop(_: int) -> None:
    """Nothing (but count)."""
    _count()


@app.task(name="bench.wait", queue=QUEUE)
def wait(seconds: float) -> None:
    """What a send is without Cascade: the provider's latency."""
    time.sleep(seconds)
    _count()


@dataclass
class Drain:
    tasks: int
    per_second: float
    rss_main_kib: int
    rss_children_kib: list[int]


def drain(stack: Stack, tasks: int, wait_seconds: float = 0.0) -> Drain:
    """Publish ``tasks`` messages, start a worker, time it from first take to last ack."""
    stack.flush_redis()
    env = stack.env()
    publisher = create_celery(get_settings().model_copy(update={"redis_url": stack.redis_url}))
    with publisher.producer_or_acquire() as producer:
        for i in range(tasks):
            name, args = ("bench.wait", [wait_seconds]) if wait_seconds else ("bench.noop", [i])
            publisher.send_task(name, args=args, queue=QUEUE, producer=producer)
    broker = redis.Redis.from_url(stack.redis_url)
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-Q", QUEUE]
    argv += ["-c", str(stack.concurrency), "--pool", "prefork", "-E", "--loglevel", "WARNING"]
    worker = stack.spawn("bare-worker", argv, env)
    try:
        wait_for_worker(stack.redis_url, worker)
        first = last = 0.0
        while True:
            queued = int(broker.llen(QUEUE))
            done = int(broker.get(DONE) or 0)
            now = time.perf_counter()
            if not first and queued < tasks:
                first = now
            if done >= tasks:
                last = now
                break
            time.sleep(0.005)
        main_kib, children_kib = worker_rss(worker.pid)
        return Drain(tasks, tasks / max(last - first, 1e-6), main_kib, children_kib)
    finally:
        stack.stop(worker)
