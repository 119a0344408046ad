"""Small steps that read like the scenario: a customer, a notification, its attempts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

PHONE = "+14155552671"
EMAIL = "alice@example.com"
PUSH_TOKEN = "fcm-token-" + "a" * 40
TEXT = "Your parcel 7731 is at the door"

ALL_CONTACTS = [
    {"channel": "push", "address": PUSH_TOKEN},
    {"channel": "whatsapp", "address": PHONE},
    {"channel": "email", "address": EMAIL},
    {"channel": "sms", "address": PHONE},
]


def put_customer(
    api: TestClient,
    customer_id: str,
    contacts: list[dict[str, str]] | None = None,
    **preferences: Any,
) -> dict[str, Any]:
    response = api.put(
        f"/v1/customers/{customer_id}",
        json={
            "contacts": ALL_CONTACTS if contacts is None else contacts,
            "preferences": preferences,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def send(api: TestClient, customer_id: str, cascade: str = "basic", **extra: Any) -> dict[str, Any]:
    body = {
        "customer_id": customer_id,
        "cascade": cascade,
        "content": {"title": "Parcel", "text": TEXT},
    }
    body.update(extra)
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def show(api: TestClient, notification_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/notifications/{notification_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def attempts(api: TestClient, notification_id: str) -> list[tuple[str, str]]:
    """(channel, state) of each attempt in step order."""
    return [(a["channel"], a["state"]) for a in show(api, notification_id)["attempts"]]


def receipt(api: TestClient, attempt_id: str, status: str = "read") -> dict[str, Any]:
    response = api.post("/v1/receipts", json={"attempt_id": attempt_id, "status": status})
    assert response.status_code == 200, response.text
    return dict(response.json())


def outbox(path: Path) -> list[dict[str, str]]:
    """What the sandbox providers sent (one line per provider call)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sends_for(path: Path, attempt_ids: set[str]) -> list[dict[str, str]]:
    return [line for line in outbox(path) if line["reference"] in attempt_ids]
