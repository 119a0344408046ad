"""WhatsApp provider: exact requests, Graph error codes, the simulator, signed statuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.base import Message, ReceiptKind, TemplateRef
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    TemplateRequiredError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.whatsapp import WhatsAppConfig, WhatsAppProvider
from tests.providers.messenger_support import (
    no_retry_wait,
    reply,
    running,
    scripted,
    webhook_request,
)
from tests.simulators import whatsapp as sim
from tests.simulators.server import serve

BASE = "https://graph.example"
TOKEN = "EAAG-access-token"
PNID = "106540352242922"
APP_SECRET = "meta-app-secret"
VERIFY = "verify-me-42"
PHONE = "+14155552671"
#: Free text goes only inside the 24-hour window (the customer wrote to us lately).
TEXT = Message(
    recipient=PHONE,
    text="Your parcel is here",
    reference="att-7",
    idempotency_key="k",
    window_open=True,
)
TEMPLATE = Message(
    recipient=PHONE,
    text="ignored for templates",
    reference="att-8",
    idempotency_key="k",
    template=TemplateRef(name="order_update", language="ru", params=("7731", "shipped")),
)
OK = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "14155552671", "wa_id": "14155552671"}],
    "messages": [{"id": "wamid.HBgLMTQxNTU1NTI2NzEVAgARGBI", "message_status": "accepted"}],
}


def config(**overrides: Any) -> WhatsAppConfig:
    values: dict[str, Any] = {
        "base_url": BASE,
        "api_version": "21.0",
        "phone_number_id": PNID,
        "access_token": SecretStr(TOKEN),
        "app_secret": SecretStr(APP_SECRET),
        "verify_token": SecretStr(VERIFY),
    }
    return WhatsAppConfig(**{**values, **overrides})


def graph(code: int, message: str = "x") -> dict[str, Any]:
    return {"error": {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code}}


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    no_retry_wait(monkeypatch, WhatsAppProvider._post)


def test_text_message_exact_request() -> None:
    """A text message: versioned URL, Bearer token, text body, reference as callback data."""
    with scripted(reply(200, OK)) as (client, script):
        result = WhatsAppProvider(config(), client).send(TEXT)
    assert result.provider_message_id == "wamid.HBgLMTQxNTU1NTI2NzEVAgARGBI"
    assert result.cost is None
    assert str(script.last.url) == f"{BASE}/v21.0/{PNID}/messages"
    assert script.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert script.last.headers["content-type"] == "application/json"
    assert script.last.extensions["timeout"]["read"] == 15.0
    assert script.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155552671",
        "type": "text",
        "text": {"preview_url": False, "body": "Your parcel is here"},
        "biz_opaque_callback_data": "att-7",
    }


def test_template_message_exact_request() -> None:
    """With ``message.template`` set, a template message with body parameters is sent."""
    with scripted(reply(200, OK)) as (client, script):
        WhatsAppProvider(config(), client).send(TEMPLATE)
    assert script.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155552671",
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "ru"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "7731"},
                        {"type": "text", "text": "shipped"},
                    ],
                }
            ],
        },
        "biz_opaque_callback_data": "att-8",
    }


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (400, graph(131026, "Message Undeliverable"), InvalidAddressError, "131026"),
        (400, graph(131050), RejectedError, "131050"),
        (400, graph(131047, "Re-engagement message"), TemplateRequiredError, "template_required"),
        (
            400,
            graph(131030, "Recipient phone number not in allowed list"),
            ProviderConfigError,
            "131030",
        ),
        (401, graph(190, "Invalid OAuth access token"), ProviderConfigError, "190"),
        (400, graph(100, "Invalid parameter"), ProviderConfigError, "100"),
        (400, graph(132001, "Template name does not exist"), ProviderConfigError, "132001"),
        (400, graph(130429, "Rate limit hit"), NotSentError, "130429"),
        (400, graph(131056, "Pair rate limit hit"), NotSentError, "131056"),
        (503, graph(2, "Service temporarily unavailable"), NotSentError, "2"),
        (500, graph(131000, "Something went wrong"), UnknownOutcomeError, "131000"),
        (400, graph(999999, "brand new code"), RejectedError, "999999"),
        (502, b"<html>Bad Gateway</html>", UnknownOutcomeError, "502"),
        (200, {"messaging_product": "whatsapp", "messages": []}, UnknownOutcomeError, None),
    ],
)
def test_send_maps_graph_errors(
    status: int, body: Any, expected: type[ProviderError], code: str | None
) -> None:
    """Graph ``error.code`` decides the class (HTTP status only for unknown codes)."""
    with scripted(reply(status, body)) as (client, _), pytest.raises(ProviderError) as caught:
        WhatsAppProvider(config(), client).send(TEXT)
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert "14155552671" not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_reengagement_refusal_of_a_template_is_config() -> None:
    """131047 on a template means the template itself is wrong for us: config error."""
    refused = reply(400, graph(131047))
    with scripted(refused) as (client, _), pytest.raises(ProviderConfigError):
        WhatsAppProvider(config(), client).send(TEMPLATE)


def test_window_closed_without_template_sends_nothing() -> None:
    """Outside the 24-hour window and no approved template: refused before any request."""
    closed = Message(recipient=PHONE, text="hello", reference="att-9", idempotency_key="k")
    with scripted(reply(200, OK)) as (client, script), pytest.raises(TemplateRequiredError) as e:
        WhatsAppProvider(config(), client).send(closed)
    assert script.requests == []
    assert e.value.code == "template_required"
    assert isinstance(e.value, RejectedError)  # a clear failure: the cascade moves on


def test_window_decides_text_or_template() -> None:
    """With a template: free text inside the window, the template outside it."""
    inside = Message(**{**vars_of(TEMPLATE), "window_open": True})
    with scripted(reply(200, OK)) as (client, script):
        WhatsAppProvider(config(), client).send(inside)
        assert script.json()["type"] == "text"
        assert script.json()["text"]["body"] == "ignored for templates"
        WhatsAppProvider(config(), client).send(TEMPLATE)  # window_open defaults to False
        assert script.json()["type"] == "template"


def test_reengagement_of_text_falls_back_to_the_template() -> None:
    """Meta says 131047 to our text (our window record was stale): the template goes instead."""
    inside = Message(**{**vars_of(TEMPLATE), "window_open": True})
    with scripted(reply(400, graph(131047)), reply(200, OK)) as (client, script):
        result = WhatsAppProvider(config(), client).send(inside)
    assert [json.loads(r.content)["type"] for r in script.requests] == ["text", "template"]
    assert result.provider_message_id == "wamid.HBgLMTQxNTU1NTI2NzEVAgARGBI"


def vars_of(message: Message) -> dict[str, Any]:
    return {name: getattr(message, name) for name in Message.__slots__}


def test_throttling_carries_retry_after_and_read_timeout_is_unknown() -> None:
    """A 429 with Retry-After keeps the delay; a read timeout is Unknown, sent once."""
    throttled = reply(429, graph(130429), headers={"Retry-After": "30"})
    with scripted(throttled) as (client, script), pytest.raises(NotSentError) as caught:
        WhatsAppProvider(config(), client).send(TEXT)
    assert caught.value.retry_after == 30.0
    assert len(script.requests) == 1
    timeout = httpx.ReadTimeout("slow")
    with scripted(timeout) as (client, script), pytest.raises(UnknownOutcomeError):
        WhatsAppProvider(config(), client).send(TEXT)
    assert len(script.requests) == 1


# --- against the simulator, over real HTTP -------------------------------------------


def sim_provider(base: str, client: httpx.Client, **overrides: Any) -> WhatsAppProvider:
    values: dict[str, Any] = {
        "base_url": base,
        "phone_number_id": sim.PHONE_NUMBER_ID,
        "access_token": SecretStr(sim.ACCESS_TOKEN),
        "timeout": 2.0,
    }
    return WhatsAppProvider(WhatsAppConfig(**{**values, **overrides}), client)


def at(phone: str) -> Message:
    return Message(recipient=phone, text="t", reference="r", idempotency_key="k", window_open=True)


def test_simulator_send_and_errors() -> None:
    """Real HTTP: text and template succeed; undeliverable, throttled and bad token map."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client:
        provider = sim_provider(base, client)
        text = provider.send(TEXT)
        recorded = client.get(f"{base}/_sim/requests").json()["requests"]
        template = provider.send(TEMPLATE)
        with pytest.raises(InvalidAddressError):
            provider.send(at("+15550000403"))
        with pytest.raises(NotSentError):
            provider.send(at("+15550000429"))
        with pytest.raises(ProviderConfigError):
            sim_provider(base, client, access_token=SecretStr("expired")).send(TEXT)
    assert text.provider_message_id.startswith("wamid.")
    assert text.provider_message_id != template.provider_message_id
    assert [m["reference"] for m in app.sent] == ["att-7", "att-8"]
    assert app.requests[1].json()["template"]["name"] == "order_update"
    assert [r["path"] for r in recorded] == [f"/v21.0/{sim.PHONE_NUMBER_ID}/messages"]


