"""The dispatcher on the real database with recorded doorbells: a runtime factory and a
worker stand-in that sends every published doorbell, as ``send_attempt`` would in a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.dispatch import send_attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from tests.conftest import AUTH, make_settings
from tests.support.clock import FakeClock

Make = Callable[..., tuple[Runtime, TestClient]]


@pytest.fixture(name="make")
def _make(
    database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock
) -> Iterator[Make]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> tuple[Runtime, TestClient]:
        settings = make_settings(database_url, redis_url, tmp_path, **overrides)
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        router = build_router(settings, client)
        cascades = load_cascades(settings.cascades_dir, router.available_channels())
        runtime = Runtime(settings, cascades, db_engine, router, RecordingPublisher(), clock)
        api = TestClient(create_app(runtime), headers=AUTH)
        clients.append(api)
        return runtime, api

    yield make
    for api in clients:
        api.close()


def pending_bells(runtime: Runtime) -> list[str]:
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    bells = [b.attempt_id for b in publisher.published]
    publisher.published.clear()
    return bells


def drain(runtime: Runtime) -> list[str]:
    """Run every published doorbell through send_attempt, like a worker would."""
    outcomes = []
    while bells := pending_bells(runtime):
        outcomes += [send_attempt(runtime, bell) for bell in bells]
    return outcomes


__all__ = ["Make", "drain", "pending_bells"]
