"""Bad input gets RFC 9457 problem JSON naming the field, and never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.runtime import Runtime
from tests.conftest import AUTH
from tests.simulators.server import serve
from tests.support.scenario import PHONE, put_customer


def problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    return dict(body)


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


def test_unknown_cascade_names_the_field(api: TestClient):
    """An unknown cascade is a 422 on field 'cascade' listing the known ones."""
    put_customer(api, "p1")
    body = problem(
        api.post(
            "/v1/notifications",
            json={"customer_id": "p1", "cascade": "nope", "content": {"text": "x"}},
        ),
        422,
    )
    assert fields(body) == ["cascade"]
    assert "basic" in body["detail"]


def test_unknown_customer_without_contacts(api: TestClient):
    """An unknown customer with no inline contacts is a 422 on 'customer_id'."""
    body = problem(
        api.post(
            "/v1/notifications",
            json={"customer_id": "ghost", "cascade": "basic", "content": {"text": "x"}},
        ),
        422,
    )
    assert fields(body) == ["customer_id"]


def test_inline_contacts_create_the_customer(api: TestClient):
    """Inline contacts create an unknown customer and the notification is accepted."""
    response = api.post(
        "/v1/notifications",
        json={
            "customer_id": "inline",
            "cascade": "basic",
            "content": {"text": "x"},
            "contacts": [{"channel": "sms", "address": PHONE}],
        },
    )
    assert response.status_code == 202
    assert [s["channel"] for s in response.json()["steps"]] == ["sms"]


@pytest.mark.parametrize(
    ("contact", "field"),
    [
        ({"channel": "sms", "address": "12345"}, "contacts[0].address"),
        ({"channel": "email", "address": "not-an-email"}, "contacts[0].address"),
        ({"channel": "push", "address": "short"}, "contacts[0].address"),
        ({"channel": "pigeon", "address": "x"}, "contacts[0].channel"),
    ],
)
def test_invalid_contact_names_the_field(api: TestClient, contact: dict[str, str], field: str):
    """An invalid phone, e-mail, token or channel is a 422 naming contacts[i].field."""
    body = problem(api.put("/v1/customers/p2", json={"contacts": [contact]}), 422)
    assert fields(body) == [field]
    assert api.get("/v1/customers/p2").status_code == 404  # nothing half-written


def test_missing_and_wrong_auth(api: TestClient):
    """No key or a wrong key is a 401 with WWW-Authenticate."""
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer wrong-key-000"},
        {"Authorization": "Basic x"},
    ):
        response = api.get("/v1/cascades", headers=headers)
        body = problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert body["title"] == "Unauthorized"


def test_oversized_body_is_413(api: TestClient):
    """A body over the limit is refused with 413 before it is parsed."""
    huge = {"customer_id": "p3", "cascade": "basic", "content": {"text": "x" * 70_000}}
    body = problem(api.post("/v1/notifications", json=huge), 413)
    assert "limit" in body["detail"]


def test_malformed_json_and_missing_fields(api: TestClient):
    """Broken JSON and missing fields are 422s naming the place."""
    body = problem(
        api.post(
            "/v1/notifications", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )
    assert body["errors"]
    body = problem(
        api.post("/v1/notifications", json={"cascade": "basic", "content": {"text": "x"}}), 422
    )
    assert fields(body) == ["customer_id"]
    body = problem(
        api.post("/v1/notifications", json={"customer_id": "a", "cascade": "basic"}), 422
    )
    assert "content" in body["detail"]


def test_template_missing_data_is_422(api: TestClient):
    """A template variable the request did not supply is a 422 on 'data', nothing stored."""
    put_customer(api, "p4")
    body = problem(
        api.post(
            "/v1/notifications",
            json={
                "customer_id": "p4",
                "cascade": "basic",
                "template": "order",
                "data": {"order_id": 7},
            },
        ),
        422,
    )
    assert fields(body) == ["data"]
    assert "status" in body["detail"]
    assert api.get("/v1/customers/p4/history").json() == []


def test_unknown_ids_are_404(api: TestClient):
    """Unknown notification, customer and cascade ids are 404 problems."""
    problem(api.get("/v1/notifications/00000000-0000-0000-0000-000000000000"), 404)
    problem(api.get("/v1/customers/nobody"), 404)
    problem(api.get("/v1/cascades/nope"), 404)
    problem(api.post("/v1/webhooks/nope", content=b"{}"), 404)


def test_bad_preferences_are_422(api: TestClient):
    """Repeated channels in channel_order and an unknown time zone name their field."""
    body = problem(
        api.put("/v1/customers/p5", json={"preferences": {"channel_order": ["sms", "sms"]}}), 422
    )
    assert fields(body) == ["preferences.channel_order"]
    body = problem(api.put("/v1/customers/p5", json={"timezone": "Mars/Olympus"}), 422)
    assert fields(body) == ["timezone"]


def chunks(total: int) -> Iterator[bytes]:
    """A JSON body sent in 8 KB chunks with no Content-Length (Transfer-Encoding: chunked)."""
    yield b'{"customer_id": "p6", "cascade": "basic", "content": {"text": "'
    for _ in range(total // 8192):
        yield b"x" * 8192
    yield b'"}}'


@pytest.mark.parametrize("path", ["/v1/notifications", "/v1/receipts"])
def test_chunked_oversized_body_is_413_over_real_http(runtime: Runtime, path: str):
    """A chunked body over the limit is a 413 problem (not a 400), through real uvicorn."""
    with serve(create_app(runtime)) as url:
        response = httpx.post(url + path, content=chunks(200_000), headers=AUTH, timeout=30)
        assert "content-length" not in response.request.headers
        body = problem(response, 413)
        assert "limit" in body["detail"]
        small = httpx.post(url + path, content=chunks(100), headers=AUTH, timeout=30)
        assert small.status_code != 413


def test_chunked_oversized_body_is_413_through_asgi(runtime: Runtime):
    """The same at the ASGI level: the body arrives as several http.request messages."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks(200_000):
            yield chunk

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post("/v1/notifications", content=body(), headers=AUTH)

    problem(asyncio.run(post()), 413)