def test_simulator_hang_is_unknown_outcome() -> None:
    """A request the service never answers raises UnknownOutcomeError after the read timeout."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client, pytest.raises(UnknownOutcomeError):
        sim_provider(base, client, timeout=0.2).send(at("+15550000408"))
    assert len(app.requests) == 1


# --- webhook ---------------------------------------------------------------------------


def statuses(status: str, **kwargs: Any) -> tuple[dict[str, str], bytes]:
    return sim.status_callback(
        APP_SECRET,
        message_id="wamid.ABC",
        status=status,
        recipient_id="14155552671",
        timestamp=1700000123,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("sent", ReceiptKind.SENT),
        ("delivered", ReceiptKind.DELIVERED),
        ("read", ReceiptKind.READ),
    ],
)
def test_signed_status_becomes_receipt(status: str, kind: ReceiptKind) -> None:
    """A correctly signed status is one event with id, reference, time and a stable key."""
    headers, body = statuses(status, reference="att-7")
    with scripted() as (client, _):
        answer = WhatsAppProvider(config(), client).handle(webhook_request(body, headers))
    (event,) = answer.events
    assert answer.status_code == 200
    assert event.kind is kind
    assert event.provider_message_id == "wamid.ABC"
    assert event.reference == "att-7"
    assert event.recipient == "14155552671"
    assert event.occurred_at == datetime.fromtimestamp(1700000123, tz=UTC)
    assert event.event_id == f"wamid.ABC:{kind.value}:1700000123"
    assert event.invalid_address is False


@pytest.mark.parametrize(("code", "invalid"), [(131026, True), (131049, False)])
def test_failed_status_carries_code_and_invalid_address(code: int, invalid: bool) -> None:
    """A ``failed`` status reports its error code; 131026 marks the address invalid."""
    headers, body = statuses("failed", error_code=code)
    with scripted() as (client, _):
        (event,) = WhatsAppProvider(config(), client).handle(webhook_request(body, headers)).events
    assert event.kind is ReceiptKind.FAILED
    assert event.error_code == str(code)
    assert event.invalid_address is invalid


def test_several_statuses_in_one_post() -> None:
    """Every status of every entry/change becomes an event; inbound messages are ignored."""
    update = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {"field": "messages", "value": {"messages": [{"id": "wamid.IN"}]}},
                    {
                        "field": "messages",
                        "value": {
                            "statuses": [
                                {"id": "wamid.A", "status": "delivered", "timestamp": "1"},
                                {"id": "wamid.A", "status": "read", "timestamp": "2"},
                                {"id": "wamid.B", "status": "deleted", "timestamp": "3"},
                            ]
                        },
                    },
                ],
            }
        ],
    }
    body = json.dumps(update).encode()
    with scripted() as (client, _):
        answer = WhatsAppProvider(config(), client).handle(
            webhook_request(body, sim.sign(APP_SECRET, body))
        )
    assert [(e.provider_message_id, e.kind) for e in answer.events] == [
        ("wamid.A", ReceiptKind.DELIVERED),
        ("wamid.A", ReceiptKind.READ),
    ]


def _tampered() -> tuple[dict[str, str], bytes]:
    headers, body = statuses("read")
    return headers, body.replace(b'"read"', b'"sent"')


@pytest.mark.parametrize(
    ("request_parts", "status"),
    [
        pytest.param(({}, statuses("read")[1]), 401, id="missing"),
        pytest.param(
            ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, statuses("read")[1]), 403, id="wrong"
        ),
        pytest.param(
            (sim.sign("other-secret", statuses("read")[1]), statuses("read")[1]),
            403,
            id="other-key",
        ),
        pytest.param(_tampered(), 403, id="body-altered"),
    ],
)
def test_webhook_refuses_bad_signatures(
    request_parts: tuple[dict[str, str], bytes], status: int
) -> None:
    """Missing, wrong or stale signatures (body changed after signing) are refused."""
    headers, body = request_parts
    with scripted() as (client, _), pytest.raises(WebhookSignatureError) as caught:
        WhatsAppProvider(config(), client).handle(webhook_request(body, headers))
    assert caught.value.status_code == status


def test_webhook_without_app_secret_refuses_everything() -> None:
    """No app secret configured: even a 'signed' POST is refused (fail closed)."""
    headers, body = statuses("read")
    with scripted() as (client, _), pytest.raises(WebhookSignatureError):
        WhatsAppProvider(config(app_secret=None), client).handle(webhook_request(body, headers))


@pytest.mark.parametrize(
    ("query", "outcome"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}, 200),
        ({"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}, 403),
        ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"}, 403),
        ({"hub.challenge": "1"}, 403),
    ],
)
def test_verification_handshake(query: dict[str, str], outcome: int) -> None:
    """GET hub.challenge is echoed only for mode=subscribe with our verify token."""
    with scripted() as (client, _):
        provider = WhatsAppProvider(config(), client)
        request = webhook_request(method="GET", query=query)
        if outcome == 200:
            answer = provider.handle(request)
            assert (answer.status_code, answer.body) == (200, "1158201444")
            assert answer.media_type == "text/plain"
        else:
            with pytest.raises(WebhookSignatureError) as caught:
                provider.handle(request)
            assert caught.value.status_code == 403


def test_simulator_callbacks_over_http() -> None:
    """Handshake, then a signed read status from the simulator arrives as a receipt."""
    app = sim.create_app(app_secret=APP_SECRET)
    with scripted() as (unused, _):
        receiver = WhatsAppProvider(config(), unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        handshake = client.post(
            f"{base}/_sim/verify", json={"url": hook, "verify_token": VERIFY, "challenge": "77"}
        )
        wrote = client.post(f"{base}/_sim/inbound", json={"url": hook, "from": PHONE})
        sent = sim_provider(base, client).send(TEXT)
        read = client.post(
            f"{base}/_sim/callback",
            json={"url": hook, "message_id": sent.provider_message_id, "status": "read"},
        )
        forged = client.post(
            f"{base}/_sim/callback",
            json={"url": hook, "message_id": sent.provider_message_id, "app_secret": "forged"},
        )
    assert handshake.json() == {"status_code": 200, "body": "77"}
    assert wrote.json()["status_code"] == 200
    (inbound,) = received.inbound
    assert inbound.sender == "14155552671"
    assert read.json()["status_code"] == 200
    assert forged.json()["status_code"] == 403
    (event,) = received.events
    assert (event.kind, event.reference) == (ReceiptKind.READ, "att-7")
    assert event.provider_message_id == sent.provider_message_id
