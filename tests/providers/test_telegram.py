"""Telegram provider: exact requests, error mapping, the simulator, button-press receipts."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers._messaging import AckSigner
from providers.base import Message, ReceiptKind, Reports, Signal
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.telegram import TelegramConfig, TelegramProvider
from tests.providers.messenger_support import (
    NOW,
    no_retry_wait,
    reply,
    running,
    scripted,
    webhook_request,
)
from tests.simulators import telegram as sim
from tests.simulators.server import serve

TOKEN = "987654:AAE-real-looking-token"
HOOK_SECRET = "hook-secret-0123"
ACK_KEY = "ack-key-0123"
SIGNER = AckSigner(ACK_KEY.encode(), "telegram-ack")
ACK = SIGNER.payload("att-1")  #: the button payload of MESSAGE
BASE = "https://telegram.example"
CHAT = "123456789"
MESSAGE = Message(
    recipient=CHAT, text="Your parcel is at the door", reference="att-1", idempotency_key="k-1"
)
OK = {"ok": True, "result": {"message_id": 4711, "date": 1, "chat": {"id": 123456789}}}


def config(**overrides: Any) -> TelegramConfig:
    values: dict[str, Any] = {
        "base_url": BASE,
        "token": SecretStr(TOKEN),
        "webhook_secret": SecretStr(HOOK_SECRET),
        "ack_key": SecretStr(ACK_KEY),
    }
    return TelegramConfig(**{**values, **overrides})


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    no_retry_wait(monkeypatch, TelegramProvider._post)


def test_send_posts_exact_request() -> None:
    """sendMessage goes to /bot<token>/sendMessage with chat, text and the ack button."""
    with scripted(reply(200, OK)) as (client, script):
        result = TelegramProvider(config(), client).send(MESSAGE)
    assert result.provider_message_id == "123456789:4711"
    assert result.cost is None
    request = script.last
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/bot{TOKEN}/sendMessage"
    assert request.headers["content-type"] == "application/json"
    assert script.json() == {
        "chat_id": 123456789,
        "text": "Your parcel is at the door",
        "reply_markup": {"inline_keyboard": [[{"text": "✅ Got it", "callback_data": ACK}]]},
    }


def test_send_uses_config_timeout_and_short_connect() -> None:
    """The per-request timeout reads ``config.timeout`` and connects quickly."""
    with scripted(reply(200, OK)) as (client, script):
        TelegramProvider(config(timeout=7.5), client).send(MESSAGE)
    timeout = script.last.extensions["timeout"]
    assert timeout["read"] == 7.5
    assert timeout["connect"] <= 3.0


def test_send_without_button_when_disabled_or_reference_too_long() -> None:
    """No button if disabled, or if ``ack:<reference>:<mac>`` exceeds Telegram's 64 bytes."""
    long_ref = Message(recipient=CHAT, text="t", reference="r" * 44, idempotency_key="k")
    with scripted(reply(200, OK)) as (client, script):
        TelegramProvider(config(ack_button=None), client).send(MESSAGE)
        assert "reply_markup" not in script.json()
        TelegramProvider(config(), client).send(long_ref)
        assert "reply_markup" not in script.json()