NUL_TEXT = {"customer_id": "p7", "cascade": "basic", "content": {"text": "a\u0000b"}}


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("post", "/v1/notifications", NUL_TEXT, "content.text"),
        (
            "post",
            "/v1/notifications",
            b'{"customer_id": "p7", "cascade": "basic", "content": {"text": "\\ud800"}}',
            "content.text",
        ),
        ("put", "/v1/customers/p7", {"locale": "\u0000"}, "locale"),
        (
            "put",
            "/v1/customers/p7",
            {"preferences": {"opt_out_categories": ["x\u0000"]}},
            "preferences.opt_out_categories",
        ),
        (
            "patch",
            "/v1/customers/p7/preferences",
            {"max_per_day": {"\u0000": 1}},
            "max_per_day",
        ),
        (
            "put",
            "/v1/customers/p7",
            {"preferences": {"quiet_hours": {"start": "22:00+09:00", "end": "07:00"}}},
            "preferences.quiet_hours.start",
        ),
    ],
)
def test_text_the_database_cannot_store_is_422(
    api: TestClient, method: str, path: str, payload: Any, field: str
):
    """Found by the schemathesis run: NUL characters and lone surrogates (PostgreSQL and
    SQLite cannot store them) and quiet hours with a UTC offset (they are local times)."""
    put_customer(api, "p7")
    if isinstance(payload, bytes):
        response = api.request(
            method, path, content=payload, headers={"content-type": "application/json"}
        )
    else:
        response = api.request(method, path, json=payload)
    body = problem(response, 422)
    assert fields(body) == [field]


@pytest.mark.parametrize(
    "query",
    [
        {"since": "0001-01-01T00:00:00Z", "until": "0001-01-01T00:00:00Z"},
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "9999-12-31T23:59:59Z"},
        {"cascade": "a\u0000"},
    ],
)
def test_stats_extreme_query_is_not_a_server_error(api: TestClient, query: dict[str, str]):
    """Found by the schemathesis run: the edges of the calendar and NUL in a filter."""
    response = api.get("/v1/stats", params=query)
    assert response.status_code in (200, 422), response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/notifications/a%00b"),
        ("post", "/v1/notifications/a%00b/cancel"),
        ("get", "/v1/notifications/" + "x" * 300),
    ],
)
def test_notification_ids_are_checked_before_the_database(api: TestClient, method: str, path: str):
    """Found by the schemathesis run: a NUL in a path id was a 500 on PostgreSQL."""
    body = problem(api.request(method, path), 422)
    assert fields(body) == ["notification_id"]
