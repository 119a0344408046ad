"""WhatsApp's 24-hour window end to end: the real provider against the Cloud API simulator.

Inbound messages arrive as signed webhooks and open the window for that contact;
inside it the step sends its free text, outside it the approved template (the
simulator checks its shape); 131047 fails the step as ``template_required`` and
closes the window; without a template nothing is sent and the cascade moves on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dispatcher.customer_tables import ContactPoint
from dispatcher.inbound import window_open
from dispatcher.runtime import Runtime
from providers.base import Channel
from tests.simulators import whatsapp as sim
from tests.simulators.server import serve
from tests.simulators.sim_common import Simulator
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import PHONE, attempts, show

LOCALES = Path(__file__).parent.parent / "locales"
DATA = {"order_id": 42, "status": "shipped", "courier": "Ivan"}
WA_ID = PHONE.removeprefix("+")

World = tuple[Runtime, TestClient, Simulator]


@pytest.fixture(name="world")
def _world(make: Make, clock: FakeClock) -> Iterator[World]:
    app = sim.create_app(clock=lambda: clock().timestamp())
    with serve(app) as base:
        provider = {
            "base_url": base,
            "phone_number_id": sim.PHONE_NUMBER_ID,
            "access_token": sim.ACCESS_TOKEN,
            "app_secret": sim.APP_SECRET,
            "timeout": 5.0,
        }
        runtime, api = make(
            cascades_dir=LOCALES,
            channels={"whatsapp": ["whatsapp"]},
            providers={"whatsapp": provider},
        )
        yield runtime, api, app
        runtime.close()  # the providers' connections to the simulator


def customer(api: TestClient, cid: str, *channels: str, locale: str = "ru") -> None:
    contacts = [{"channel": c, "address": PHONE} for c in channels]
    answer = api.put(f"/v1/customers/{cid}", json={"locale": locale, "contacts": contacts})
    assert answer.status_code == 200, answer.text


def order(api: TestClient, cid: str, **body: Any) -> str:
    request = {"customer_id": cid, "cascade": "notices", "template": "order", "data": DATA}
    answer = api.post("/v1/notifications", json={**request, **body})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def customer_writes(api: TestClient, at: datetime) -> None:
    """The customer's message reaches our webhook, signed as Meta signs it."""
    headers, body = sim.inbound_callback(
        sim.APP_SECRET, sender=WA_ID, timestamp=int(at.timestamp())
    )
    assert api.post("/v1/webhooks/whatsapp", content=body, headers=headers).status_code == 200


def last_inbound(runtime: Runtime) -> datetime | None:
    with Session(runtime.engine) as session:
        contact = session.exec(select(ContactPoint).where(ContactPoint.channel == "whatsapp")).one()
        return contact.last_inbound_at


def test_template_outside_the_window_text_inside_it(world: World, clock: FakeClock):
    """Never wrote: the ru template. Wrote: free ru text. 24 h later: the template again."""
    runtime, api, app = world
    customer(api, "w1", "whatsapp")
    order(api, "w1")
    assert drain(runtime) == ["sent"]
    first = app.requests[-1].json()
    assert first["type"] == "template"
    assert first["template"]["language"] == {"code": "ru"}
    params = first["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["42", "shipped"]

    wrote = clock()
    customer_writes(api, wrote)
    assert last_inbound(runtime) == wrote.replace(microsecond=0)
    order(api, "w1")
    assert drain(runtime) == ["sent"]
    assert app.requests[-1].json()["text"] == {"preview_url": False, "body": "Заказ 42: shipped"}

    clock.advance(timedelta(hours=24, seconds=1).total_seconds())
    order(api, "w1")
    assert drain(runtime) == ["sent"]
    assert app.requests[-1].json()["type"] == "template"
    assert [m["type"] for m in app.sent] == ["template", "text", "template"]


def test_131047_fails_the_step_as_template_required_and_closes_the_window(
    world: World, clock: FakeClock
):
    """Our record said open, Meta says 131047: failed (not unknown), SMS next, window closed."""
    runtime, api, app = world
    customer(api, "w2", "whatsapp", "sms")
    customer_writes(api, clock())  # reaches us, but Meta's window is closed (sim never saw it)
    nid = order(api, "w2")
    assert drain(runtime) == ["sent"]
    (wa,) = show(api, nid)["attempts"]
    assert app.requests[-1].json()["type"] == "text"
    headers, body = sim.status_callback(
        sim.APP_SECRET,
        message_id=wa["provider_message_id"],
        status="failed",
        recipient_id=WA_ID,
        timestamp=int(clock().timestamp()),
        error_code=131047,
    )
    assert api.post("/v1/webhooks/whatsapp", content=body, headers=headers).status_code == 200
    assert drain(runtime) == ["sent"]  # the SMS, at once
    assert attempts(api, nid) == [("whatsapp", "escalated"), ("sms", "sent")]
    assert show(api, nid)["attempts"][0]["error_code"] == "template_required"
    assert last_inbound(runtime) is None
    order(api, "w2")
    drain(runtime)
    assert app.requests[-1].json()["type"] == "template"


def test_no_template_outside_the_window_skips_the_step_with_a_reason(world: World):
    """Inline content has no approved template: nothing sent to Meta, SMS right away."""
    runtime, api, app = world
    customer(api, "w3", "whatsapp", "sms")
    nid = order(api, "w3", template=None, data={}, content={"text": "Parcel at the door"})
    assert drain(runtime) == ["failed", "sent"]
    wa, sms = show(api, nid)["attempts"]
    assert (wa["state"], wa["error_code"], wa["cost"]) == ("escalated", "template_required", 0)
    assert sms["state"] == "sent"
    assert app.requests == []


@pytest.mark.parametrize(
    ("wrote_ago", "is_open"),
    [(None, False), (timedelta(hours=23, minutes=59), True), (timedelta(hours=24), False)],
)
def test_window_is_24_hours_from_the_last_inbound(wrote_ago: timedelta | None, is_open: bool):
    """Open for 24 hours after the customer's last message; channels without one always open."""
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    contact = ContactPoint(customer_id="c", channel="whatsapp", address=PHONE)
    contact.last_inbound_at = now - wrote_ago if wrote_ago is not None else None
    assert window_open(contact, Channel.WHATSAPP, now) is is_open
    assert window_open(contact, Channel.VIBER, now) is True
