"""Shared fixtures: real Redis, real SQLite and PostgreSQL, an injected clock.

Every test that touches the database runs twice, once per backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.cascade_files import load_cascades
from config.settings import SandboxSettings, Settings
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.migrate import upgrade
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from tests.support.clock import FakeClock
from tests.support.database import truncate
from tests.support.services import drop_postgres_database, postgres_database, redis_server

TEST_KEY = "test-api-key-0123456789"
CASCADES = Path(__file__).parent / "cascades"
AUTH = {"Authorization": f"Bearer {TEST_KEY}"}

for _name in [
    n for n in os.environ if n.startswith("CASCADE_") and not n.startswith("CASCADE_TEST_")
]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def redis_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'cascade.db'}"
        upgrade(url)
        yield url
        return
    name = f"cascade_test_{os.getpid()}"
    url = postgres_database(name)
    upgrade(url)
    yield url
    get_engine(url).dispose()
    drop_postgres_database(name)


@pytest.fixture(name="db_engine")
def _db_engine(database_url: str) -> Engine:
    engine = get_engine(database_url)
    truncate(engine)
    return engine


@pytest.fixture(name="redis_url")
def _redis_url(redis_base: str, backend: str) -> str:
    return f"{redis_base}/{11 if backend == 'sqlite' else 12}"


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


def make_settings(
    database_url: str, redis_url: str, data_dir: Path, **overrides: object
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "cascades_dir": CASCADES,
        "data_dir": data_dir,
        "api_keys": [TEST_KEY],
        "receipt_secret": "test-receipt-secret",
        "sandbox": SandboxSettings(outbox=data_dir / "outbox.jsonl"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(name="settings")
def _settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, tmp_path)


@pytest.fixture(name="runtime")
def _runtime(settings: Settings, db_engine: Engine, clock: FakeClock) -> Runtime:
    """A runtime on the real database whose doorbells are recorded, not queued."""
    import redis

    router = build_router(settings, redis.Redis.from_url(settings.redis_url))
    redis.Redis.from_url(settings.redis_url).flushdb()
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    return Runtime(settings, cascades, db_engine, router, RecordingPublisher(), clock)


@pytest.fixture(name="api")
def _api(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), headers=AUTH) as client:
        yield client
