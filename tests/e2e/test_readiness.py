"""Liveness and readiness with a real worker and a real beat, then without them.

``/healthz`` says the API process is alive (database and broker reachable);
``/readyz`` says the system can deliver: a recent sweep and a live worker per queue.
Time is the API's injected clock: a stopped beat is noticed by moving it, not by sleeping.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from config.settings import Settings
from dispatcher.api.app import create_app
from dispatcher.queues import QUEUES
from dispatcher.readiness import LAST_SWEEP, Presence, last_sweep, workers_per_queue
from dispatcher.runtime import Runtime
from tests.conftest import AUTH
from tests.e2e.conftest import ROOT, Stack, stop
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


def _api(runtime: Runtime, clock: FakeClock, settings: Settings | None = None) -> TestClient:
    runtime.clock = clock
    if settings is not None:
        runtime.settings = settings
    return TestClient(create_app(runtime), headers=AUTH)


@pytest.fixture(name="beat")
def _beat(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    redis.Redis.from_url(stack.settings.redis_url).delete(LAST_SWEEP)
    with stack.log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", "beat"],
            cwd=ROOT,
            env=stack.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    yield process
    stop(process)


def test_ready_with_worker_and_beat_not_ready_once_beat_stopped(
    stack: Stack, e2e_runtime: Runtime, beat: subprocess.Popen[bytes], clock: FakeClock
):
    """The real worker's queues and the real beat's sweeps make it ready; beat stops and,
    once its last sweep is old, readiness says so while liveness stays ok."""
    with _api(e2e_runtime, clock) as api:
        ready = wait_until(
            lambda: (r := api.get("/readyz")).status_code == 200 and r.json(),
            timeout=60,
            what="readiness with the stack's worker and a beat",
        )
        assert all(ready["workers"][queue] >= 1 for queue in QUEUES)
        stop(beat)
        swept = last_sweep(redis.Redis.from_url(stack.settings.redis_url))
        assert swept is not None
        clock.current = swept + timedelta(seconds=60)  # a minute without a sweep
        response = api.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert all(body["workers"][queue] >= 1 for queue in QUEUES)
        assert body["last_sweep_age_s"] == 60
        assert body["problems"] == ["last sweep 60 s ago: is `dispatcher beat` running?"]
        assert api.get("/healthz").json()["status"] == "ok"


def test_not_ready_without_a_worker(
    stack: Stack, e2e_runtime: Runtime, redis_base: str, clock: FakeClock
):
    """A broker no worker consumes from: every queue is named, liveness is still ok."""
    empty = f"{redis_base}/7"
    client = redis.Redis.from_url(empty)
    client.flushdb()
    client.set(LAST_SWEEP, clock().timestamp())  # beat is fine: only workers are missing
    settings = stack.settings.model_copy(update={"redis_url": empty})
    with _api(e2e_runtime, clock, settings) as api:
        response = api.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["workers"] == dict.fromkeys(QUEUES, 0)
        assert body["problems"] == [f"no live worker for queue(s): {', '.join(QUEUES)}"]
        assert body["detail"] == body["problems"][0]
        assert api.get("/healthz").status_code == 200


def test_a_stopped_workers_mark_goes(redis_base: str):
    """A worker's presence counts for its queues only, and is gone when it stops."""
    client = redis.Redis.from_url(f"{redis_base}/7")
    client.flushdb()
    presence = Presence(client, "sms-only@host", ["sms"])
    presence.start()
    wait_until(lambda: workers_per_queue(client, QUEUES)["sms"] == 1, 10, "the mark")
    assert workers_per_queue(client, ["push", "sms"]) == {"push": 0, "sms": 1}
    presence.stop()
    assert workers_per_queue(client, ["sms"]) == {"sms": 0}
