"""With the database down or locked, the API answers 503 with Retry-After, never a 500.

Real failures only: a PostgreSQL URL to a port where nothing listens, a database that
is dropped, backends killed with pg_terminate_backend, and a SQLite write lock held by
another connection past the busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.db import make_engine
from dispatcher.dispatch import send_attempt
from dispatcher.migrate import upgrade
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from tests.conftest import AUTH, make_settings
from tests.simulators.server import free_port
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE
from tests.support.services import POSTGRES_URL, drop_postgres_database, postgres_database

CUSTOMER = {"contacts": [{"channel": "sms", "address": PHONE}]}
SEND = {"customer_id": "d1", "cascade": "basic", "content": {"text": "x"}}


def client_on(engine: Engine, url: str, redis_base: str, data_dir: Path) -> TestClient:
    settings = make_settings(url, f"{redis_base}/13", data_dir)
    router = build_router(settings, redis.Redis.from_url(settings.redis_url))
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    runtime = Runtime(settings, cascades, engine, router, RecordingPublisher(), FakeClock())
    return TestClient(create_app(runtime), headers=AUTH, raise_server_exceptions=False)


def unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["title"] == "Service unavailable"
    assert "Traceback" not in response.text


def every_kind_of_request(api: TestClient) -> None:
    unavailable(api.put("/v1/customers/d1", json=CUSTOMER))
    unavailable(api.get("/v1/customers/d1"))
    unavailable(api.patch("/v1/customers/d1/preferences", json={"channel_order": ["sms"]}))
    unavailable(api.post("/v1/notifications", json=SEND))
    unavailable(api.get("/v1/notifications/00000000-0000-0000-0000-000000000000"))
    unavailable(api.get("/v1/customers/d1/history"))
    unavailable(api.get("/v1/stats"))
    unavailable(api.post("/v1/receipts", json={"attempt_id": "a" * 36, "status": "read"}))


@pytest.fixture(name="pg_scratch")
def _pg_scratch() -> Iterator[tuple[str, str]]:
    name = f"cascade_down_{os.getpid()}"
    url = postgres_database(name)
    upgrade(url)
    yield name, url
    drop_postgres_database(name)


@pytest.mark.postgres
def test_postgres_on_a_dead_port_is_503(redis_base: str, tmp_path: Path):
    """Nothing listens at the database's address: every database-backed route is a 503."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/cascade"
    with client_on(make_engine(url), url, redis_base, tmp_path) as api:
        every_kind_of_request(api)
        assert api.get("/v1/cascades").status_code == 200  # what needs no database still works
        health = api.get("/healthz")
        assert health.status_code == 503
        assert "retry-after" in health.headers


@pytest.mark.postgres
def test_dropped_postgres_database_is_503(
    redis_base: str, tmp_path: Path, pg_scratch: tuple[str, str]
):
    """The database is dropped under a running API (its sessions killed): 503, not 500."""
    name, url = pg_scratch
    engine = make_engine(url)
    with client_on(engine, url, redis_base, tmp_path) as api:
        assert api.put("/v1/customers/d1", json=CUSTOMER).status_code == 200
        drop_postgres_database(name)
        every_kind_of_request(api)
    engine.dispose()


@pytest.mark.postgres
def test_terminated_postgres_sessions_are_503_then_recover(
    redis_base: str, tmp_path: Path, pg_scratch: tuple[str, str]
):
    """pg_terminate_backend kills the pooled connection: that request is a 503, the next works.

    The engine here does not ping before use, so the dead pooled connection is really used.
    """
    name, url = pg_scratch
    engine = create_engine(url, pool_pre_ping=False, pool_size=1, max_overflow=0)
    with client_on(engine, url, redis_base, tmp_path) as api:
        assert api.put("/v1/customers/d1", json=CUSTOMER).status_code == 200
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        unavailable(api.get("/v1/customers/d1"))
        assert api.get("/v1/customers/d1").status_code == 200
    engine.dispose()


def test_locked_sqlite_is_503(redis_base: str, tmp_path: Path):
    """Another process holds SQLite's write lock past the busy timeout: 503, then it works."""
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=200")  # instead of 30 s

    with client_on(engine, url, redis_base, tmp_path) as api:
        assert api.put("/v1/customers/d1", json=CUSTOMER).status_code == 200
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            unavailable(api.post("/v1/notifications", json={**SEND, "customer_id": "d1"}))
            unavailable(api.put("/v1/customers/d2", json=CUSTOMER))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert api.post("/v1/notifications", json=SEND).status_code == 202
    engine.dispose()


@pytest.mark.postgres
def test_worker_claims_again_on_a_connection_that_died(
    redis_base: str, tmp_path: Path, pg_scratch: tuple[str, str]
):
    """The worker's engine does not ping pooled connections: after pg_terminate_backend the
    claim's first statement fails on the dead one, and the claim runs again on a fresh one."""
    name, url = pg_scratch
    engine = make_engine(url, pool_size=1, pre_ping=False)
    with client_on(engine, url, redis_base, tmp_path) as api:
        assert api.put("/v1/customers/d1", json=CUSTOMER).status_code == 200
        assert api.post("/v1/notifications", json=SEND).status_code == 202
        runtime = api.app.state.runtime  # type: ignore[attr-defined]
        (bell,) = [b.attempt_id for b in runtime.publisher.published]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        assert send_attempt(runtime, bell) == "sent"
        assert send_attempt(runtime, bell) == "not_claimed"
    engine.dispose()
