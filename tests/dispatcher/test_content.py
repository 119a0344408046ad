"""Per-locale templates, SMS segments and their cost, on the real database.

The ``notices`` cascade (tests/locales) has ``en`` (default), ``ru`` and ``pt``
variants, and an SMS step capped at two segments; the provider is the sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dispatcher.claims import build_message
from dispatcher.models import Attempt, Notification
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from providers.base import TemplateRef
from tests.dispatcher.test_broadcasts import fan_outs
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import PHONE, PUSH_TOKEN, outbox, show

LOCALES = Path(__file__).parent.parent / "locales"
DATA = {"order_id": 42, "status": "shipped", "courier": "Ivan"}
RUSSIAN_200 = "Ваш заказ собран и передан в доставку, курьер приедет завтра " * 4  # > 134


def customer(api: TestClient, cid: str, locale: str | None, channels: list[str]) -> None:
    addresses = {"push": PUSH_TOKEN, "sms": PHONE, "whatsapp": PHONE}
    contacts = [{"channel": c, "address": addresses[c]} for c in channels]
    response = api.put(f"/v1/customers/{cid}", json={"locale": locale, "contacts": contacts})
    assert response.status_code == 200, response.text


def order(api: TestClient, cid: str, **data: Any) -> dict[str, Any]:
    body = {"customer_id": cid, "cascade": "notices", "template": "order", "data": data or DATA}
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def content_of(runtime: Runtime, nid: str) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        row = session.get(Notification, nid)
        assert row is not None
        return dict(row.content)


@pytest.fixture(name="notices")
def _notices(make: Make) -> tuple[Runtime, TestClient]:
    return make(cascades_dir=LOCALES)


def test_russian_customer_gets_russian_push_and_sms(notices, clock: FakeClock):
    """Locale ru: the ru variant on push and on SMS, recorded on both attempts."""
    runtime, api = notices
    customer(api, "ru1", "ru", ["push", "sms"])
    nid = order(api, "ru1")["id"]
    assert drain(runtime) == ["sent"]
    sweep(runtime, now=clock.advance(61))  # the push is not read: SMS
    assert drain(runtime) == ["sent"]
    push, sms = show(api, nid)["attempts"]
    assert (push["channel"], push["locale"]) == ("push", "ru")
    assert (sms["channel"], sms["locale"], sms["encoding"]) == ("sms", "ru", "ucs2")
    content = content_of(runtime, nid)
    assert content["push"]["title"] == "Заказ 42"
    assert content["sms"]["text"] == "Заказ 42: shipped. Курьер: Ivan"


@pytest.mark.parametrize(
    ("locale", "variant", "title"),
    [
        ("pt-BR", "pt", "Pedido 42"),  # pt-BR → pt
        ("pt_br", "pt", "Pedido 42"),  # tags compare case- and separator-insensitively
        ("RU", "ru", "Заказ 42"),
        ("de-AT", "en", "Order 42"),  # no de-at, no de: the cascade's default
        (None, "en", "Order 42"),
    ],
)
def test_locale_falls_back_to_language_then_default(notices, locale, variant, title):
    """The most specific variant the cascade has, else its default_locale."""
    runtime, api = notices
    customer(api, "c1", locale, ["push"])
    nid = order(api, "c1")["id"]
    drain(runtime)
    (push,) = show(api, nid)["attempts"]
    assert push["locale"] == variant
    assert content_of(runtime, nid)["push"]["title"] == title


def test_missing_variable_in_any_variant_is_422_naming_it(notices):
    """An English customer's request still needs what the ru variant uses: 422, nothing stored."""
    _, api = notices
    customer(api, "en1", "en", ["push", "sms"])
    body = {"customer_id": "en1", "cascade": "notices", "template": "order"}
    answer = api.post("/v1/notifications", json={**body, "data": {"order_id": 1, "status": "x"}})
    assert answer.status_code == 422
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == ["data"]
    assert "'courier' is undefined" in problem["detail"]
    assert "sms template, locale ru" in problem["detail"]
    assert api.get("/v1/customers/en1/history").json() == []


