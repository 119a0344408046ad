"""Whole cascades across real providers, with a real worker and signed callbacks:

* FCM push (unread) -> WhatsApp read via a signed webhook: no SMS is ever sent;
* FCM -> Telegram (the bot was blocked) -> SMTP -> Twilio with a signed 'delivered'.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.migrate import upgrade
from dispatcher.sweep import sweep
from tests.e2e.world import world
from tests.simulators import fcm, telegram, twilio, whatsapp
from tests.simulators.server import serve
from tests.simulators.smtp import SmtpSim
from tests.support.scenario import PHONE
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

PUSH_TOKEN = "device-" + "y" * 40


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture(name="db")
def _db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cascade.db'}"
    upgrade(url)
    return url


def test_fcm_unread_then_whatsapp_read_no_sms(db: str, redis_base: str, tmp_path: Path):
    """Push unread, WhatsApp read through a signed webhook: the SMS provider never hears of it."""
    account = fcm.make_service_account()
    fcm_sim, wa_sim, sms_sim = fcm.create_app(account), whatsapp.create_app(), twilio.create_app()
    with serve(fcm_sim) as fcm_url, serve(wa_sim) as wa_url, serve(sms_sim) as sms_url:
        providers: dict[str, dict[str, Any]] = {
            "fcm": {
                "base_url": fcm_url,
                "service_account_json": account.key_json(token_uri=f"{fcm_url}/token"),
            },
            "whatsapp": {
                "base_url": wa_url,
                "phone_number_id": whatsapp.PHONE_NUMBER_ID,
                "access_token": whatsapp.ACCESS_TOKEN,
                "app_secret": whatsapp.APP_SECRET,
            },
            "twilio": twilio.provider_settings(sms_url),
        }
        channels = {"push": ["fcm"], "whatsapp": ["whatsapp"], "sms": ["twilio"]}
        with world(
            database_url=db,
            redis_url=f"{redis_base}/10",
            data=tmp_path,
            channels=channels,
            providers=providers,
        ) as w:
            w.api.put(
                "/v1/customers/k1",
                json={
                    "contacts": [
                        {"channel": "push", "address": PUSH_TOKEN},
                        {"channel": "whatsapp", "address": PHONE},
                        {"channel": "sms", "address": PHONE},
                    ]
                },
            )
            # The customer wrote to us: WhatsApp's 24-hour window is open for free text.
            wrote = httpx.post(
                f"{wa_url}/_sim/inbound", json={"url": w.webhook("whatsapp"), "from": PHONE}
            )
            assert wrote.json()["status_code"] == 200
            nid = w.api.post(
                "/v1/notifications",
                json={
                    "customer_id": "k1",
                    "cascade": "basic",
                    "content": {"text": "Parcel at the door"},
                },
            ).json()["id"]
            assert w.step_done(nid, 0)["state"] == "sent"
            sweep(w.runtime, now=later(61))
            wa = w.step_done(nid, 1)
            assert wa_sim.sent[0]["type"] == "text"
            answer = httpx.post(
                f"{wa_url}/_sim/callback",
                json={
                    "url": w.webhook("whatsapp"),
                    "message_id": wa["provider_message_id"],
                    "status": "read",
                },
            )
            assert answer.json()["status_code"] == 200
            wait_until(lambda: w.show(nid)["state"] == "read", what="read")
            sweep(w.runtime, now=later(3000))
            assert w.attempts(nid) == [
                ("push", "fcm", "escalated"),
                ("whatsapp", "whatsapp", "read"),
            ]
            assert len(fcm_sim.fcm.sends) == 1
            assert len(wa_sim.sent) == 1
            assert sms_sim.requests == []


def test_fcm_telegram_smtp_twilio_delivered(db: str, redis_base: str, tmp_path: Path):
    """Every channel in turn; Telegram's blocked bot escalates at once and marks the contact;
    Twilio's signed 'delivered' finishes the notification."""
    account = fcm.make_service_account()
    fcm_sim, tg_sim, sms_sim = fcm.create_app(account), telegram.create_app(), twilio.create_app()
    with (
        serve(fcm_sim) as fcm_url,
        serve(tg_sim) as tg_url,
        serve(sms_sim) as sms_url,
        SmtpSim("none") as smtp,
    ):
        providers: dict[str, dict[str, Any]] = {
            "fcm": {
                "base_url": fcm_url,
                "service_account_json": account.key_json(token_uri=f"{fcm_url}/token"),
            },
            "telegram": {
                "base_url": tg_url,
                "token": telegram.TOKEN,
                "webhook_secret": "tg-secret-123",
            },
            "smtp": smtp.provider_settings(),
            "twilio": twilio.provider_settings(sms_url),
        }
        channels = {"push": ["fcm"], "telegram": ["telegram"], "email": ["smtp"], "sms": ["twilio"]}
        with world(
            database_url=db,
            redis_url=f"{redis_base}/10",
            data=tmp_path,
            channels=channels,
            providers=providers,
        ) as w:
            w.api.put(
                "/v1/customers/k2",
                json={
                    "contacts": [
                        {"channel": "push", "address": PUSH_TOKEN},
                        {
                            "channel": "telegram",
                            "address": "403",
                        },  # the simulator's "bot was blocked" chat
                        {"channel": "email", "address": "bob@example.com"},
                        {"channel": "sms", "address": PHONE},
                    ]
                },
            )
            nid = w.api.post(
                "/v1/notifications",
                json={
                    "customer_id": "k2",
                    "cascade": "basic",
                    "content": {"text": "Parcel at the door"},
                },
            ).json()["id"]
            w.step_done(nid, 0)
            sweep(w.runtime, now=later(61))
            assert w.step_done(nid, 1)["error_code"] is not None  # telegram: 403 blocked
            assert w.step_done(nid, 2)["state"] == "sent"  # e-mail went out at once
            sweep(w.runtime, now=later(181))
            sms = w.step_done(nid, 3)
            answer = httpx.post(
                f"{sms_url}/_sim/callback",
                json={"message_id": sms["provider_message_id"], "status": "delivered"},
            )
            assert answer.json()["status_code"] == 200
            wait_until(lambda: w.show(nid)["state"] == "delivered", what="delivered")
            assert w.attempts(nid) == [
                ("push", "fcm", "escalated"),
                ("telegram", "telegram", "escalated"),
                ("email", "smtp", "escalated"),
                ("sms", "twilio", "delivered"),
            ]
            contacts = {
                c["channel"]: c["status"] for c in w.api.get("/v1/customers/k2").json()["contacts"]
            }
            assert contacts["telegram"] == "invalid"
            assert (
                len(fcm_sim.fcm.sends),
                len(tg_sim.requests),
                len(smtp.messages),
                len(sms_sim.sent),
            ) == (1, 1, 1, 1)
            log = w.log.read_text()
            for personal in (
                PHONE,
                "bob@example.com",
                "Parcel at the door",
                PUSH_TOKEN,
                telegram.TOKEN,
            ):
                assert personal not in log
