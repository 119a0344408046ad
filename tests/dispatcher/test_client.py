"""The typed Python client against the real API: real uvicorn, real database (both backends)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import event

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.client import ApiError, CascadeClient
from dispatcher.db import make_engine
from dispatcher.migrate import upgrade
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from tests.conftest import TEST_KEY, make_settings
from tests.simulators.server import serve
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE

CUSTOMER = {
    "timezone": "Europe/Berlin",
    "contacts": [
        {"channel": "push", "address": "fcm-token-0123456789abcdefghijklmnopqrstuv"},
        {"channel": "sms", "address": PHONE},
    ],
    "preferences": {"opt_out_categories": ["marketing"]},
}


@pytest.fixture(name="client")
def _client(runtime: Runtime) -> Iterator[CascadeClient]:
    with serve(create_app(runtime)) as url, CascadeClient(url, TEST_KEY) as client:
        yield client


def test_customer_send_get_receipt_cancel(client: CascadeClient, runtime: Runtime):
    """Every call returns the API's typed model; a receipt finishes the notification."""
    customer = client.put_customer("alice", CUSTOMER)
    assert [c.channel for c in customer.contacts] == ["push", "sms"]
    assert customer.preferences.opt_out_categories == ["marketing"]
    patched = client.update_preferences("alice", {"channel_order": ["sms"]})
    assert patched.preferences.channel_order == ["sms"]
    assert client.get_customer("alice").timezone == "Europe/Berlin"

    accepted = client.send("alice", "basic", content={"title": "Order 42", "text": "Shipped"})
    assert accepted.state == "accepted"
    assert [s.channel for s in accepted.steps] == ["push", "sms"]  # SMS, paid, stays last
    assert len(runtime.publisher.published) == 1  # type: ignore[attr-defined]

    shown = client.get(accepted.id)
    assert shown.customer_id == "alice"
    assert [a.channel for a in shown.attempts] == ["push"]
    assert shown.events[0].type == "accepted"

    # No worker here: the push was never sent, so the read waits for the send to be recorded.
    receipt = client.receipt("read", attempt_id=shown.attempts[0].id)
    assert (receipt.outcome, receipt.notification_state) == ("waiting", "accepted")
    assert client.history("alice")[0].type == "accepted"

    second = client.send("alice", "basic", content={"text": "again"})
    assert client.cancel(second.id).state == "cancelled"
    with pytest.raises(ApiError) as caught:
        client.cancel(second.id)
    assert caught.value.status == 409
    assert caught.value.title == "Already finished"
    assert [c.name for c in client.cascades()] == ["basic", "short"]
    assert "channels" in client.stats(since="1h")


def test_sends_carry_an_idempotency_key(client: CascadeClient):
    """A new key per send unless given; the same key and body replays the first answer."""
    client.put_customer("bob", CUSTOMER)
    first = client.send("bob", "basic", content={"text": "a"})
    second = client.send("bob", "basic", content={"text": "a"})
    assert first.id != second.id  # two keys: two notifications
    keyed = client.send("bob", "basic", content={"text": "b"}, idempotency_key="order-1")
    again = client.send_body(
        {"customer_id": "bob", "cascade": "basic", "content": {"text": "b"}},
        idempotency_key="order-1",
    )
    assert again.id == keyed.id
    with pytest.raises(ApiError) as caught:
        client.send("bob", "basic", content={"text": "other"}, idempotency_key="order-1")
    assert caught.value.status == 409


def test_errors_carry_the_problem(client: CascadeClient):
    """A 422 names the field; a 404 is an ApiError too, never a bare exception."""
    with pytest.raises(ApiError) as caught:
        client.send("nobody", "basic", content={"text": "x"}, ttl="soon")
    assert caught.value.status == 422
    assert [e["field"] for e in caught.value.errors] == ["ttl"]
    with pytest.raises(ApiError) as missing:
        client.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404
    with (
        CascadeClient(str(client._http.base_url), "wrong-key-123") as stranger,
        pytest.raises(ApiError) as unauthorized,
    ):
        stranger.get("x")
    assert unauthorized.value.status == 401


def test_503_is_retried_after_retry_after_with_the_same_key(redis_base: str, tmp_path: Path):
    """SQLite's write lock held by another process: the API answers 503 with Retry-After;
    the client waits that long (the injected sleep releases the lock) and sends again under
    the same Idempotency-Key, so exactly one notification exists."""
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=200")

    settings = make_settings(url, f"{redis_base}/13", tmp_path)
    router = build_router(settings, redis.Redis.from_url(settings.redis_url))
    cascades = load_cascades(settings.cascades_dir, router.available_channels())
    runtime = Runtime(settings, cascades, engine, router, RecordingPublisher(), FakeClock())
    holder = sqlite3.connect(path, isolation_level=None)
    waits: list[float] = []

    def release(seconds: float) -> None:
        waits.append(seconds)
        holder.execute("ROLLBACK")

    with serve(create_app(runtime)) as base, CascadeClient(base, TEST_KEY, sleep=release) as client:
        client.put_customer("carol", CUSTOMER)
        holder.execute("BEGIN IMMEDIATE")
        accepted = client.send("carol", "basic", content={"text": "x"}, idempotency_key="k-1")
        assert waits == [5.0]  # the API's Retry-After
        replay = client.send("carol", "basic", content={"text": "x"}, idempotency_key="k-1")
        assert replay.id == accepted.id
    holder.close()
    engine.dispose()


def test_retry_after_is_bounded_and_connect_errors_retried():
    """Retry-After is honoured up to 30 s; a refused connection is retried with backoff;
    a 503 on the last try is the caller's error."""
    answers: Iterator[httpx.Response | Exception] = iter(
        [
            httpx.Response(503, headers={"Retry-After": "3600"}, json={"title": "busy"}),
            httpx.ConnectError("refused"),
            httpx.Response(503, json={"title": "Service unavailable", "status": 503}),
            httpx.Response(503, json={"title": "Service unavailable", "status": 503}),
        ]
    )
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    waits: list[float] = []
    transport = httpx.MockTransport(handler)
    client = CascadeClient("http://api", "k", transport=transport, sleep=waits.append)
    with client, pytest.raises(ApiError) as caught:
        client.send("a", "basic", content={"text": "x"})
    assert caught.value.status == 503
    assert waits == [30.0, 2.0, 4.0]
    assert len(keys) == 4
    assert len(set(keys)) == 1  # one Idempotency-Key for every try
