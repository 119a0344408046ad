"""Viber provider: exact requests, body ``status`` mapping, the simulator, signed callbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.base import Message, ReceiptKind
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.viber import ViberConfig, ViberProvider
from tests.providers.messenger_support import (
    no_retry_wait,
    reply,
    running,
    scripted,
    webhook_request,
)
from tests.simulators import viber as sim
from tests.simulators.server import serve

BASE = "https://viber.example"
TOKEN = "4453b6ac1s345678-e02c5f12174805f9-daec29b3bc6f1d2b"
USER = "01234567890A="
BIG = 5741311803571721087  # > 2**53: a float would round it
MESSAGE = Message(
    recipient=USER, text="Your parcel is here", reference="att-3", idempotency_key="k"
)


def config(**overrides: Any) -> ViberConfig:
    values: dict[str, Any] = {
        "base_url": BASE,
        "auth_token": SecretStr(TOKEN),
        "sender_name": "Shop",
    }
    return ViberConfig(**{**values, **overrides})


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    no_retry_wait(monkeypatch, ViberProvider._post)


def test_send_posts_exact_request_and_keeps_64_bit_token() -> None:
    """POST /pa/send_message with the auth header and body; the token stays exact."""
    ok = b'{"status":0,"status_message":"ok","message_token":5741311803571721087}'
    with scripted(reply(200, ok)) as (client, script):
        result = ViberProvider(config(), client).send(MESSAGE)
    assert result.provider_message_id == "5741311803571721087"
    assert result.cost is None
    assert str(script.last.url) == f"{BASE}/pa/send_message"
    assert script.last.headers["x-viber-auth-token"] == TOKEN
    assert script.last.extensions["timeout"]["read"] == 15.0
    assert script.json() == {
        "receiver": USER,
        "min_api_version": 1,
        "sender": {"name": "Shop"},
        "tracking_data": "att-3",
        "type": "text",
        "text": "Your parcel is here",
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (1, ProviderConfigError),
        (2, ProviderConfigError),
        (3, ProviderConfigError),
        (5, InvalidAddressError),
        (6, InvalidAddressError),
        (7, ProviderConfigError),
        (10, ProviderConfigError),
        (11, RejectedError),
        (12, NotSentError),
        (13, ProviderConfigError),
        (21, RejectedError),
        (24, ProviderConfigError),
        (99, NotSentError),
    ],
)
def test_body_status_maps_to_error(status: int, expected: type[ProviderError]) -> None:
    """HTTP 200 with a non-zero body ``status`` is classified by the table."""
    body = {"status": status, "status_message": "whatever"}
    with scripted(reply(200, body)) as (client, _), pytest.raises(ProviderError) as caught:
        ViberProvider(config(), client).send(MESSAGE)
    assert type(caught.value) is expected
    assert caught.value.code == str(status)
    assert USER not in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("response", "expected", "attempts"),
    [
        (reply(200, b"<html>oops</html>"), UnknownOutcomeError, 1),
        (reply(200, {"status": 0, "status_message": "ok"}), UnknownOutcomeError, 1),
        (reply(200, {"status": 0, "message_token": 1.5e18}), UnknownOutcomeError, 1),
        (reply(502, b"bad gateway"), UnknownOutcomeError, 1),
        (reply(503, b""), NotSentError, 3),
        (httpx.ReadTimeout("slow"), UnknownOutcomeError, 1),
        (httpx.ConnectTimeout("down"), NotSentError, 3),
        (reply(200, {"status": 12, "status_message": "tooManyRequests"}), NotSentError, 3),
    ],
)
def test_transport_and_odd_answers(
    response: httpx.Response | Exception, expected: type[ProviderError], attempts: int
) -> None:
    """Unreadable or id-less answers are Unknown; only NotSent is retried quickly."""
    with scripted(response) as (client, script), pytest.raises(ProviderError) as caught:
        ViberProvider(config(), client).send(MESSAGE)
    assert type(caught.value) is expected
    assert len(script.requests) == attempts


# --- against the simulator, over real HTTP -------------------------------------------


def sim_provider(base: str, client: httpx.Client, **overrides: Any) -> ViberProvider:
    values: dict[str, Any] = {
        "base_url": base,
        "auth_token": SecretStr(sim.AUTH_TOKEN),
        "timeout": 2.0,
    }
    return ViberProvider(ViberConfig(**{**values, **overrides}), client)


def to(receiver: str) -> Message:
    return Message(recipient=receiver, text="t", reference="r", idempotency_key="k")


def test_simulator_send_and_errors() -> None:
    """Real HTTP: success with an exact 64-bit token; unsubscribed, throttled, bad token."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client:
        provider = sim_provider(base, client)
        first = provider.send(MESSAGE)
        recorded = client.get(f"{base}/_sim/requests").json()["requests"]
        with pytest.raises(InvalidAddressError):
            provider.send(to("not-subscribed"))
        with pytest.raises(NotSentError):
            provider.send(to("throttled"))
        with pytest.raises(ProviderConfigError):
            sim_provider(base, client, auth_token=SecretStr("wrong")).send(MESSAGE)
    assert first.provider_message_id == str(sim.FIRST_TOKEN)
    assert app.sent[0]["tracking_data"] == "att-3"
    assert len(app.requests) == 1 + 1 + 3 + 1  # throttled was retried quickly
    assert [r["path"] for r in recorded] == ["/pa/send_message"]


