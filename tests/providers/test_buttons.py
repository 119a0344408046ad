"""Confirmation buttons on Viber, VK and WhatsApp: the MAC'd payload each message carries,
and a press coming back through the signed webhook as a READ receipt for that attempt.

Telegram's button is tested in test_telegram.py; the shared signer here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from providers._messaging import AckSigner
from providers.base import Message, ReceiptKind, TemplateRef
from providers.errors import ProviderConfigError
from providers.viber import ViberConfig, ViberProvider
from providers.vk import VkConfig, VkProvider
from providers.whatsapp import WhatsAppConfig, WhatsAppProvider
from tests.providers.messenger_support import (
    NOW,
    reply,
    running,
    scripted,
    webhook_request,
)
from tests.simulators import viber as viber_sim
from tests.simulators import vk as vk_sim
from tests.simulators import whatsapp as wa_sim

KEY = "ack-key-0123"
LABEL = "✅ Got it"
REFERENCE = "0b6f9c1e-6a43-4f44-9a51-3c1f2f7e0c55"
MESSAGE = Message(
    recipient="14155552671", text="Parcel at the door", reference=REFERENCE, idempotency_key="k"
)


def signer(provider: str, key: str = KEY) -> AckSigner:
    return AckSigner(key.encode(), f"{provider}-ack")


def forgeries(provider: str) -> list[Any]:
    """Payloads no button of ours carried for REFERENCE on ``provider``."""
    good = signer(provider).payload(REFERENCE)
    mac = good.rsplit(":", 1)[1]
    return [
        pytest.param(f"ack:{REFERENCE}", id="no-mac"),
        pytest.param(f"ack:another-attempt:{mac}", id="this-mac-on-another-attempt"),
        pytest.param(signer(provider, "another-key").payload(REFERENCE), id="another-key"),
        pytest.param(signer("telegram").payload(REFERENCE), id="another-providers-mac"),
        pytest.param(good[:-1], id="truncated"),
        pytest.param("Thanks, got it", id="plain-text"),
    ]


def test_signer_round_trip_and_refusals():
    """A payload verifies to its reference; a changed reference, key or purpose does not."""
    payload = signer("viber").payload(REFERENCE)
    assert payload.startswith(f"ack:{REFERENCE}:")
    assert signer("viber").reference(payload) == REFERENCE
    assert signer("viber", "other").reference(payload) is None
    assert signer("vk").reference(payload) is None
    assert signer("viber").reference(payload.replace(REFERENCE, "x")) is None
    assert signer("viber").reference(None) is None
    assert AckSigner.first("viber-ack", None, SecretStr("")) is None
    assert AckSigner.first("viber-ack", None, SecretStr(KEY)) == signer("viber")


# --- Viber: keyboard with a ``reply`` button; the press is a ``message`` callback ------------

VIBER_TOKEN = "4453b6ac1s345678-e02c5f12174805f9-daec29b3bc6f1d2b"


def viber(client: httpx.Client, **overrides: Any) -> ViberProvider:
    values: dict[str, Any] = {
        "base_url": "https://viber.example",
        "auth_token": SecretStr(VIBER_TOKEN),
        "ack_button": LABEL,
        "ack_key": SecretStr(KEY),
    }
    return ViberProvider(ViberConfig(**{**values, **overrides}), client)


def viber_press(action_body: str, token: int = 5741311803571721999) -> tuple[Any, bytes]:
    return viber_sim.press_callback(
        VIBER_TOKEN,
        action_body=action_body,
        user_id="01234567890A=",
        message_token=token,
        timestamp=1740830400000,
    )


def test_viber_message_carries_the_signed_reply_button():
    ok = {"status": 0, "message_token": 1}
    with scripted(reply(200, ok)) as (client, script):
        viber(client).send(MESSAGE)
        without = script.json()
        viber(client, ack_button=None).send(MESSAGE)
        default = script.json()
    assert without["keyboard"] == {
        "Type": "keyboard",
        "DefaultHeight": False,
        "Buttons": [
            {
                "Columns": 6,
                "Rows": 1,
                "ActionType": "reply",
                "ActionBody": signer("viber").payload(REFERENCE),
                "Text": LABEL,
                "Silent": True,
            }
        ],
    }
    assert "keyboard" not in default


def test_viber_press_is_a_read_receipt_for_the_attempt():
    headers, body = viber_press(signer("viber").payload(REFERENCE))
    with scripted() as (client, _):
        first = viber(client).handle(webhook_request(body, headers))
        again = viber(client).handle(webhook_request(body, headers))
    (event,) = first.events
    assert (event.kind, event.reference, event.recipient) == (
        ReceiptKind.READ,
        REFERENCE,
        "01234567890A=",
    )
    assert event.provider_message_id is None  # the token is the press's, not our message's
    assert event.event_id == again.events[0].event_id == "5741311803571721999:press"
    assert first.status_code == 200


@pytest.mark.parametrize("action_body", forgeries("viber"))
def test_viber_forged_press_confirms_nothing(action_body: str):
    headers, body = viber_press(action_body)
    with scripted() as (client, _):
        answer = viber(client).handle(webhook_request(body, headers))
    assert (answer.status_code, answer.events) == (200, ())


# --- VK: inline keyboard with a text button; the press is ``message_new`` with its payload --


def vk(client: httpx.Client, **overrides: Any) -> VkProvider:
    values: dict[str, Any] = {
        "base_url": "https://vk.example",
        "access_token": SecretStr("vk1.a.token"),
        "secret": SecretStr(vk_sim.SECRET),
        "group_id": vk_sim.GROUP_ID,
        "ack_button": LABEL,
        "ack_key": SecretStr(KEY),
    }
    return VkProvider(VkConfig(**{**values, **overrides}), client)


def vk_press(ack: str, message_id: int = 2001) -> tuple[Any, bytes]:
    payload = json.dumps({"ack": ack})
    return vk_sim.message_new(
        secret=vk_sim.SECRET, peer_id=1234567, message_id=message_id, text=LABEL, payload=payload
    )


def test_vk_message_carries_the_signed_inline_button():
    with scripted(reply(200, {"response": 456})) as (client, script):
        vk(client).send(MESSAGE)
        form = dict(parse_qsl(script.last.content.decode()))
        vk(client, ack_button=None).send(MESSAGE)
        default = dict(parse_qsl(script.last.content.decode()))
    keyboard = json.loads(form["keyboard"])
    [[button]] = keyboard["buttons"]
    assert keyboard["inline"] is True
    assert button["action"]["type"] == "text"
    assert button["action"]["label"] == LABEL
    assert json.loads(button["action"]["payload"]) == {"ack": signer("vk").payload(REFERENCE)}
    assert len(button["action"]["payload"]) <= 255
    assert "keyboard" not in default


def test_vk_press_is_a_read_receipt_for_the_attempt():
    headers, body = vk_press(signer("vk").payload(REFERENCE))
    with scripted() as (client, _):
        first = vk(client).handle(webhook_request(body, headers))
        again = vk(client).handle(webhook_request(body, headers))
    (event,) = first.events
    assert (event.kind, event.reference, event.recipient, event.occurred_at) == (
        ReceiptKind.READ,
        REFERENCE,
        "1234567",
        NOW,
    )
    assert not event.read_up_to
    assert event.event_id == again.events[0].event_id  # VK's event_id: a replay is a duplicate
    assert (first.status_code, first.body) == (200, "ok")


@pytest.mark.parametrize("ack", forgeries("vk"))
def test_vk_forged_press_confirms_nothing(ack: str):
    headers, body = vk_press(ack)
    with scripted() as (client, _):
        answer = vk(client).handle(webhook_request(body, headers))
    assert (answer.status_code, answer.body, answer.events) == (200, "ok", ())


# --- WhatsApp: interactive reply button inside the window; the press is a button_reply -----


def whatsapp(client: httpx.Client, **overrides: Any) -> WhatsAppProvider:
    values: dict[str, Any] = {
        "base_url": "https://graph.example",
        "phone_number_id": wa_sim.PHONE_NUMBER_ID,
        "access_token": SecretStr("EAAG"),
        "app_secret": SecretStr(wa_sim.APP_SECRET),
        "ack_button": "Got it",
        "ack_key": SecretStr(KEY),
    }
    return WhatsAppProvider(WhatsAppConfig(**{**values, **overrides}), client)


def wa_press(reply_id: str, quick_reply: bool = False) -> tuple[Any, bytes]:
    """A press of our interactive reply button, or of a template's quick reply."""
    return wa_sim.button_reply_callback(
        wa_sim.APP_SECRET,
        sender="14155552671",
        reply_id=reply_id,
        title="Got it",
        context_id="wamid.ours",
        timestamp=1740830400,
        quick_reply=quick_reply,
    )


