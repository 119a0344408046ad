"""``POST /v1/receipts``: authenticate before looking anything up; event ids per attempt."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher.dispatch import send_attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime
from dispatcher.tokens import receipt_token
from tests.support.scenario import put_customer, send, show

NO_KEY = {"Authorization": ""}
UNKNOWN = "00000000-0000-0000-0000-000000000000"


def sent_push(runtime: Runtime, api: TestClient, customer_id: str) -> dict[str, Any]:
    """A notification whose push attempt was really sent (sandbox); returns that attempt."""
    put_customer(api, customer_id)
    notification_id = send(api, customer_id)["id"]
    publisher = runtime.publisher
    assert isinstance(publisher, RecordingPublisher)
    for bell in publisher.published:
        send_attempt(runtime, bell.attempt_id)
    publisher.published.clear()
    attempt = dict(show(api, notification_id)["attempts"][0])
    assert (attempt["channel"], attempt["state"]) == ("push", "sent")
    return attempt | {"notification_id": notification_id}


def token(runtime: Runtime, attempt_id: str) -> str:
    return receipt_token(runtime.settings.effective_receipt_secret, attempt_id)


def refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    return {k: v for k, v in response.json().items() if k != "instance"}


def test_unauthenticated_answer_does_not_reveal_whether_the_attempt_exists(
    runtime: Runtime, api: TestClient
):
    """Without a key or valid token: the same 401 for a real and an unknown attempt."""
    real = sent_push(runtime, api, "rc1")
    answers = [
        refused(api.post("/v1/receipts", json=body, headers=NO_KEY))
        for body in (
            {"attempt_id": real["id"], "status": "read"},
            {"attempt_id": UNKNOWN, "status": "read"},
            {"attempt_id": real["id"], "status": "read", "token": "0" * 32},
            {"attempt_id": UNKNOWN, "status": "read", "token": "0" * 32},
            {"notification_id": real["notification_id"], "status": "read", "token": "0" * 32},
            {"notification_id": UNKNOWN, "status": "read", "token": "0" * 32},
            {"notification_id": real["notification_id"], "status": "read"},
        )
    ]
    assert all(answer == answers[0] for answer in answers)
    assert show(api, real["notification_id"])["state"] == "in_progress"


def test_authenticated_lookups(runtime: Runtime, api: TestClient):
    """With the API key an unknown attempt is a 404; a valid token alone is enough to apply."""
    unknown = api.post("/v1/receipts", json={"attempt_id": UNKNOWN, "status": "read"})
    assert unknown.status_code == 404
    real = sent_push(runtime, api, "rc2")
    by_notification = api.post(
        "/v1/receipts",
        json={
            "notification_id": real["notification_id"],
            "status": "delivered",
            "token": token(runtime, real["id"]),
        },
        headers=NO_KEY,
    )
    assert by_notification.status_code == 200, by_notification.text
    by_attempt = api.post(
        "/v1/receipts",
        json={"attempt_id": real["id"], "status": "read", "token": token(runtime, real["id"])},
        headers=NO_KEY,
    )
    assert by_attempt.json() == {"outcome": "finished", "notification_state": "read"}


@pytest.mark.parametrize("stolen", ["{victim}:read", "{victim}", "{victim}:client:x"])
def test_client_event_id_cannot_preclaim_another_attempts_receipt(
    runtime: Runtime, api: TestClient, stolen: str
):
    """An app with a token for its own attempt cannot block the receipt of someone else's."""
    mine = sent_push(runtime, api, "rc3")
    victim = sent_push(runtime, api, "rc4")
    claim = api.post(
        "/v1/receipts",
        json={
            "attempt_id": mine["id"],
            "status": "read",
            "token": token(runtime, mine["id"]),
            "event_id": stolen.format(victim=victim["id"]),
        },
        headers=NO_KEY,
    )
    assert claim.status_code == 200
    legit = api.post(
        "/v1/receipts",
        json={"attempt_id": victim["id"], "status": "read", "token": token(runtime, victim["id"])},
        headers=NO_KEY,
    )
    assert legit.json() == {"outcome": "finished", "notification_state": "read"}
    assert show(api, victim["notification_id"])["state"] == "read"


def test_client_event_id_still_deduplicates_its_own_attempt(runtime: Runtime, api: TestClient):
    """The same client event id twice for one attempt is applied once."""
    mine = sent_push(runtime, api, "rc5")
    body = {
        "attempt_id": mine["id"],
        "status": "delivered",
        "token": token(runtime, mine["id"]),
        "event_id": "evt-1",
    }
    first = api.post("/v1/receipts", json=body, headers=NO_KEY).json()
    again = api.post("/v1/receipts", json=body, headers=NO_KEY).json()
    assert (first["outcome"], again["outcome"]) == ("applied", "duplicate")


def test_non_ascii_token_is_refused_not_a_crash(api: TestClient):
    """A token with non-ASCII characters (hmac.compare_digest raises on them) is a 422."""
    response = api.post(
        "/v1/receipts",
        json={"attempt_id": UNKNOWN, "status": "read", "token": "ключ"},
        headers=NO_KEY,
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["token"]
