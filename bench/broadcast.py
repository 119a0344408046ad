"""Figure 8: broadcast fan-out, notifications created per second.

Where ``POST /v1/broadcasts`` does not exist (an older build), the row says
so. When it exists: ``size`` customers (clones of a bench customer and its contacts)
are written, one broadcast to all of them is posted with their ids, and
``GET /v1/broadcasts/{id}`` is polled until ``created`` reaches ``size`` (or a cap).
Baseline: bulk inserts of notifications (with attempts and events) into the same
database, as measured while filling it for figures 7 and 9 (``bench.rows.insert``: COPY on
PostgreSQL, the way the fan-out writes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import islice
from typing import Any

import httpx
from sqlalchemy import select

from bench.intake import AUTH, customer
from bench.rows import tables
from bench.stack import Stack
from bench.table import Row

PREFIX = "bcast-"


@dataclass
class Fanout:
    created: int
    per_second: float | None
    note: str


def _customers(stack: Stack, size: int) -> None:
    t = tables(stack.engine)
    people, contacts = t["customer"], t["contactpoint"]
    with stack.engine.connect() as conn:
        person = dict(conn.execute(select(people).where(people.c.id == customer(0))).one()._mapping)
        points = [
            {k: v for k, v in row._mapping.items() if k != "id"}
            for row in conn.execute(
                select(contacts).where(contacts.c.customer_id == customer(0))
            ).all()
        ]
    ids = (f"{PREFIX}{i}" for i in range(size))
    while chunk := list(islice(ids, 5000)):
        with stack.engine.begin() as conn:
            conn.execute(people.insert(), [{**person, "id": cid} for cid in chunk])
            conn.execute(
                contacts.insert(),
                [
                    {**p, "customer_id": cid, "address": f"{p['address']}-{cid}"}
                    if p["channel"] == "push"
                    else {**p, "customer_id": cid}
                    for cid in chunk
                    for p in points
                ],
            )


def fanout(stack: Stack, api_port: int, size: int, cap: float, queues: str | None = None) -> Fanout:
    body: dict[str, Any] = {
        "cascade": "bench",
        "content": {"title": "Bench", "text": "A broadcast"},
        "audience": {"customer_ids": [customer(0)]},
    }
    base = f"http://127.0.0.1:{api_port}"
    with httpx.Client(base_url=base, headers=AUTH, timeout=600) as client:
        if "/v1/broadcasts" not in client.get("/openapi.json").json().get("paths", {}):
            return Fanout(0, None, "n/a (no broadcasts endpoint)")
        _customers(stack, size)
        body["audience"] = {"customer_ids": [f"{PREFIX}{i}" for i in range(size)]}
        worker = stack.worker(queues)  # runs the fan-out batches (engine queue)
        try:
            started = time.perf_counter()
            answer = client.post("/v1/broadcasts", json=body)
            if answer.status_code >= 300:
                note = f"n/a (POST answered {answer.status_code}: {answer.text[:120]})"
                return Fanout(0, None, note)
            broadcast_id = answer.json()["id"]
            created, deadline = 0, time.monotonic() + cap
            while created < size and time.monotonic() < deadline:
                time.sleep(0.5)
                progress = client.get(f"/v1/broadcasts/{broadcast_id}").json()
                created = int(progress.get("created", 0))
            seconds = time.perf_counter() - started
        finally:
            stack.stop(worker)
    return Fanout(created, created / seconds, f"{created:,} of {size:,} created in {seconds:.0f} s")


def rows(backend: str, result: Fanout, insert_rate: float, size: int) -> list[Row]:
    return [
        Row(
            "8",
            f"broadcast fan-out to {size:,} customers, created/s",
            backend,
            "bulk insert, COPY (notification + attempt + events)",
            insert_rate,
            result.per_second,
            "/s",
            "≥ 20,000/s",
            result.note,
        )
    ]


def same_rows_baseline(stack: Stack, size: int) -> float:
    """COPY of ``size`` clones of one notification the fan-out wrote (its row, its
    attempt, its events): the same rows, written the fastest way; notifications/s."""
    from bench.rows import insert, template

    tpl = template(stack.engine, "broadcast_id IS NOT NULL AND state = 'accepted'")
    if tpl is None:
        return 0.0
    same = clones(tpl, size)
    count, seconds = insert(stack.engine, same)
    return count / max(seconds, 1e-6)


def clones(tpl: Any, size: int) -> Any:
    from bench.rows import clones as copies

    def notification(_: int, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "broadcast_id": None}  # one per customer and broadcast: not a copy

    def attempt(_: int, row: dict[str, Any]) -> dict[str, Any]:
        return row

    return copies(tpl, size, notification, attempt)


def main() -> None:
    """Figure 8 alone: ``python -m bench.broadcast [--size N] [--backend postgresql]``."""
    import argparse
    import tempfile
    from pathlib import Path

    from bench.intake import seed_customers
    from bench.stack import create_database, drop_database, private_redis

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--backend", default="postgresql")
    parser.add_argument("--cap", type=float, default=600)
    parser.add_argument("--keep", type=Path, help="work (and leave logs) in this new directory")
    parser.add_argument("--queues", help="the worker's queues (default: all, so it also sends)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cascade-fig8-") as tmp_dir:
        tmp = args.keep or Path(tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        with private_redis(tmp) as redis_url:
            url = create_database(args.backend, tmp)
            if url is None:
                raise SystemExit(f"{args.backend} is unavailable")
            stack = Stack(args.backend, url, redis_url, tmp)
            try:
                port, _ = stack.api()
                seed_customers(port, 1)
                result = fanout(stack, port, args.size, args.cap, args.queues)
                print(f"fan-out: {result.per_second or 0:,.0f}/s ({result.note})", flush=True)
                rate = same_rows_baseline(stack, args.size)
                print(f"baseline, COPY of the same rows: {rate:,.0f}/s", flush=True)
            finally:
                stack.stop_all()
                stack.engine.dispose()
                drop_database(url)


if __name__ == "__main__":
    main()