#: Both kinds of press: an interactive message's reply button, a template's quick reply.
PRESSES = pytest.mark.parametrize("quick_reply", [False, True], ids=["interactive", "template"])


WA_OK = {"messages": [{"id": "wamid.ours"}]}


def test_whatsapp_text_in_the_window_is_an_interactive_button_message():
    inside = Message(**{**vars_of(MESSAGE), "window_open": True})
    long = Message(**{**vars_of(inside), "text": "x" * 1025})
    with scripted(reply(200, WA_OK)) as (client, script):
        whatsapp(client).send(inside)
        interactive = script.json()
        whatsapp(client).send(long)
        too_long = script.json()
        whatsapp(client, ack_button=None).send(inside)
        default = script.json()
    assert interactive["type"] == "interactive"
    assert interactive["interactive"] == {
        "type": "button",
        "body": {"text": "Parcel at the door"},
        "action": {
            "buttons": [
                {
                    "type": "reply",
                    "reply": {"id": signer("whatsapp").payload(REFERENCE), "title": "Got it"},
                }
            ]
        },
    }
    assert interactive["biz_opaque_callback_data"] == REFERENCE
    assert (too_long["type"], default["type"]) == ("text", "text")


def vars_of(message: Message) -> dict[str, Any]:
    return {name: getattr(message, name) for name in Message.__dataclass_fields__}


