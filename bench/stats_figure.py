"""Figure 9 (and 7) alone: ``GET /v1/stats`` over ``--size`` finished + ``--size`` in flight.

What ``make bench`` measures for figures 7 and 9 (:func:`bench.scale.measure`: the same
clones, the same API process, the median of three calls after a warm-up), without the
other figures before it: the two template notifications are written by Cascade itself
here (50 sent and read at once by a worker; 20 sent and left waiting for a read), then
cloned to 10,000 + 10,000 and to ``--size`` + ``--size`` on a fresh PostgreSQL database.

Run: ``.venv/bin/python -m bench.stats_figure --size 1000000`` (about 15 minutes on two
cores). Prints one markdown row per figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench import delivery, scale
from bench.intake import load, seed_customers
from bench.rows import Template, template
from bench.stack import Stack, create_database, drop_database, private_redis
from bench.table import Row, number


def _wait(stack: Stack, sql: str, n: int, cap: float) -> None:
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        with stack.engine.connect() as conn:
            if int(conn.execute(text(sql)).scalar() or 0) >= n:
                return
        time.sleep(0.5)
    raise SystemExit(f"bench: timed out waiting for {sql}")


def templates(stack: Stack, port: int) -> tuple[Template, Template]:
    """(a notification waiting after its push was sent, a notification read on push)."""
    seed_customers(port, n=50)
    load(port, total=50)
    delivery.end_to_end(stack, cap=120, threads=8)
    read = template(stack.engine, "state = 'read'")
    load(port, total=20)
    unread = {
        "sandbox__channels__push__read_probability": "0",
        "sandbox__channels__push__delivered_probability": "0",
    }
    worker = stack.worker(**unread)
    try:
        _wait(stack, "SELECT count(*) FROM attempt WHERE sent_at IS NOT NULL", 70, 120)
    finally:
        stack.stop(worker)
    waiting = template(
        stack.engine,
        "state = 'in_progress' AND id IN (SELECT notification_id FROM attempt "
        "WHERE state = 'sent')",
    )
    if read is None or waiting is None:
        raise SystemExit(f"bench: no template written; see the logs in {stack.tmp}")
    return waiting, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="finished (and in flight)")
    parser.add_argument("--small", type=int, default=10_000, help="the baseline's size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cascade-fig9-") as tmp_dir:
        tmp = Path(tmp_dir)
        with private_redis(tmp) as redis_url:
            url = create_database("postgresql", tmp)
            if url is None:
                raise SystemExit("bench: PostgreSQL does not answer")
            stack = Stack("postgresql", url, redis_url, tmp)
            try:
                port, _ = stack.api()
                waiting, read = templates(stack, port)
                started = time.monotonic()
                small, large = scale.measure(stack, port, waiting, read, args.small, args.size)
                print(f"filled and measured in {time.monotonic() - started:.0f} s")
            finally:
                stack.stop_all()
                stack.engine.dispose()
                drop_database(url)
    rows: list[Row] = scale.rows("postgresql", small, large, args.size >= 1_000_000)
    for row in rows:
        baseline, value = number(row.baseline_value, row.unit), number(row.value, row.unit)
        print(f"| {row.figure} | {row.what} | {row.baseline}: {baseline} | {value} | {row.ratio} |")


if __name__ == "__main__":
    main()
