"""``make bench``: every volume figure of issue 10 beside its baseline, in one table.

Starts what it needs (a private redis-server, a SQLite file, the PostgreSQL database
``cascade_bench_<pid>`` at ``CASCADE_TEST_POSTGRES_URL``'s server, Cascade's API, worker and
beat), measures, stops everything, prints one markdown table and writes it to
``bench/RESULTS.md``. ``--quick``: a smoke run of a minute or two with small sizes;
default: about 10-15 minutes; ``--full``: 1,000,000 rows for figures 7, 8 and 9.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import broadcast, delivery, escalation, intake, scale
from bench.bare_celery import Drain, drain
from bench.rows import Template, template
from bench.stack import Stack, create_database, drop_database, private_redis
from bench.table import Row, header, render, write


@dataclass
class Sizes:
    noop: int = 10_000
    waits: int = 2_000  #: as many as figure 5 sends: fewer would measure latency, not rate
    api_seconds: float = 20
    e2e_cap: float = 60
    sends: int = 2_000
    sends_cap: float = 40
    timers: int = 10_000
    window: float = 60
    backlog: int = 20_000
    small: int = 10_000
    large: int = 100_000
    threads: int = 128  #: figures 1, 4, 5 and 10: one worker process, the threads pool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Sizes:
        sizes = cls()
        if args.quick:
            sizes = cls(1_000, 300, 5, 20, 300, 20, 1_000, 10, 2_000, 2_000, 10_000)
        if args.full:
            sizes.large = 1_000_000
        sizes.timers = args.timers or sizes.timers
        sizes.window = args.window or sizes.window
        sizes.threads = args.threads or sizes.threads
        return sizes


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, sizes: Sizes, full: bool) -> None:
        self.sizes = sizes
        self.full = full
        self.rows: list[Row] = []
        self.loadgen_cores: list[float] = []

    def noop(self, stack: Stack) -> Drain:
        """Figure 1, measured for each backend just before figure 4 (the machine may be shared)."""
        say(f"[{stack.backend}] figure 1: bare Celery no-op consume")
        threads = self.sizes.threads
        noop = drain(stack, self.sizes.noop, pool="threads", concurrency=threads)
        self.rows.append(
            Row(
                "1",
                f"bare Celery no-op consume, 1 process, threads c={threads}",
                stack.backend,
                "itself (baseline of 4)",
                noop.per_second,
                None,
                "/s",
                note=f"{noop.tasks:,} tasks, run just before 4",
            )
        )
        return noop

    def backend(self, backend: str, tmp: Path, redis_url: str) -> None:
        url = create_database(backend, tmp)
        if url is None:
            self.rows.append(
                Row("—", "all figures", backend, "", None, None, "", note="unavailable")
            )
            return
        stack = Stack(backend, url, redis_url, tmp)
        try:
            self.measure(stack)
        finally:
            stack.stop_all()
            stack.engine.dispose()
            drop_database(url)

    def measure(self, stack: Stack) -> None:
        s, b = self.sizes, stack.backend
        port, _ = stack.api()
        intake.seed_customers(port)
        say(f"[{b}] figures 2 and 3: API under load, {s.api_seconds:.0f} s each")
        measured = intake.measure(stack, port, s.api_seconds)
        self.loadgen_cores += [measured.naive.cpu_cores, measured.cascade.cpu_cores]
        self.rows += intake.rows(b, measured)
        noop = self.noop(stack)
        say(f"[{b}] figure 4: end to end, up to {s.e2e_cap:.0f} s")
        e2e = delivery.end_to_end(stack, s.e2e_cap, s.threads)
        read = need(template(stack.engine, "state = 'read'"), "a read notification")
        say(f"[{b}] baseline of figure 5: Celery tasks waiting 200 ms")
        waiting = drain(stack, s.waits, delivery.LATENCY_MS / 1000, "threads", s.threads)
        say(f"[{b}] figure 5: {s.sends:,} sends with 200 ms provider latency")
        sent = delivery.sends(stack, port, s.sends, s.sends_cap, s.threads)
        say(f"[{b}] figure 5b: the same with 2 worker processes")
        two = delivery.sends(stack, port, s.sends, s.sends_cap, s.threads, processes=2)
        self.rows += delivery.rows(b, noop, waiting, e2e, sent, two)
        in_flight = need(
            template(
                stack.engine,
                "state = 'in_progress' AND id IN "
                "(SELECT notification_id FROM attempt WHERE state = 'sent')",
            ),
            "a notification waiting after its push was sent",
        )
        say(f"[{b}] figure 6: {s.timers:,} timers within {s.window:.0f} s, idle then backlogged")
        idle = escalation.lateness(stack, in_flight, s.timers, s.window, 0)
        busy = escalation.lateness(stack, in_flight, s.timers, s.window, s.backlog)
        scaled = s.timers < 10_000 or s.window != 60
        self.rows += escalation.rows(b, idle, busy, s.window, scaled)
        if b == "postgresql":
            self.volume(stack, port, in_flight, read)

    def volume(self, stack: Stack, port: int, in_flight: Template, read: Template) -> None:
        s = self.sizes
        say(f"[postgresql] figures 7 and 9: {s.small:,} then {s.large:,} rows")
        small, large = scale.measure(stack, port, in_flight, read, s.small, s.large)
        self.rows += scale.rows(stack.backend, small, large, self.full)
        say("[postgresql] figure 8: broadcast fan-out")
        fan = broadcast.fanout(stack, port, s.large, cap=600)
        self.rows += broadcast.rows(stack.backend, fan, large.inserted_per_second, s.large)


def need(found: Template | None, what: str) -> Template:
    if found is None:
        raise SystemExit(f"bench: no {what} was written; see the worker log in the temp dir")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument("--full", action="store_true", help="1,000,000 rows for 7, 8 and 9")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--timers", type=int, help="figure 6: timers (default 10,000)")
    parser.add_argument("--window", type=float, help="figure 6: seconds they fall due within")
    parser.add_argument("--threads", type=int, help="worker threads for 1, 4, 5, 10 (128)")
    parser.add_argument("--no-write", action="store_true", help="print only; keep RESULTS.md")
    parser.add_argument("--keep", type=Path, help="work (and leave logs) in this new directory")
    args = parser.parse_args()
    sizes = Sizes.from_args(args)
    bench = Bench(sizes, args.full)
    started, before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.keep:
            tmp = args.keep
            tmp.mkdir(parents=True)
        with private_redis(tmp) as redis_url:
            for backend in args.backends.split(","):
                (tmp / backend).mkdir()
                bench.backend(backend, tmp / backend, redis_url)
    cores = bench.loadgen_cores
    loadgen = (
        "a separate process, one thread (asyncio, raw HTTP/1.1), 64 keep-alive connections; "
        f"used {min(cores):.2f}-{max(cores):.2f} cores"
        if cores
        else "not run"
    )
    mode = "quick" if args.quick else ("full" if args.full else "default")
    minutes = (time.monotonic() - started) / 60
    load = f"load average before {before[0]:.1f}, after {os.getloadavg()[0]:.1f} (1 min)"
    text = render(bench.rows, header(f"{mode}, took {minutes:.1f} min; {load}", loadgen))
    print(text)
    if not args.no_write:
        write(text)


if __name__ == "__main__":
    main()