def test_long_sms_uses_the_short_variant_under_max_segments(notices):
    """Over the step's two segments: the template's ``short`` text is what goes."""
    runtime, api = notices
    customer(api, "s1", "ru", ["sms"])
    nid = order(api, "s1", **{**DATA, "status": RUSSIAN_200})["id"]
    assert drain(runtime) == ["sent"]
    (sms,) = show(api, nid)["attempts"]
    assert (sms["encoding"], sms["segments"], sms["cost"]) == ("ucs2", 1, pytest.approx(0.05))
    assert content_of(runtime, nid)["sms"]["text"] == "Заказ 42: см. приложение"


def test_sms_over_max_segments_without_short_is_refused_not_sent(notices):
    """pt has no short SMS: the attempt fails 'too_many_segments', no provider call."""
    runtime, api = notices
    customer(api, "p1", "pt", ["sms"])
    nid = order(api, "p1", **{**DATA, "status": "x" * 400})["id"]
    assert drain(runtime) == ["failed"]
    (sms,) = show(api, nid)["attempts"]
    assert (sms["state"], sms["error_code"], sms["segments"]) == (
        "escalated",  # failed, and the cascade moved on at once
        "too_many_segments",
        3,
    )
    assert sms["cost"] == 0
    shown = show(api, nid)
    assert shown["state"] == "exhausted"
    failed = [e for e in shown["events"] if e["type"] == "failed"]
    assert [e["detail"]["code"] for e in failed] == ["too_many_segments"]
    assert runtime.settings.sandbox.outbox is not None
    assert [e for e in outbox(runtime.settings.sandbox.outbox) if e["reference"] == sms["id"]] == []


def test_broadcast_gives_each_member_its_locale(notices):
    """One broadcast, rendered in every variant once; each member gets its own locale's."""
    runtime, api = notices
    for cid, locale in (("b-ru", "ru"), ("b-br", "pt-BR"), ("b-xx", "xx")):
        customer(api, cid, locale, ["push"])
    answer = api.post(
        "/v1/broadcasts",
        json={
            "cascade": "notices",
            "template": "order",
            "data": DATA,
            "audience": {"customer_ids": ["b-ru", "b-br", "b-xx"]},
        },
    )
    assert answer.status_code == 202, answer.text
    fan_outs(runtime)
    drain(runtime)
    with Session(runtime.engine) as session:
        rows = session.exec(select(Notification)).all()
        titles = {row.customer_id: row.content["push"]["title"] for row in rows}
        locales = {a.notification_id: a.locale for a in session.exec(select(Attempt)).all()}
        by_customer = {row.customer_id: locales[row.id] for row in rows}
    assert titles == {"b-ru": "Заказ 42", "b-br": "Pedido 42", "b-xx": "Order 42"}
    assert by_customer == {"b-ru": "ru", "b-br": "pt", "b-xx": "en"}


def test_broadcast_with_a_variable_missing_in_one_variant_is_422(notices):
    """The ru SMS needs ``courier``: the broadcast is refused before anything is stored."""
    _, api = notices
    answer = api.post(
        "/v1/broadcasts",
        json={
            "cascade": "notices",
            "template": "order",
            "data": {"order_id": 1, "status": "x"},
            "audience": {"filter": "all"},
        },
    )
    assert answer.status_code == 422
    assert "'courier' is undefined in the sms template, locale ru" in answer.json()["detail"]


def test_the_templates_quick_reply_button_reaches_the_provider(notices):
    """en's WhatsApp template names its acknowledging quick reply (ack_button: 0): stored
    with the content and handed to the provider; ru's has none."""
    runtime, api = notices
    refs = {}
    for locale in ("en", "ru"):
        customer(api, f"wa-{locale}", locale, ["whatsapp", "sms"])
        nid = order(api, f"wa-{locale}")["id"]
        assert content_of(runtime, nid)["whatsapp"]["template"]["ack_button"] == (
            0 if locale == "en" else None
        )
        with Session(runtime.engine) as session:
            notification = session.get(Notification, nid)
            attempt = session.exec(select(Attempt).where(Attempt.notification_id == nid)).first()
            assert notification is not None
            assert attempt is not None
            refs[locale] = build_message(runtime, notification, attempt, PHONE).template
    assert refs == {
        "en": TemplateRef("order_update", "en_US", ("42", "shipped"), ack_button=0),
        "ru": TemplateRef("order_update", "ru", ("42", "shipped")),
    }
