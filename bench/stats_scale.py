"""GET /v1/stats and the receipt-latency check over a million notifications, before and after.

Fills a fresh PostgreSQL database ``cascade_stats_bench`` with N notifications (default
1,000,000: ~1.7 attempts and ~6.6 history events each, shaped like a day of real traffic:
most read on push, some escalating to messenger, e-mail and SMS, a few exhausted, expired,
suppressed or still open), generated inside the server (``INSERT ... SELECT`` over
``generate_series``: no rows cross the wire). Then it times, on the same data:

* ``before``: the query functions of commit ``BEFORE`` (read with ``git show``), on the schema
  without the indexes of migration c3d4e5f6a7b8;
* ``after``: today's ``dispatcher.stats.summary`` and ``dispatcher.latency.slow_providers``
  with those indexes, and ``GET /v1/stats`` through the real FastAPI app;
* ``fallback``: the same with ``finished_channel`` left NULL (rows written by code that does
  not set it yet), so the event-join fallback is timed too.

Run: ``.venv/bin/python bench/stats_scale.py [--n 1000000] [--repeat 5]``. Needs PostgreSQL at
``CASCADE_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test). Prints one
table of medians (and the plans with ``--explain``). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlmodel import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stats_rows import fill
from config.cascade_files import load_cascades
from config.settings import Settings
from dispatcher import latency, stats
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.migrate import upgrade
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router

BEFORE = "c8f2018"  #: the last commit with the per-row stats queries
DATABASE = "cascade_stats_bench"
POSTGRES = os.environ.get("CASCADE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEY = "bench-key-0123456789"
#: The migration's backfill of finished_channel from the history.
FINISHED_CHANNEL_BACKFILL = """UPDATE notification SET finished_channel = (
    SELECT event.channel FROM event WHERE event.type = 'finished'
    AND event.notification_id = notification.id AND event.channel IS NOT NULL LIMIT 1)
    WHERE state IN ('read', 'delivered', 'sent')"""
#: Indexes added by migration c3d4e5f6a7b8 (dropped for the "before" rows).
NEW_INDEXES = {
    "ix_notification_created": "notification (created_at) "
    "INCLUDE (id, cascade, state, finished_channel, sms_step, cost)",
    "ix_attempt_period": "attempt (notification_created_at) "
    "INCLUDE (cascade, channel, sent_at, delivered_at, read_at, cost, error_code)",
    "ix_attempt_period_read": "attempt (notification_created_at) "
    "INCLUDE (cascade, channel, sent_at, read_at) "
    "WHERE read_at IS NOT NULL AND sent_at IS NOT NULL",
    "ix_event_type_notification": "event (type, notification_id)",
    "ix_attempt_provider_delivered": "attempt (provider, delivered_at) INCLUDE (sent_at)",
}


def admin(sql: str) -> None:
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(sql)


def database_url() -> str:
    return f"{POSTGRES.rsplit('/', 1)[0]}/{DATABASE}".replace(
        "postgresql://", "postgresql+psycopg://", 1
    )


def generate(url: str, n: int, now: datetime) -> dict[str, int]:
    """A fresh database holding ``n`` notifications; returns the row counts."""
    admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{DATABASE}"')
    upgrade(url)
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET synchronous_commit = off")
        fill(conn, n, now)
        conn.execute("VACUUM ANALYZE")
        counts = {}
        for table in ("notification", "attempt", "event"):
            query = f"SELECT count(*) FROM {table}"  # noqa: S608 - our table names
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def load_before(name: str) -> types.ModuleType:
    """``dispatcher/<name>.py`` as it was at commit ``BEFORE``."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:dispatcher/{name}.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = sys.modules[f"before_{name}"] = types.ModuleType(f"before_{name}")
    exec(compile(source, f"{BEFORE}:dispatcher/{name}.py", "exec"), module.__dict__)  # noqa: S102
    return module


def set_indexes(engine: Engine, present: bool) -> None:
    with engine.begin() as connection:
        for name, definition in NEW_INDEXES.items():
            if present:
                connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
            else:
                connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")


