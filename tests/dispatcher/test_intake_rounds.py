"""API intake in rounds (group commit): requests arriving together share one transaction."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from dispatcher.customers import FieldError
from dispatcher.intake import Request, accept_round
from dispatcher.models import Notification
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime
from dispatcher.schemas import NotificationIn
from tests.support.dispatching import Make
from tests.support.scenario import TEXT, put_customer, show


def _request(
    runtime: Runtime, customer: str, cascade: str = "basic", key: str | None = None
) -> Request:
    body = NotificationIn.model_validate(
        {"customer_id": customer, "cascade": cascade, "content": {"text": TEXT}}
    )
    return Request(body, "key-1", key, runtime.now())


def test_one_round_accepts_every_request_and_rings_after_commit(make: Make):
    runtime, api = make()
    for name in ("a", "b", "c"):
        put_customer(api, name)
    accepted = accept_round(runtime, [_request(runtime, n) for n in ("a", "b", "c")])
    assert [a.notification.customer_id for a in accepted] == ["a", "b", "c"]
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    assert len(publisher.published) == 3  # one doorbell each, rung once the round committed
    for one in accepted:
        assert show(api, one.notification.id)["state"] == "accepted"


def test_a_round_with_a_bad_request_stores_nothing(make: Make):
    """The round rolls back; the batch then runs each request alone (test_batch.py)."""
    runtime, api = make()
    put_customer(api, "a")
    with pytest.raises(FieldError):
        accept_round(runtime, [_request(runtime, "a"), _request(runtime, "a", cascade="nope")])
    assert runtime.publisher.published == []  # type: ignore[attr-defined]
    with Session(runtime.engine) as session:
        assert session.exec(select(func.count()).select_from(Notification)).one() == 0


def test_the_same_idempotency_key_twice_in_one_round_is_one_notification(make: Make):
    runtime, api = make()
    put_customer(api, "a")
    first, second = accept_round(
        runtime, [_request(runtime, "a", key="k-1"), _request(runtime, "a", key="k-1")]
    )
    assert first.notification.id == second.notification.id
    assert (first.replayed, second.replayed) == (False, True)
    assert len(runtime.publisher.published) == 1  # type: ignore[attr-defined]


def test_concurrent_posts_each_get_their_own_answer(make: Make):
    """Real threads through the API: good requests are accepted, bad ones answer their 422."""
    runtime, api = make()
    for i in range(6):
        put_customer(api, f"c{i}")
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def post(i: int) -> None:
        cascade = "basic" if i % 2 == 0 else "missing"
        body = {"customer_id": f"c{i // 2}", "cascade": cascade, "content": {"text": TEXT}}
        start.wait(10)
        status = api.post("/v1/notifications", json=body).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert Counter(statuses) == {202: 6, 422: 6}
    assert len(runtime.publisher.published) == 6  # type: ignore[attr-defined]