@pytest.mark.parametrize(
    ("status", "body", "expected", "code", "retry_after"),
    [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 17",
                "parameters": {"retry_after": 17},
            },
            NotSentError,
            "429",
            17.0,
        ),
        (
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            },
            InvalidAddressError,
            "403",
            None,
        ),
        (
            403,
            {"ok": False, "error_code": 403, "description": "Forbidden: user is deactivated"},
            InvalidAddressError,
            "403",
            None,
        ),
        (
            400,
            {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            InvalidAddressError,
            "400",
            None,
        ),
        (
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": {"migrate_to_chat_id": -1001234},
            },
            InvalidAddressError,
            "migrated",
            None,
        ),
        (
            400,
            {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
            RejectedError,
            "400",
            None,
        ),
        (
            401,
            {"ok": False, "error_code": 401, "description": "Unauthorized"},
            ProviderConfigError,
            "401",
            None,
        ),
        (
            404,
            {"ok": False, "error_code": 404, "description": "Not Found"},
            ProviderConfigError,
            "404",
            None,
        ),
        (502, b"<html>502 Bad Gateway</html>", UnknownOutcomeError, "502", None),
        (503, b"", NotSentError, "503", None),
        (200, {"ok": True, "result": {}}, UnknownOutcomeError, "no_id", None),
        (200, b"not json", UnknownOutcomeError, None, None),
    ],
)
def test_send_maps_error_responses(
    status: int,
    body: Any,
    expected: type[ProviderError],
    code: str | None,
    retry_after: float | None,
) -> None:
    """Each documented answer becomes the right error, without token or chat id in it."""
    with scripted(reply(status, body)) as (client, _), pytest.raises(ProviderError) as caught:
        TelegramProvider(config(), client).send(MESSAGE)
    assert type(caught.value) is expected
    assert caught.value.code == code
    if isinstance(caught.value, NotSentError):
        assert caught.value.retry_after == retry_after
    assert TOKEN not in str(caught.value)
    assert CHAT not in str(caught.value)


def test_refusal_keeps_the_category_but_not_the_details() -> None:
    """A 400's description is cut to its category, so message fragments stay out."""
    detail = 'Bad Request: can\'t parse entities: Unsupported start tag "secret" at byte 5'
    body = {"ok": False, "error_code": 400, "description": detail}
    with scripted(reply(400, body)) as (client, _), pytest.raises(RejectedError) as caught:
        TelegramProvider(config(), client).send(MESSAGE)
    assert "can't parse entities" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_short_flood_wait_is_retried_quickly() -> None:
    """A 429 asking for <= 2 s is retried inside the provider, then succeeds."""
    flood = {"ok": False, "error_code": 429, "description": "x", "parameters": {"retry_after": 1}}
    with scripted(reply(429, flood), reply(200, OK)) as (client, script):
        result = TelegramProvider(config(), client).send(MESSAGE)
    assert result.provider_message_id == "123456789:4711"
    assert len(script.requests) == 2


def test_long_flood_wait_is_left_to_the_dispatcher() -> None:
    """A 429 asking for 17 s is raised after one request (the dispatcher waits)."""
    flood = {"ok": False, "error_code": 429, "description": "x", "parameters": {"retry_after": 17}}
    with scripted(reply(429, flood)) as (client, script), pytest.raises(NotSentError):
        TelegramProvider(config(), client).send(MESSAGE)
    assert len(script.requests) == 1


def test_transport_errors_map_to_not_sent_and_unknown() -> None:
    """Connect errors are retried then NotSent; a read timeout is Unknown and not retried."""
    refused = httpx.ConnectError("refused")
    with scripted(refused) as (client, script), pytest.raises(NotSentError):
        TelegramProvider(config(), client).send(MESSAGE)
    assert len(script.requests) == 3
    timeout = httpx.ReadTimeout("slow")
    with scripted(timeout) as (client, script), pytest.raises(UnknownOutcomeError):
        TelegramProvider(config(), client).send(MESSAGE)
    assert len(script.requests) == 1


def test_httpx_request_log_does_not_show_the_token(caplog: pytest.LogCaptureFixture) -> None:
    """httpx's INFO "HTTP Request: POST <url>" line has the bot token masked."""
    with scripted(reply(200, OK)) as (client, _), caplog.at_level(logging.INFO, "httpx"):
        TelegramProvider(config(), client).send(MESSAGE)
    assert "sendMessage" in caplog.text
    assert TOKEN not in caplog.text
    assert "/bot<redacted>/" in caplog.text


# --- against the simulator, over real HTTP -------------------------------------------


def sim_provider(base: str, client: httpx.Client, **overrides: Any) -> TelegramProvider:
    values: dict[str, Any] = {
        "base_url": base,
        "token": SecretStr(sim.TOKEN),
        "timeout": 2.0,
        "ack_key": SecretStr(ACK_KEY),
    }
    return TelegramProvider(TelegramConfig(**{**values, **overrides}), client)


