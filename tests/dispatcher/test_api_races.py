"""Concurrent requests creating the same new customer: all succeed, nothing is duplicated.

The requests go over real HTTP to a real uvicorn, from threads released together, so
on PostgreSQL their transactions really overlap (SQLite serialises writers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from dispatcher.api.app import create_app
from dispatcher.customer_tables import ContactPoint, Customer
from dispatcher.models import Notification
from dispatcher.runtime import Runtime
from tests.conftest import AUTH
from tests.simulators.server import serve
from tests.support.scenario import EMAIL, PHONE

WAYS = 8
ROUNDS = 3
CONTACTS = [{"channel": "sms", "address": PHONE}, {"channel": "email", "address": EMAIL}]


@pytest.fixture(name="base_url")
def _base_url(runtime: Runtime) -> Iterator[str]:
    with serve(create_app(runtime)) as url:
        yield url


def race(call: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """Run ``call`` from WAYS threads released at once; each thread has its own client."""
    barrier = threading.Barrier(WAYS)
    results: list[httpx.Response | BaseException] = [RuntimeError("not run")] * WAYS

    def run(index: int) -> None:
        with httpx.Client(headers=AUTH, timeout=60) as client:
            barrier.wait()
            try:
                results[index] = call(client)
            except BaseException as exc:
                results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WAYS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    responses = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        responses.append(result)
    return responses


def counts(engine: Engine, customer_id: str) -> tuple[int, list[tuple[str, str]], int]:
    with Session(engine) as session:
        customers = session.exec(
            select(func.count()).select_from(Customer).where(Customer.id == customer_id)
        ).one()
        contacts = session.exec(
            select(ContactPoint.channel, ContactPoint.address)
            .where(ContactPoint.customer_id == customer_id)
            .order_by(ContactPoint.channel)
        ).all()
        notifications = session.exec(
            select(func.count())
            .select_from(Notification)
            .where(Notification.customer_id == customer_id)
        ).one()
    return int(customers), [(c, a) for c, a in contacts], int(notifications)


def test_concurrent_sends_creating_one_customer_all_succeed(base_url: str, db_engine: Engine):
    """8-way POSTs with inline contacts and no Idempotency-Key: all 202, one customer."""
    for round_ in range(ROUNDS):
        customer_id = f"racer-{round_}"
        body = {
            "customer_id": customer_id,
            "cascade": "basic",
            "content": {"text": "x"},
            "contacts": CONTACTS,
        }
        responses = race(lambda c, b=body: c.post(f"{base_url}/v1/notifications", json=b))  # type: ignore[misc]
        assert [r.status_code for r in responses] == [202] * WAYS, [r.text for r in responses]
        customers, contacts, notifications = counts(db_engine, customer_id)
        assert customers == 1
        assert contacts == [("email", EMAIL), ("sms", PHONE)]
        assert notifications == WAYS


def test_concurrent_puts_of_one_new_customer_all_succeed(base_url: str, db_engine: Engine):
    """8-way PUT /v1/customers/{id} of a new customer: all 200, contacts stored once."""
    for round_ in range(ROUNDS):
        customer_id = f"putter-{round_}"
        url = f"{base_url}/v1/customers/{customer_id}"
        body = {"contacts": CONTACTS, "preferences": {"channel_order": ["email", "sms"]}}
        responses = race(lambda c, u=url, b=body: c.put(u, json=b))  # type: ignore[misc]
        assert [r.status_code for r in responses] == [200] * WAYS, [r.text for r in responses]
        customers, contacts, _ = counts(db_engine, customer_id)
        assert customers == 1
        assert contacts == [("email", EMAIL), ("sms", PHONE)]
        shown = httpx.get(url, headers=AUTH).json()
        assert sorted(c["channel"] for c in shown["contacts"]) == ["email", "sms"]
