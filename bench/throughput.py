"""Throughput of the three hot paths, per database backend, printed as a table.

* intake:   POST /v1/notifications through the real FastAPI stack (one client thread)
* send:     a real prefork Celery worker (2 children) claiming and sending sandbox
            attempts, from the first publish to the last ``sent`` row
* sweep:    one sweep pass escalating N due attempts (creating N next attempts)

Run: ``make bench`` or ``.venv/bin/python bench/throughput.py --n 500``. Needs Redis at
``CASCADE_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/15) and, for the PostgreSQL
row, the server at ``CASCADE_TEST_POSTGRES_URL``. Numbers are for comparing changes on
one machine, not promises.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import redis

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, SQLModel, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.cascades import load_cascades
from config.settings import Settings
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.dispatch import send_attempt
from dispatcher.migrate import upgrade
from dispatcher.models import Attempt
from dispatcher.publisher import CeleryPublisher, RecordingPublisher
from dispatcher.queues import QUEUES, create_celery
from dispatcher.runtime import Runtime, build_router
from dispatcher.sweep import sweep

KEY = "bench-key-0123456789"
REDIS = os.environ.get("CASCADE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES = os.environ.get("CASCADE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CASCADES = ROOT / "tests" / "cascades"


def database(backend: str, tmp: Path) -> str | None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        import psycopg

        try:
            with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as conn:
                conn.execute('DROP DATABASE IF EXISTS "cascade_bench" WITH (FORCE)')
                conn.execute('CREATE DATABASE "cascade_bench"')
        except psycopg.OperationalError:
            return None
        url = (
            POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            + "/cascade_bench"
        )
    upgrade(url)
    return url


def runtime_for(settings: Settings, publisher: object) -> Runtime:
    router = build_router(settings, redis.Redis.from_url(settings.redis_url))
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    engine = get_engine(settings.effective_database_url)
    with engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
    return Runtime(settings, cascades, engine, router, publisher)  # type: ignore[arg-type]


def create(api: TestClient, n: int, prefix: str) -> float:
    contacts = [{"channel": "push", "address": "bench-token-" + "x" * 32}]
    for i in range(n):
        api.put(f"/v1/customers/{prefix}{i}", json={"contacts": contacts})
    started = time.perf_counter()
    for i in range(n):
        response = api.post(
            "/v1/notifications",
            json={"customer_id": f"{prefix}{i}", "cascade": "basic", "content": {"text": "hello"}},
        )
        assert response.status_code == 202, response.text
    return n / (time.perf_counter() - started)


def count_sent(rt: Runtime) -> int:
    with Session(rt.engine) as session:
        return int(
            session.exec(
                select(func.count()).select_from(Attempt).where(Attempt.state == "sent")
            ).one()
        )


def bench_send(settings: Settings, n: int, tmp: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env.update(
        CASCADE_DATABASE_URL=settings.effective_database_url,
        CASCADE_REDIS_URL=settings.redis_url,
        CASCADE_CASCADES_DIR=str(CASCADES),
        CASCADE_DATA_DIR=str(tmp),
        CASCADE_API_KEYS=KEY,
        PYTHONPATH=str(ROOT),
    )
    app = create_celery(settings)
    rt = runtime_for(settings, CeleryPublisher(app))
    with (tmp / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dispatcher.worker",
                "worker",
                "-Q",
                ",".join(QUEUES),
                "-c",
                "2",
                "--pool",
                "prefork",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while not app.control.ping(timeout=0.5):
            time.sleep(0.2)
        app.control.cancel_consumer("push", reply=True, timeout=5, limit=1)
        with TestClient(create_app(rt), headers={"Authorization": f"Bearer {KEY}"}) as api:
            create(api, n, "s")
        started = time.perf_counter()
        app.control.add_consumer("push", reply=True, timeout=5, limit=1)
        while count_sent(rt) < n:
            time.sleep(0.05)
        return n / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def bench_sweep(settings: Settings, n: int) -> float:
    publisher = RecordingPublisher()
    rt = runtime_for(settings, publisher)
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {KEY}"}) as api:
        create(api, n, "w")
    for bell in list(publisher.published):
        send_attempt(rt, bell.attempt_id)
    publisher.published.clear()
    later = rt.now() + timedelta(seconds=61)
    started = time.perf_counter()
    escalated = 0
    while escalated < n:
        escalated += sweep(rt, now=later).escalated
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="notifications per measurement")
    args = parser.parse_args()
    redis.Redis.from_url(REDIS).flushdb()
    rows = []
    for backend in ("sqlite", "postgresql"):
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            url = database(backend, tmp)
            if url is None:
                rows.append((backend, "unavailable", "", ""))
                continue
            settings = Settings(
                _env_file=None,
                database_url=url,
                redis_url=REDIS,
                cascades_dir=CASCADES,
                data_dir=tmp,
                api_keys=[KEY],
                sweep_batch=max(500, args.n),
            )
            intake = create(
                TestClient(
                    create_app(runtime_for(settings, RecordingPublisher())),
                    headers={"Authorization": f"Bearer {KEY}"},
                ),
                args.n,
                "i",
            )
            send = bench_send(settings, args.n, tmp)
            swept = bench_sweep(settings, args.n)
            rows.append((backend, f"{intake:,.0f}", f"{send:,.0f}", f"{swept:,.0f}"))
    print(f"\nCascade throughput, n={args.n} per measurement, {os.cpu_count()} CPUs\n")
    header = ("backend", "intake/s (API)", "sends/s (worker c=2)", "escalations/s (sweep)")
    print(f"| {header[0]:<10} | {header[1]:>14} | {header[2]:>20} | {header[3]:>21} |")
    print(f"|{'-' * 12}|{'-' * 16}:|{'-' * 22}:|{'-' * 23}:|")
    for backend, intake_s, send_s, sweep_s in rows:
        print(f"| {backend:<10} | {intake_s:>14} | {send_s:>20} | {sweep_s:>21} |")


if __name__ == "__main__":
    main()