def test_simulator_send_and_errors() -> None:
    """Real HTTP: success, blocked, flood and a wrong token map as documented."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client:
        provider = sim_provider(base, client)
        first = provider.send(MESSAGE)
        recorded = client.get(f"{base}/_sim/requests").json()["requests"]
        with pytest.raises(InvalidAddressError):
            provider.send(Message(recipient="403", text="t", reference="r", idempotency_key="k"))
        with pytest.raises(NotSentError) as flood:
            provider.send(Message(recipient="429", text="t", reference="r", idempotency_key="k"))
        with pytest.raises(ProviderConfigError):
            sim_provider(base, client, token=SecretStr("1:wrong")).send(MESSAGE)
    assert first.provider_message_id == "123456789:1"
    assert flood.value.retry_after == 7.0
    sent = app.requests[0].json()
    assert sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == ACK
    assert len(app.sent) == 1
    assert [r["path"] for r in recorded] == [f"/bot{sim.TOKEN}/sendMessage"]


def test_simulator_hang_is_unknown_outcome() -> None:
    """A request the service never answers raises UnknownOutcomeError after the read timeout."""
    app = sim.create_app()
    hanging = Message(recipient="408", text="t", reference="r", idempotency_key="k")
    with serve(app) as base, httpx.Client() as client, pytest.raises(UnknownOutcomeError):
        sim_provider(base, client, timeout=0.2).send(hanging)
    assert len(app.requests) == 1


# --- webhook ---------------------------------------------------------------------------


def press(secret: str = HOOK_SECRET, data: str = ACK) -> tuple[dict[str, str], bytes]:
    return sim.callback_update(
        secret=secret, chat_id=123456789, message_id=4711, data=data, query_id="q-77"
    )


def test_button_press_becomes_read_receipt() -> None:
    """A verified ``ack:`` callback is one READ event for the reference, answered inline."""
    headers, body = press()
    with scripted() as (client, _):
        provider = TelegramProvider(config(), client)
        first = provider.handle(webhook_request(body, headers))
        again = provider.handle(webhook_request(body, headers))
    (event,) = first.events
    assert event.kind is ReceiptKind.READ
    assert event.reference == "att-1"
    assert event.provider_message_id == "123456789:4711"
    assert event.recipient == "123456789"
    assert event.occurred_at == NOW
    assert event.event_id == again.events[0].event_id == "callback_query:q-77"
    assert first.media_type == "application/json"
    assert json.loads(first.body)["method"] == "answerCallbackQuery"
    assert json.loads(first.body)["callback_query_id"] == "q-77"


def test_button_payload_of_an_attempt_id_fits_telegram_limit() -> None:
    """``ack:<uuid>:<mac>`` stays within Telegram's 64-byte ``callback_data``."""
    reference = str(uuid.uuid4())
    message = Message(recipient=CHAT, text="t", reference=reference, idempotency_key="k")
    with scripted(reply(200, OK)) as (client, script):
        TelegramProvider(config(), client).send(message)
    data = script.json()["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert data.startswith(f"ack:{reference}:")
    assert len(data.encode()) <= 64
    assert SIGNER.reference(data) == reference


def test_no_button_without_a_key() -> None:
    """With neither an ack key nor a webhook secret nothing could verify a press: no button."""
    with scripted(reply(200, OK)) as (client, script):
        TelegramProvider(config(ack_key=None, webhook_secret=None), client).send(MESSAGE)
    assert "reply_markup" not in script.json()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("ack:att-1", id="bare-id"),
        pytest.param("ack:att-2:" + ACK.rsplit(":", 1)[1], id="mac-of-another-attempt"),
        pytest.param(AckSigner(b"another-key", "telegram-ack").payload("att-1"), id="other-key"),
        pytest.param(AckSigner(ACK_KEY.encode(), "viber-ack").payload("att-1"), id="viber-mac"),
        pytest.param(ACK[:-1], id="truncated-mac"),
        pytest.param("ack:att-1:", id="empty-mac"),
        pytest.param("ack::" + ACK.rsplit(":", 1)[1], id="empty-reference"),
    ],
)
def test_press_without_a_valid_mac_confirms_nothing(data: str) -> None:
    """Clients can send callback data no button carried: answered, but no receipt."""
    headers, body = press(data=data)
    with scripted() as (client, _):
        reply_ = TelegramProvider(config(), client).handle(webhook_request(body, headers))
    assert (reply_.status_code, reply_.events) == (200, ())
    answer = json.loads(reply_.body)
    assert answer == {"method": "answerCallbackQuery", "callback_query_id": "q-77"}


