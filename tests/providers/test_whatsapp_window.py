"""WhatsApp's 24-hour window and template messages, against the Cloud API simulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.base import Message, ReceiptKind, TemplateRef
from providers.errors import (
    ProviderConfigError,
    ProviderError,
    RejectedError,
    TemplateRequiredError,
)
from providers.whatsapp import WhatsAppConfig, WhatsAppProvider
from tests.providers.messenger_support import running, scripted, webhook_request
from tests.simulators import whatsapp as sim
from tests.simulators.server import serve

PHONE = "+14155552671"
ORDER = TemplateRef(name="order_update", language="pt_BR", params=("7731", "enviado"))


def provider(base: str, client: httpx.Client) -> WhatsAppProvider:
    config = WhatsAppConfig(
        base_url=base,
        phone_number_id=sim.PHONE_NUMBER_ID,
        access_token=SecretStr(sim.ACCESS_TOKEN),
        app_secret=SecretStr(sim.APP_SECRET),
        timeout=2.0,
    )
    return WhatsAppProvider(config, client)


def message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "recipient": PHONE,
        "text": "Pedido 7731: enviado",
        "reference": "att-1",
        "idempotency_key": "k",
        "template": ORDER,
    }
    return Message(**{**values, **fields})


def test_outside_window_sends_the_approved_template_in_metas_shape():
    """Window closed: the template goes, and the simulator accepts its shape."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client:
        provider(base, client).send(message())
    body = app.requests[-1].json()
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "order_update",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "7731"},
                    {"type": "text", "text": "enviado"},
                ],
            }
        ],
    }
    assert app.sent[-1]["type"] == "template"


@pytest.mark.parametrize(
    ("template", "expected", "code"),
    [
        (TemplateRef("order_update", "de", ("1", "2")), ProviderConfigError, "132001"),
        (TemplateRef("no_such_template", "en", ("1", "2")), ProviderConfigError, "132001"),
        (TemplateRef("order_update", "en", ("1",)), ProviderConfigError, "132000"),
        (TemplateRef("Order-Update", "en", ("1", "2")), ProviderConfigError, "100"),
        (TemplateRef("order_update", "en", ("1", "")), ProviderConfigError, "100"),
        # A new line in this message's parameter: this message is refused (HTTP 400).
        (TemplateRef("order_update", "en", ("1", "a\nb")), RejectedError, "132018"),
    ],
)
def test_simulator_refuses_templates_meta_would(
    template: TemplateRef, expected: type[ProviderError], code: str
):
    """Unapproved name/language, wrong parameter count or text: Graph's template errors."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client, pytest.raises(ProviderError) as e:
        provider(base, client).send(message(template=template))
    assert (type(e.value), e.value.code) == (expected, code)
    assert app.sent == []


def test_free_text_outside_the_window_fails_with_131047_as_not_sent_use_a_template():
    """The simulator accepts stray text but its status is failed 131047: template_required."""
    app = sim.create_app()
    with scripted() as (unused, _):
        receiver = provider("http://unused", unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        # Our record said "open" (window_open=True) but the customer never wrote.
        sent = provider(base, client).send(message(template=None, window_open=True))
        client.post(
            f"{base}/_sim/callback",
            json={"url": hook, "message_id": sent.provider_message_id, "status": "delivered"},
        )
    (event,) = received.events
    assert (event.kind, event.error_code) == (ReceiptKind.FAILED, "template_required")
    assert event.provider_message_id == sent.provider_message_id
    assert not event.invalid_address


def test_synchronous_131047_for_text_sends_the_template_instead():
    """With ``window_errors="sync"``: the text is refused at once, the template goes."""
    app = sim.create_app(window_errors="sync")
    with serve(app) as base, httpx.Client() as client:
        result = provider(base, client).send(message(window_open=True))
        with pytest.raises(TemplateRequiredError):
            provider(base, client).send(message(template=None, window_open=True))
    assert [r.json()["type"] for r in app.requests] == ["text", "template", "text"]
    assert [m["type"] for m in app.sent] == ["template"]
    assert result.provider_message_id == app.sent[0]["id"]


def test_inside_the_window_free_text_is_delivered():
    """After the customer writes, text goes and is delivered (no template needed)."""
    app = sim.create_app()
    with scripted() as (unused, _):
        receiver = provider("http://unused", unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        client.post(f"{base}/_sim/inbound", json={"url": hook, "from": PHONE})
        sent = provider(base, client).send(message(window_open=True))
        client.post(
            f"{base}/_sim/callback",
            json={"url": hook, "message_id": sent.provider_message_id, "status": "delivered"},
        )
    assert app.sent[-1]["type"] == "text"
    (event,) = received.events
    assert event.kind is ReceiptKind.DELIVERED


def test_inbound_webhook_reports_sender_and_time_only():
    """A customer's message becomes (sender, time); its text is not carried anywhere."""
    headers, body = sim.inbound_callback(
        sim.APP_SECRET, sender="14155552671", timestamp=1_700_000_000, text="secret words"
    )
    with scripted() as (client, _):
        reply = provider("http://unused", client).handle(webhook_request(body, headers))
    (inbound,) = reply.inbound
    assert (inbound.provider, inbound.sender) == ("whatsapp", "14155552671")
    assert inbound.at.timestamp() == 1_700_000_000
    assert reply.events == ()
    assert "secret" not in repr(reply)