@PRESSES
def test_whatsapp_press_is_a_read_receipt_for_the_attempt(quick_reply: bool):
    headers, body = wa_press(signer("whatsapp").payload(REFERENCE), quick_reply)
    with scripted() as (client, _):
        first = whatsapp(client).handle(webhook_request(body, headers))
        again = whatsapp(client).handle(webhook_request(body, headers))
    (event,) = first.events
    assert (event.kind, event.reference, event.provider_message_id, event.recipient) == (
        ReceiptKind.READ,
        REFERENCE,
        "wamid.ours",
        "14155552671",
    )
    assert event.event_id == again.events[0].event_id
    assert [m.sender for m in first.inbound] == ["14155552671"]  # a press opens the window


@PRESSES
@pytest.mark.parametrize("reply_id", forgeries("whatsapp"))
def test_whatsapp_forged_press_confirms_nothing(reply_id: str, quick_reply: bool):
    headers, body = wa_press(reply_id, quick_reply)
    with scripted() as (client, _):
        answer = whatsapp(client).handle(webhook_request(body, headers))
    assert (answer.status_code, answer.events) == (200, ())


# --- WhatsApp templates: the approved quick-reply button carries the signed payload -------

TEMPLATED = Message(
    **{
        **vars_of(MESSAGE),
        "template": TemplateRef("order_update", "en", ("42", "shipped"), ack_button=0),
    }
)


def test_whatsapp_template_sets_the_payload_of_its_quick_reply_button():
    """Outside the window the template goes, its quick reply carrying ack:<ref>:<mac>; a
    template without ack_button, or a provider without a key, sets no payload."""
    plain = Message(
        **{**vars_of(TEMPLATED), "template": TemplateRef("order_update", "en", ("42", "shipped"))}
    )
    with scripted(reply(200, WA_OK)) as (client, script):
        whatsapp(client).send(TEMPLATED)
        with_button = script.json()["template"]
        whatsapp(client).send(plain)
        without = script.json()["template"]
        whatsapp(client, ack_key=None, app_secret=None).send(TEMPLATED)
        keyless = script.json()["template"]
    assert with_button["components"] == [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "42"}, {"type": "text", "text": "shipped"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": signer("whatsapp").payload(REFERENCE)}],
        },
    ]
    assert [c["type"] for c in without["components"]] == ["body"]
    assert [c["type"] for c in keyless["components"]] == ["body"]