def test_reports_read_only_with_the_button() -> None:
    """The button (on, with a key to sign it) is what lets Telegram report ``read``."""
    with scripted() as (client, _):
        on = TelegramProvider(config(), client).reports()
        off = TelegramProvider(config(ack_button=None), client).reports()
        unsigned = TelegramProvider(config(ack_key=None, webhook_secret=None), client).reports()
    assert on == Reports(frozenset({Signal.SENT, Signal.READ}))
    assert off == unsigned == Reports(frozenset({Signal.SENT}), {Signal.READ: "ack_button"})


def test_webhook_secret_signs_buttons_when_no_ack_key() -> None:
    """Built without an ack key, the webhook secret signs and verifies the payload."""
    headers, body = press(data=AckSigner(HOOK_SECRET.encode(), "telegram-ack").payload("att-1"))
    with scripted() as (client, _):
        reply_ = TelegramProvider(config(ack_key=None), client).handle(
            webhook_request(body, headers)
        )
    assert [e.reference for e in reply_.events] == ["att-1"]


def test_other_updates_carry_no_receipt() -> None:
    """A foreign button or a plain message update is answered 200 without events."""
    with scripted() as (client, _):
        provider = TelegramProvider(config(), client)
        headers, body = press(data="menu:1")
        foreign = provider.handle(webhook_request(body, headers))
        plain = {"update_id": 5, "message": {"message_id": 1, "text": "hi"}}
        message = provider.handle(
            webhook_request(
                json.dumps(plain).encode(), {"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
            )
        )
    assert foreign.events == ()
    assert json.loads(foreign.body)["callback_query_id"] == "q-77"
    assert (message.status_code, message.events) == (200, ())


@pytest.mark.parametrize(
    ("headers", "configured", "status"),
    [
        ({}, HOOK_SECRET, 401),
        ({"X-Telegram-Bot-Api-Secret-Token": "guess"}, HOOK_SECRET, 403),
        ({"X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}, None, 403),
    ],
)
def test_webhook_refuses_missing_or_wrong_secret(
    headers: dict[str, str], configured: str | None, status: int
) -> None:
    """Without the exact secret token (or with none configured) nothing is parsed."""
    _, body = press()
    secret = SecretStr(configured) if configured else None
    with scripted() as (client, _), pytest.raises(WebhookSignatureError) as caught:
        TelegramProvider(config(webhook_secret=secret), client).handle(
            webhook_request(body, headers)
        )
    assert caught.value.status_code == status


def test_simulator_callback_reaches_webhook_over_http() -> None:
    """setWebhook, send, press the button: the receipt arrives through real HTTP."""
    app = sim.create_app()
    with scripted() as (unused, _):
        receiver = TelegramProvider(config(), unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        set_hook = client.post(
            f"{base}/bot{sim.TOKEN}/setWebhook", json={"url": hook, "secret_token": HOOK_SECRET}
        )
        sent = sim_provider(base, client).send(MESSAGE)
        answer = client.post(f"{base}/_sim/callback", json={"message_id": sent.provider_message_id})
        forged = client.post(f"{base}/_sim/callback", json={"message_id": 1, "secret": "forged"})
    assert set_hook.json()["ok"] is True
    assert answer.json()["status_code"] == 200
    assert json.loads(answer.json()["body"])["method"] == "answerCallbackQuery"
    assert forged.json()["status_code"] == 403
    (event,) = received.events
    assert (event.kind, event.reference) == (ReceiptKind.READ, "att-1")
    assert event.provider_message_id == sent.provider_message_id
    assert received.refused == [403]
