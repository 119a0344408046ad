"""A world with real providers: simulators on localhost, our API served over real HTTP
(so simulators can call its webhooks), and a real Celery worker configured to send
through the simulators. Channels without a provider in ``channels`` use the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.publisher import CeleryPublisher
from dispatcher.queues import create_celery
from dispatcher.runtime import Runtime, build_router, capabilities
from tests.conftest import TEST_KEY, make_settings
from tests.e2e.conftest import start_worker, stop, wait_ready, worker_env
from tests.simulators.server import free_port, serve
from tests.support.database import truncate
from tests.support.waiting import wait_until


@dataclass
class World:
    runtime: Runtime
    api: httpx.Client  #: our API over HTTP, authorised
    public_url: str
    log: Path

    def show(self, nid: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/notifications/{nid}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def attempts(self, nid: str) -> list[tuple[str, str | None, str]]:
        return [(a["channel"], a["provider"], a["state"]) for a in self.show(nid)["attempts"]]

    def webhook(self, provider: str) -> str:
        return f"{self.public_url}/v1/webhooks/{provider}"

    def step_done(self, nid: str, step: int) -> dict[str, Any]:
        """Wait until attempt ``step`` of ``nid`` exists and its send is over; return it."""

        def probe() -> dict[str, Any] | None:
            attempts = self.show(nid)["attempts"]
            if len(attempts) > step and attempts[step]["state"] not in ("pending", "sending"):
                return dict(attempts[step])
            return None

        return wait_until(probe, what=f"step {step} to be sent")


@contextmanager
def world(
    *,
    database_url: str,
    redis_url: str,
    data: Path,
    channels: dict[str, list[str]],
    providers: dict[str, dict[str, Any]],
    **overrides: Any,
) -> Iterator[World]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = make_settings(
        database_url,
        redis_url,
        data,
        channels=channels,
        providers=providers,
        public_url=public,
        **overrides,
    )
    engine = get_engine(settings.effective_database_url)
    truncate(engine)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    router = build_router(settings, client)
    cascades = load_cascades(settings.cascades_dir, capabilities(settings, router))
    runtime = Runtime(
        settings,
        cascades,
        engine,
        router,
        CeleryPublisher(create_celery(settings), settings.send_group),
    )
    env = worker_env(settings, data / "outbox.jsonl")
    env["CASCADE_PUBLIC_URL"] = public
    env["CASCADE_CHANNELS"] = json.dumps(channels)
    env["CASCADE_PROVIDERS"] = json.dumps(providers)
    for key, value in overrides.items():
        complex_ = isinstance(value, dict | list)  # as pydantic-settings reads them: JSON
        env[f"CASCADE_{key.upper()}"] = json.dumps(value) if complex_ else str(value)
    log = data / "worker.log"
    with ExitStack() as stack:
        stack.callback(runtime.close)  # last: after the API server has stopped
        stack.enter_context(serve(create_app(runtime), port))
        worker = start_worker(env, log, f"world-{port}")
        stack.callback(stop, worker)
        wait_ready(settings, worker, log)
        api = stack.enter_context(
            httpx.Client(
                base_url=public, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10
            )
        )
        yield World(runtime, api, public, log)
