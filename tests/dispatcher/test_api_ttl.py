"""The ``ttl`` of a notification: 1 s to 30 days, short form, seconds or ISO 8601."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.support.clock import FakeClock
from tests.support.scenario import put_customer, show

BODY = '{"customer_id": "t1", "cascade": "basic", "content": {"text": "x"}, "ttl": %s}'


@pytest.mark.parametrize(
    "ttl",
    [
        '"999999999d"',
        '"99999999999d"',
        "1e300",
        "Infinity",
        "-Infinity",
        "NaN",
        "0",
        '"0s"',
        "1e-9",
        "0.5",
        "-300",
        '"-5m"',
        '"31d"',
        "2592001",
        '"P1Y"',
        '"PT0S"',
        '"soon"',
        "true",
        "[]",
    ],
)
def test_bad_ttl_is_422_naming_ttl(api: TestClient, ttl: str):
    """Out of range, non-finite or malformed TTLs are refused on field 'ttl', nothing stored."""
    put_customer(api, "t1")
    response = api.post(
        "/v1/notifications",
        content=(BODY % ttl).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["ttl"]
    assert api.get("/v1/customers/t1/history").json() == []


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [
        ('"PT10M"', 600),
        ('"P1DT2H"', 93600),
        ('"90s"', 90),
        ('"2h"', 7200),
        ("1", 1),
        ("45.5", 45.5),
        ('"30d"', 30 * 86400),
        ('"P30D"', 30 * 86400),
    ],
)
def test_ttl_sets_expiry(api: TestClient, clock: FakeClock, ttl: str, seconds: float):
    """A valid TTL in any accepted form sets expires_at = now + ttl."""
    put_customer(api, "t1")
    response = api.post(
        "/v1/notifications",
        content=(BODY % ttl).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    expires = datetime.fromisoformat(show(api, response.json()["id"])["expires_at"])
    assert abs((expires - clock()) - timedelta(seconds=seconds)) < timedelta(milliseconds=1)


def test_ttl_is_documented_as_a_bounded_duration(api: TestClient):
    """The OpenAPI says what ttl accepts: a duration string or seconds within the range."""
    schema = api.get("/openapi.json").json()["components"]["schemas"]["NotificationIn"]
    ttl = json.dumps(schema["properties"]["ttl"])
    assert '"format": "duration"' in ttl
    assert '"maximum": 2592000' in ttl
    assert '"minimum": 1' in ttl