def timed(repeat: int, call: Callable[[], object]) -> float:
    """Median wall time of ``call`` in milliseconds (one warm-up run first)."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def stats_call(engine: Engine, module: Any, since: datetime, until: datetime) -> Callable[[], Any]:
    def call() -> Any:
        with Session(engine) as session:
            return module.summary(session, since=since, until=until, cascade=None, sms_cost=0.05)

    return call


def latency_call(engine: Engine, module: Any, now: datetime) -> Callable[[], Any]:
    providers = ["fcm", "telegram", "smtp", "twilio", "smsru"]

    def call() -> Any:
        with Session(engine) as session:
            return module.slow_providers(session, providers, now, module.LatencyRule())

    return call


def http_call(url: str, data_dir: Path) -> Callable[[], Any]:
    settings = Settings(
        _env_file=None,
        database_url=url,
        cascades_dir=ROOT / "config" / "cascades",
        data_dir=data_dir,
        api_keys=[KEY],
    )
    router = build_router(settings, None)
    engine = get_engine(url)
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    app = create_app(Runtime(settings, cascades, engine, router, RecordingPublisher()))
    client = TestClient(app, headers={"Authorization": f"Bearer {KEY}"})

    def call() -> Any:
        response = client.get("/v1/stats")
        assert response.status_code == 200, response.text
        return response.json()

    return call


def explain(engine: Engine, call: Callable[[], object]) -> None:
    """Run ``call`` once, then print EXPLAIN ANALYZE of every statement it sent."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("EXPLAIN", "SET", "BEGIN")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as connection:
        for statement, parameters in statements:
            print("\n" + " ".join(statement.split()))
            plan = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
            )
            print("\n".join(row[0] for row in plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="notifications to generate")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--reuse", action="store_true", help="keep the data of a previous run")
    parser.add_argument("--no-before", action="store_true", help="skip the old queries (slow)")
    parser.add_argument("--fallback", action="store_true", help="also time finished_channel NULL")
    parser.add_argument("--explain", action="store_true", help="print the plans of the new queries")
    args = parser.parse_args()
    url = database_url()
    now = datetime.now(UTC)
    if not args.reuse:
        start = time.perf_counter()
        counts = generate(url, args.n, now)
        print(f"generated {counts} in {time.perf_counter() - start:.0f} s")
    engine = get_engine(url)
    with engine.connect() as connection:
        newest = connection.exec_driver_sql("SELECT max(created_at) FROM notification").scalar()
    now = (newest or now.replace(tzinfo=None)).replace(tzinfo=UTC) + timedelta(minutes=5)
    since, until = now - timedelta(days=1), now
    rows: list[tuple[str, float | None, float | None]] = []
    before: dict[str, float] = {}
    if not args.no_before:
        set_indexes(engine, present=False)
        old_stats, old_latency = load_before("stats"), load_before("latency")
        repeat = max(1, min(args.repeat, 3))
        before["stats"] = timed(repeat, stats_call(engine, old_stats, since, until))
        before["latency"] = timed(repeat, latency_call(engine, old_latency, now))
        old_result = stats_call(engine, old_stats, since, until)()
    set_indexes(engine, present=True)
    new_result = stats_call(engine, stats, since, until)()
    after = {
        "stats": timed(args.repeat, stats_call(engine, stats, since, until)),
        "latency": timed(args.repeat, latency_call(engine, latency, now)),
    }
    with tempfile.TemporaryDirectory() as data_dir:
        rows.append(
            (
                "GET /v1/stats (HTTP, default day)",
                None,
                timed(args.repeat, http_call(url, Path(data_dir))),
            )
        )
    rows.insert(0, ("stats.summary() over the day", before.get("stats"), after["stats"]))
    rows.append(("latency.slow_providers(), 5 providers", before.get("latency"), after["latency"]))
    if args.explain:
        explain(engine, stats_call(engine, stats, since, until))
        explain(engine, latency_call(engine, latency, now))
    if args.fallback:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE notification SET finished_channel = NULL")
        set_indexes(engine, present=True)
        fallback = timed(args.repeat, stats_call(engine, stats, since, until))
        rows.append(("stats.summary(), finished_channel NULL", None, fallback))
        assert stats_call(engine, stats, since, until)() == new_result
        with engine.begin() as connection:
            connection.exec_driver_sql(FINISHED_CHANNEL_BACKFILL)
        set_indexes(engine, present=True)
    print(f"\nnotifications in the period: {new_result['notifications']:,}")
    if not args.no_before:
        differs = [k for k in new_result if k != "channels" and new_result[k] != old_result[k]]
        print(f"figures that differ from the old queries: {differs or 'none'}")
    print("\n| figure | before (ms) | after (ms) | speed-up |\n|---|---|---|---|")
    for name, old, new in rows:
        ratio = f"{old / new:.0f}x" if old and new else ""
        print(f"| {name} | {(old and f'{old:,.0f}') or '-'} | {new:,.1f} | {ratio} |")


if __name__ == "__main__":
    main()
