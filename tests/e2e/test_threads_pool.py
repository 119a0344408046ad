"""The threads pool (many sends in flight in one process) keeps the at-most-once rule."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from dispatcher.queues import create_celery
from dispatcher.runtime import Runtime
from tests.e2e.conftest import Stack, start_worker, stop
from tests.e2e.test_queue_faults import Twice
from tests.support.scenario import put_customer, send, sends_for, show
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_threads_worker_beside_prefork_sends_each_attempt_once(
    e2e_api: TestClient, e2e_runtime: Runtime, stack: Stack
):
    """Every doorbell rung twice, consumed by a prefork and a 16-thread worker: one send each."""
    log = stack.log.parent / "threads-worker.log"
    env = {**stack.env, "CASCADE_DB_POOL_SIZE": "16", "PYTHONUNBUFFERED": "1"}
    threads = start_worker(env, log, "e2e-threads", pool="threads", concurrency=16)
    app = create_celery(stack.settings)
    name = f"e2e-threads@{socket.gethostname()}"
    try:
        wait_until(  # this worker itself, not the session's prefork one
            lambda: threads.poll() is None and app.control.ping(destination=[name], timeout=0.5),
            timeout=90,
            what="the threads worker to answer ping",
        )
        e2e_runtime.publisher = Twice(e2e_runtime.publisher)
        put_customer(e2e_api, "c-threads")
        ids = [send(e2e_api, "c-threads")["id"] for _ in range(40)]

        def first_attempts() -> set[str] | None:
            found = set()
            for nid in ids:
                attempts = show(e2e_api, nid)["attempts"]
                if not attempts or attempts[0]["state"] != "sent":
                    return None
                found.add(attempts[0]["id"])
            return found

        attempt_ids = wait_until(first_attempts, timeout=90, what="40 pushes sent")
        wait_until(
            lambda: (
                sum(log.read_text().count(f"attempt {a}:") for a in attempt_ids)
                + sum(stack.log.read_text().count(f"attempt {a}:") for a in attempt_ids)
                >= 80
            ),
            timeout=60,
            what="both copies of every doorbell to be processed",
        )
    finally:
        stop(threads)
    sends = sends_for(stack.outbox, attempt_ids)
    assert sorted(line["reference"] for line in sends) == sorted(attempt_ids)
    assert ": sent" in log.read_text()  # the threads worker did take part
