"""SSRF at the door: Web Push endpoints on private or local IP literals are refused.

Host names are resolved and checked by the provider at send time
(tests/providers/test_webpush.py); here the cheap check at contact upsert.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from dispatcher.addresses import AddressError, normalize
from providers.base import Channel


def subscription(endpoint: str) -> str:
    return json.dumps({"endpoint": endpoint, "keys": {"p256dh": "BPx", "auth": "xyz"}})


PRIVATE = [
    "https://127.0.0.1/push/1",
    "https://10.0.0.8:8443/push/1",
    "https://169.254.169.254/latest/meta-data",
    "https://192.168.0.1/x",
    "https://100.64.0.1/x",
    "https://0.0.0.0/x",
    "https://224.0.0.1/x",
    "https://[::1]/x",
    "https://[fe80::1]/x",
    "https://[::ffff:10.0.0.1]/x",
]


@pytest.mark.parametrize("endpoint", PRIVATE)
def test_private_ip_literal_endpoints_are_refused(endpoint: str):
    """An https endpoint on a non-public IP literal is not a valid push address."""
    with pytest.raises(AddressError, match="private or local"):
        normalize(Channel.PUSH, subscription(endpoint))


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/abc",
        "https://93.184.216.34/push/1",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/push/1",
        "http://127.0.0.1:9/push/1",  # plain http: local tests only, checked at send time
    ],
)
def test_public_and_named_endpoints_pass(endpoint: str):
    """Public literals and names pass here (names are checked when sending)."""
    assert normalize(Channel.PUSH, subscription(endpoint)) == subscription(endpoint)


def test_upsert_names_the_field(api: TestClient):
    """PUT /v1/customers with such an endpoint: 422 naming the contact's address."""
    contacts = [{"channel": "push", "address": subscription(PRIVATE[2])}]
    response = api.put("/v1/customers/ssrf-1", json={"contacts": contacts})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "contacts[0].address"
    assert api.get("/v1/customers/ssrf-1").status_code == 404