def test_simulator_requires_webhook_when_asked() -> None:
    """Like the real service, sending before set_webhook is a config error (status 10)."""
    app = sim.create_app(require_webhook=True)
    with (
        serve(app) as base,
        httpx.Client() as client,
        pytest.raises(ProviderConfigError) as caught,
    ):
        sim_provider(base, client).send(MESSAGE)
    assert caught.value.code == "10"


def test_simulator_hang_is_unknown_outcome() -> None:
    """A request the service never answers raises UnknownOutcomeError after the read timeout."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client, pytest.raises(UnknownOutcomeError):
        sim_provider(base, client, timeout=0.2).send(to("hang"))
    assert len(app.requests) == 1


# --- webhook ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("delivered", ReceiptKind.DELIVERED),
        ("seen", ReceiptKind.READ),
        ("failed", ReceiptKind.FAILED),
    ],
)
def test_signed_callback_becomes_receipt(event: str, kind: ReceiptKind) -> None:
    """delivered/seen/failed become events with the exact token and a stable key."""
    headers, body = sim.receipt_callback(
        TOKEN, event=event, message_token=BIG, user_id=USER, timestamp=1457764197627
    )
    with scripted() as (client, _):
        provider = ViberProvider(config(), client)
        answer = provider.handle(webhook_request(body, headers))
        again = provider.handle(webhook_request(body, headers))
    (receipt,) = answer.events
    assert answer.status_code == 200
    assert receipt.kind is kind
    assert receipt.provider_message_id == str(BIG)
    assert receipt.recipient == USER
    assert receipt.occurred_at == datetime.fromtimestamp(1457764197.627, tz=UTC)
    assert receipt.event_id == again.events[0].event_id == f"{BIG}:{event}:1457764197627"


@pytest.mark.parametrize(
    "event",
    [
        {"event": "webhook", "timestamp": 1, "chat_hostname": "SN", "message_token": BIG},
        {"event": "subscribed", "timestamp": 1, "user": {"id": USER}},
        {"event": "conversation_started", "timestamp": 1, "user": {"id": USER}},
    ],
)
def test_probe_and_other_events_answer_200(event: dict[str, Any]) -> None:
    """The set_webhook probe and non-receipt events are answered 200 with no receipts."""
    headers, body = sim.signed(TOKEN, event)
    with scripted() as (client, _):
        answer = ViberProvider(config(), client).handle(webhook_request(body, headers))
    assert (answer.status_code, answer.events) == (200, ())


def _signed_delivered() -> tuple[dict[str, str], bytes]:
    return sim.receipt_callback(
        TOKEN, event="delivered", message_token=BIG, user_id=USER, timestamp=1
    )


@pytest.mark.parametrize(
    ("request_parts", "status"),
    [
        pytest.param(({}, _signed_delivered()[1]), 401, id="missing"),
        pytest.param(
            ({"X-Viber-Content-Signature": "ab" * 32}, _signed_delivered()[1]), 403, id="wrong"
        ),
        pytest.param(
            (sim.signed("another-bot", {"event": "delivered"})[0], _signed_delivered()[1]),
            403,
            id="other-key",
        ),
        pytest.param(
            (_signed_delivered()[0], _signed_delivered()[1].replace(b"delivered", b"seen")),
            403,
            id="body-altered",
        ),
    ],
)
def test_webhook_refuses_bad_signatures(
    request_parts: tuple[dict[str, str], bytes], status: int
) -> None:
    """Missing, wrong or stale signatures are refused before anything is parsed."""
    headers, body = request_parts
    with scripted() as (client, _), pytest.raises(WebhookSignatureError) as caught:
        ViberProvider(config(), client).handle(webhook_request(body, headers))
    assert caught.value.status_code == status


def test_simulator_set_webhook_and_callbacks_over_http() -> None:
    """set_webhook's signed probe is accepted; delivered and read arrive through real HTTP."""
    app = sim.create_app()
    with scripted() as (unused, _):
        receiver = ViberProvider(config(auth_token=SecretStr(sim.AUTH_TOKEN)), unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        headers = {"X-Viber-Auth-Token": sim.AUTH_TOKEN}
        hooked = client.post(f"{base}/pa/set_webhook", json={"url": hook}, headers=headers)
        sent = sim_provider(base, client).send(MESSAGE)
        token = sent.provider_message_id
        delivered = client.post(f"{base}/_sim/callback", json={"message_id": token})
        read = client.post(f"{base}/_sim/callback", json={"message_id": token, "status": "read"})
        forged = client.post(f"{base}/_sim/callback", json={"message_id": token, "auth_token": "x"})
    assert hooked.json()["status"] == 0
    assert [delivered.json()["status_code"], read.json()["status_code"]] == [200, 200]
    assert forged.json()["status_code"] == 403
    assert [(e.kind, e.provider_message_id) for e in received.events] == [
        (ReceiptKind.DELIVERED, token),
        (ReceiptKind.READ, token),
    ]
    assert len(received.replies) == 3  # the probe, delivered, seen


def test_simulator_set_webhook_fails_when_probe_is_refused() -> None:
    """A receiver that does not verify as this bot makes set_webhook fail (invalidUrl)."""
    app = sim.create_app()
    with scripted() as (unused, _):
        receiver = ViberProvider(config(auth_token=SecretStr("another-bot")), unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        headers = {"X-Viber-Auth-Token": sim.AUTH_TOKEN}
        hooked = client.post(f"{base}/pa/set_webhook", json={"url": hook}, headers=headers)
    assert hooked.json()["status"] == 1
    assert received.refused == [403]
