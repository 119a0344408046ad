"""The send path alone, in one process: SQL statements and CPU per notification.

``python -m bench.send_statements [sqlite|<postgresql url>] [-n 1000] [--threads 64]``
accepts ``n`` notifications (bench cascade: push waiting for read, then SMS) through the
API in-process, then sends them from ``threads`` threads calling ``send_attempt`` as the
threads pool does (claim and record rounds shared), the sandbox confirming ``read`` at
once. It counts the statements the engine runs and this process's CPU time during the
sends only: no Celery, no broker, so the count is exact and the CPU less noisy than
figure 4's. Needs a Redis at ``CASCADE_REDIS_URL`` (default
``redis://127.0.0.1:6379/7``; that database is flushed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import event

from bench.stack import CASCADE_YAML, KEY
from config.cascade_files import load_cascades
from config.settings import SandboxSettings, Settings
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.dispatch import send_attempt
from dispatcher.migrate import upgrade
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from providers.base import Channel
from providers.sandbox import SandboxBehaviour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database", nargs="?", default="sqlite")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cascade-statements-"))
    url = f"sqlite:///{tmp / 'bench.db'}" if args.database == "sqlite" else args.database
    upgrade(url)
    (tmp / "cascades").mkdir()
    (tmp / "cascades" / "bench.yaml").write_text(CASCADE_YAML)
    at_once = SandboxBehaviour(
        delivered_probability=1.0, delivered_after=0, read_probability=1.0, read_after=0
    )
    settings = Settings(
        _env_file=None,
        database_url=url,
        redis_url=os.environ.get("CASCADE_REDIS_URL", "redis://127.0.0.1:6379/7"),
        cascades_dir=tmp / "cascades",
        data_dir=tmp,
        api_keys=[KEY],
        sandbox=SandboxSettings(channels={Channel.PUSH: at_once}),
    )
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    router = build_router(settings, client)
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    engine = get_engine(url)
    publisher = RecordingPublisher()
    rt = Runtime(settings, cascades, engine, router, publisher)
    api = TestClient(create_app(rt), headers={"Authorization": f"Bearer {KEY}"})
    for i in range(args.threads):
        contacts = [{"channel": "push", "address": f"fcm-bench-token-{i:06d}-" + "b" * 24}]
        api.put(f"/v1/customers/bench-{i}", json={"contacts": contacts}).raise_for_status()
    for i in range(args.n):
        body: dict[str, Any] = {"customer_id": f"bench-{i % args.threads}", "cascade": "bench"}
        body["content"] = {"title": "Bench", "text": "Your order has shipped"}
        api.post("/v1/notifications", json=body).raise_for_status()
    bells = [bell.attempt_id for bell in publisher.published]
    publisher.published.clear()
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    words: list[str] = []

    def run(chunk: list[str]) -> None:
        for bell in chunk:
            words.append(send_attempt(rt, bell))

    threads = [
        threading.Thread(target=run, args=(bells[i :: args.threads],)) for i in range(args.threads)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = len(bells)
    print(
        f"{engine.dialect.name}: {n} sends from {args.threads} threads: "
        f"{statements[0] / n:.2f} statements and {cpu / n * 1000:.2f} ms CPU per notification "
        f"({n / wall:.0f}/s); outcomes {dict(Counter(words))}; "
        f"rounds: {rt.batches['claims'].rounds} claim, {rt.batches['records'].rounds} record"
    )
    api.close()
    engine.dispose()


if __name__ == "__main__":
    main()
