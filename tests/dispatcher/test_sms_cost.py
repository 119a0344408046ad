"""SMS is billed per segment: on attempts, on notifications, and in /v1/stats' baseline."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from dispatcher.models import Notification
from dispatcher.sweep import sweep
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import PHONE, PUSH_TOKEN, put_customer, receipt, send, show

#: The issue's case: 200 Cyrillic characters are UCS-2, 3 parts of 67.
RUSSIAN_200 = ("Ваш заказ собран и передан курьеру. " * 6)[:200]
#: 156 GSM-7 characters, 5 of them from the extension table (two septets each): 161 > 160.
GSM_WITH_EXTENSION = "Price 10€ [promo] {code}: " + "a" * 130
SMS_PRICE = 0.05  #: the default CASCADE_COSTS for sms


def test_segments_cost_on_attempts_and_in_stats(make: Make, clock: FakeClock):
    """UCS-2 3 segments, GSM-7 with extension 2 segments: costs and the SMS-only baseline."""
    runtime, api = make()
    sms_only = [{"channel": "sms", "address": PHONE}]
    put_customer(api, "k1", contacts=sms_only)
    put_customer(api, "k2", contacts=[{"channel": "push", "address": PUSH_TOKEN}, *sms_only])
    assert (len(RUSSIAN_200), len(GSM_WITH_EXTENSION)) == (200, 156)
    russian = send(api, "k1", content={"text": RUSSIAN_200})["id"]
    gsm = send(api, "k1", content={"text": GSM_WITH_EXTENSION})["id"]
    read_on_push = send(api, "k2", content={"title": "Заказ", "text": RUSSIAN_200})["id"]
    assert drain(runtime) == ["sent", "sent", "sent"]
    push = show(api, read_on_push)["attempts"][0]
    receipt(api, push["id"], "read")

    (ucs2,) = show(api, russian)["attempts"]
    (gsm7,) = show(api, gsm)["attempts"]
    assert (ucs2["encoding"], ucs2["segments"], ucs2["cost"]) == (
        "ucs2",
        3,
        pytest.approx(3 * SMS_PRICE),
    )
    assert (gsm7["encoding"], gsm7["segments"], gsm7["cost"]) == (
        "gsm7",
        2,
        pytest.approx(2 * SMS_PRICE),
    )
    assert show(api, russian)["cost"] == pytest.approx(3 * SMS_PRICE)
    with Session(runtime.engine) as session:
        segments = {
            nid: session.get(Notification, nid).sms_segments  # type: ignore[union-attr]
            for nid in (russian, gsm, read_on_push)
        }
    assert segments == {russian: 3, gsm: 2, read_on_push: 3}

    stats = api.get("/v1/stats").json()
    by_channel = {c["channel"]: c for c in stats["channels"]}
    assert by_channel["sms"]["cost"] == pytest.approx(5 * SMS_PRICE)
    assert stats["cost"] == pytest.approx(5 * SMS_PRICE)
    # SMS-only: every notification as SMS, per segment; the push-read one saved 3 segments.
    assert stats["sms_only_cost"] == pytest.approx(8 * SMS_PRICE)
    assert stats["saved"] == pytest.approx(3 * SMS_PRICE)


def test_unknown_outcome_is_charged_per_segment(make: Make, clock: FakeClock):
    """A worker lost mid-send: the stale claim is charged every segment it may have billed."""
    from config.settings import SandboxSettings

    runtime, api = make(sandbox=SandboxSettings(scenarios={PHONE: "unknown"}))
    put_customer(api, "u1", contacts=[{"channel": "sms", "address": PHONE}])
    nid = send(api, "u1", content={"text": RUSSIAN_200})["id"]
    assert drain(runtime) == ["unknown"]
    (sms,) = show(api, nid)["attempts"]
    assert (sms["state"], sms["segments"], sms["cost"]) == (
        "unknown",
        3,
        pytest.approx(3 * SMS_PRICE),
    )
    sweep(runtime, now=clock.advance(241))
    assert show(api, nid)["cost"] == pytest.approx(3 * SMS_PRICE)
