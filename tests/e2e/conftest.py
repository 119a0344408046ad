"""A real Celery worker (subprocess, prefork) on real Redis and the real database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from config.cascade_files import load_cascades
from config.settings import Settings
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.publisher import CeleryPublisher
from dispatcher.queues import QUEUES, create_celery
from dispatcher.runtime import Runtime, build_router
from tests.conftest import AUTH, CASCADES, TEST_KEY, make_settings
from tests.support.database import truncate
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    outbox: Path
    log: Path


def worker_env(settings: Settings, outbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env.update(
        {
            "CASCADE_DATABASE_URL": settings.effective_database_url,
            "CASCADE_REDIS_URL": settings.redis_url,
            "CASCADE_CASCADES_DIR": str(CASCADES),
            "CASCADE_DATA_DIR": str(settings.data_dir),
            "CASCADE_API_KEYS": TEST_KEY,
            "CASCADE_RECEIPT_SECRET": "test-receipt-secret",
            "CASCADE_SANDBOX__OUTBOX": str(outbox),
            "CASCADE_SWEEP_INTERVAL": "0.5",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def start_worker(
    env: dict[str, str], log: Path, name: str, pool: str = "prefork", concurrency: int = 2
) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
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
                str(concurrency),
                "--pool",
                pool,
                "-E",
                # No peers to sync revoked ids or clocks with: mingle's second of waiting
                # for neighbours would be spent at every worker start.
                "--without-mingle",
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_ready(settings: Settings, process: subprocess.Popen[bytes], log: Path) -> None:
    app = create_celery(settings)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker exited:\n{log.read_text()[-3000:]}")
        return bool(app.control.ping(timeout=0.5))

    wait_until(ready, timeout=60, what="the Celery worker to answer ping")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def stack(
    database_url: str, redis_base: str, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp(f"e2e-{backend}")
    settings = make_settings(
        database_url, f"{redis_base}/{13 if backend == 'sqlite' else 14}", data
    )
    outbox = data / "outbox.jsonl"
    env = worker_env(settings, outbox)
    redis.Redis.from_url(settings.redis_url).flushdb()
    log = data / "worker.log"
    process = start_worker(env, log, f"e2e-{backend}")
    try:
        wait_ready(settings, process, log)
        yield Stack(settings, env, outbox, log)
    finally:
        stop(process)


@pytest.fixture(name="e2e_runtime")
def _e2e_runtime(stack: Stack) -> Runtime:
    """The test process's own runtime: real DB, real Celery publisher to the worker's Redis."""
    settings = stack.settings
    engine = get_engine(settings.effective_database_url)
    truncate(engine)
    stack.outbox.unlink(missing_ok=True)
    router = build_router(settings, redis.Redis.from_url(settings.redis_url))
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    publisher = CeleryPublisher(create_celery(settings), settings.send_group)
    return Runtime(settings, cascades, engine, router, publisher)


@pytest.fixture(name="e2e_api")
def _e2e_api(e2e_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(e2e_runtime), headers=AUTH) as client:
        yield client
