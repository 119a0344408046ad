"""The worker's send path alone: CPU seconds per notification, with figures 4 and 5.

``python -m bench.sendcpu --backends sqlite,postgresql -n 3000`` starts what
:mod:`bench.run` starts, accepts ``n`` notifications through the API, then runs
figure 4's worker (one process, threads pool, sandbox push read at once) and reads
the worker process's CPU time (user + system, ``/proc/<pid>/stat``) from the moment
it starts consuming the push queue (it starts on the engine queue alone, idle, and is
told to add push by a control command) until the last one finished.
Beside it: figure 1's bare Celery no-op baseline and, with ``--sends``, figure 5
(200 ms provider latency) with its baseline, all in this run. ``--profile DIR``
records the figure 4 worker with py-spy (``--gil``) into DIR as well.

A machine shared with other work makes the rates noisy; CPU seconds per
notification much less so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

from bench import delivery, intake
from bench.bare_celery import drain
from bench.stack import Stack, create_database, drop_database, private_redis, wait_for_worker

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def end_to_end(
    stack: Stack, n: int, threads: int, cap: float, profile: Path | None, extra: dict[str, str]
) -> tuple[delivery.Delivered, float]:
    """Figure 4 on ``n`` queued notifications; also the worker's CPU seconds in all."""
    engine = stack.engine
    beat = stack.beat(**delivery.READ_AT_ONCE)
    argv = [sys.executable, "-m", "dispatcher.cli", "worker", "--queues", "engine"]
    env = stack.env(**delivery.READ_AT_ONCE, **delivery.threads_pool(threads), **extra)
    worker = stack.spawn("worker", argv, env)
    wait_for_worker(stack.redis_url, worker)
    time.sleep(1.0)
    idle = cpu_seconds(worker.pid)
    control = Celery("bench-control", broker=stack.redis_url, set_as_current=False)
    control.control.add_consumer("push", reply=True, timeout=10)
    control.close()
    spy = None
    if profile is not None:
        py_spy = os.environ.get("PY_SPY", "/tmp/tools/bin/py-spy")
        out = profile / f"{stack.backend}.txt"
        argv = [py_spy, "record", "--gil", "-f", "raw", "-o", str(out), "-p", str(worker.pid)]
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        sql = "SELECT count(*) FROM notification WHERE finished_at IS NOT NULL"
        done = delivery._wait(engine, sql, n, cap)
        seconds = time.monotonic() - started
        cpu = cpu_seconds(worker.pid) - idle
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)
        stack.stop(beat)
        stack.stop(worker)
    span = delivery._span(engine, "SELECT max(finished_at) FROM notification")
    return delivery.Delivered(done, n, done / span, seconds), cpu


def backend(name: str, tmp: Path, redis_url: str, args: argparse.Namespace) -> list[str]:
    url = create_database(name, tmp)
    if url is None:
        return [f"{name}: unavailable"]
    stack = Stack(name, url, redis_url, tmp)
    lines: list[str] = []
    try:
        port, _ = stack.api()
        intake.seed_customers(port)
        say(f"[{name}] figure 1: bare Celery no-op, {args.n:,} tasks")
        noop = drain(stack, args.n, pool="threads", concurrency=args.threads)
        say(f"[{name}] accepting {args.n:,} notifications")
        intake.load(port, total=args.n)
        say(f"[{name}] figure 4: end to end")
        e2e, cpu = end_to_end(stack, args.n, args.threads, args.cap, args.profile, args.worker)
        per = cpu / max(e2e.done, 1)
        lines.append(
            f"{name}: figure 4 {e2e.per_second:.1f}/s vs bare Celery {noop.per_second:.1f}/s "
            f"({e2e.per_second / noop.per_second:.2f}x); {e2e.done:,} of {e2e.total:,} finished; "
            f"worker CPU {cpu:.1f} s = {per * 1000:.2f} ms per notification"
        )
        if args.sends:
            say(f"[{name}] figure 5 baseline: Celery tasks waiting 200 ms")
            waiting = drain(stack, args.sends, delivery.LATENCY_MS / 1000, "threads", args.threads)
            say(f"[{name}] figure 5: {args.sends:,} sends, 200 ms latency")
            sent = delivery.sends(stack, port, args.sends, args.cap, args.threads)
            lines.append(
                f"{name}: figure 5 {sent.per_second:.1f}/s vs Celery waiting 200 ms "
                f"{waiting.per_second:.1f}/s ({sent.per_second / waiting.per_second:.2f}x); "
                f"{sent.done:,} of {sent.total:,} sent"
            )
        for line in lines:
            say(line)
    finally:
        stack.stop_all()
        stack.engine.dispose()
        drop_database(url)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("-n", type=int, default=3000, help="notifications (and no-op tasks)")
    parser.add_argument("--sends", type=int, default=0, help="figure 5 with this many sends")
    parser.add_argument("--threads", type=int, default=128)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per run at most")
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles into this directory")
    parser.add_argument(
        "--set", action="append", default=[], help="worker setting, e.g. task_events=false"
    )
    args = parser.parse_args()
    args.worker = dict(item.split("=", 1) for item in args.set)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="cascade-sendcpu-"))
    try:
        with private_redis(tmp) as redis_url:
            for name in args.backends.split(","):
                (tmp / name).mkdir()
                lines += backend(name, tmp / name, redis_url, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