# --- over real HTTP: each simulator sends, the customer presses, the webhook receives ------


def _events(received: Any) -> list[tuple[ReceiptKind, str | None]]:
    return [(e.kind, e.reference) for e in received.events]


def _wa_press_and_forge(client: httpx.Client, base: str, hook: str, wamid: str | None) -> list[int]:
    """The customer presses the message's button, then a forged id is pressed: statuses."""
    press = {"url": hook, "message_id": wamid}
    forged = {**press, "reply_id": "ack:x:y"}
    return [
        client.post(f"{base}/_sim/press", json=body).json()["status_code"]
        for body in (press, forged)
    ]


def test_presses_through_the_simulators():
    """Each simulator takes the button and posts the signed press; only a real one confirms."""
    results: dict[str, tuple[list[Any], list[int]]] = {}
    with httpx.Client() as client:
        sim = viber_sim.create_app()
        receiver = viber(client, auth_token=SecretStr(viber_sim.AUTH_TOKEN))
        with running(sim, receiver) as (base, hook, received):
            sender = viber(client, base_url=base, auth_token=SecretStr(viber_sim.AUTH_TOKEN))
            token = sender.send(MESSAGE).provider_message_id
            press = {"url": hook, "message_id": token}
            codes = [
                client.post(f"{base}/_sim/press", json=press).json()["status_code"],
                client.post(
                    f"{base}/_sim/press", json={**press, "action_body": f"ack:{REFERENCE}:x"}
                ).json()["status_code"],
            ]
            results["viber"] = (_events(received), codes)

        sim = vk_sim.create_app()
        with running(sim, vk(client)) as (base, hook, received):
            vk_sender = vk(client, base_url=base, access_token=SecretStr(vk_sim.ACCESS_TOKEN))
            message_id = vk_sender.send(MESSAGE).provider_message_id
            press = {"url": hook, "message_id": message_id}
            codes = [
                client.post(f"{base}/_sim/press", json=press).json()["status_code"],
                client.post(
                    f"{base}/_sim/press", json={**press, "payload": '{"ack":"ack:x:y"}'}
                ).json()["status_code"],
            ]
            results["vk"] = (_events(received), codes)

        sim = wa_sim.create_app()
        with running(sim, whatsapp(client)) as (base, hook, received):
            wrote = {"url": hook, "from": MESSAGE.recipient}
            client.post(f"{base}/_sim/inbound", json=wrote)
            wa_sender = whatsapp(client, base_url=base, access_token=SecretStr(wa_sim.ACCESS_TOKEN))
            inside = Message(**{**vars_of(MESSAGE), "window_open": True})
            wamid = wa_sender.send(inside).provider_message_id
            codes = _wa_press_and_forge(client, base, hook, wamid)
            results["whatsapp"] = (_events(received), codes)

        sim = wa_sim.create_app()  # outside the window: the template's quick reply
        with running(sim, whatsapp(client)) as (base, hook, received):
            wa_sender = whatsapp(client, base_url=base, access_token=SecretStr(wa_sim.ACCESS_TOKEN))
            wamid = wa_sender.send(TEMPLATED).provider_message_id
            codes = _wa_press_and_forge(client, base, hook, wamid)
            results["whatsapp template"] = (_events(received), codes)
            unknown = TemplateRef("order_update", "en", ("42", "shipped"), ack_button=1)
            with pytest.raises(ProviderConfigError, match="131009"):  # no button 1 in it
                wa_sender.send(Message(**{**vars_of(TEMPLATED), "template": unknown}))
    read = [(ReceiptKind.READ, REFERENCE)]
    assert results == {
        "viber": (read, [200, 200]),
        "vk": (read, [200, 200]),
        "whatsapp": (read, [200, 200]),
        "whatsapp template": (read, [200, 200]),
    }
