"""Each real provider end to end: a real Celery worker sends through it to a local server
speaking the provider's wire format, and, where the provider calls back, a correctly
signed receipt finishes the cascade through our webhook endpoint over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.migrate import upgrade
from tests.e2e.world import World, world
from tests.simulators import (
    apns,
    fcm,
    mailgun,
    smsru,
    telegram,
    twilio,
    viber,
    vk,
    webpush,
    whatsapp,
)
from tests.simulators.server import serve, serve_h2
from tests.simulators.smtp import SmtpSim
from tests.support.scenario import PHONE
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(name="db")
def _db(tmp_path: Path) -> str:
    """Provider behaviour does not depend on the database: one SQLite file per test."""
    url = f"sqlite:///{tmp_path / 'providers.db'}"
    upgrade(url)
    return url


@pytest.fixture(name="redis_url")
def _redis_url(redis_base: str) -> str:
    return f"{redis_base}/10"


def make_world(
    db: str, redis_url: str, tmp_path: Path, channel: str, name: str, config: dict[str, Any]
):
    return world(
        database_url=db,
        redis_url=redis_url,
        data=tmp_path,
        channels={channel: [name]},
        providers={name: config},
    )


def notify(w: World, customer: str, contacts: list[dict[str, str]]) -> str:
    response = w.api.put(f"/v1/customers/{customer}", json={"contacts": contacts})
    assert response.status_code == 200, response.text
    response = w.api.post(
        "/v1/notifications",
        json={
            "customer_id": customer,
            "cascade": "basic",
            "content": {"title": "Parcel", "text": "At the door"},
        },
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def sent_attempt(w: World, nid: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        attempts = w.show(nid)["attempts"]
        return (
            dict(attempts[0])
            if attempts and attempts[0]["state"] not in ("pending", "sending")
            else None
        )

    attempt = wait_until(probe, what="the first attempt to be sent")
    assert attempt["state"] == "sent", attempt
    return attempt


def finished(w: World, nid: str, state: str) -> dict[str, Any]:
    return wait_until(lambda: (v := w.show(nid))["state"] == state and v, what=f"state {state}")


def callback(sim_url: str, **body: Any) -> None:
    response = httpx.post(f"{sim_url}/_sim/callback", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status_code"] == 200, response.json()


def app_confirms(w: World, data: dict[str, str]) -> None:
    """The app on the device calls ack_url with the receipt token it got in the push."""
    response = httpx.post(
        data["ack_url"],
        json={"attempt_id": data["attempt_id"], "status": "read", "token": data["receipt_token"]},
    )
    assert response.status_code == 200, response.text


def test_fcm_push_read_confirmed_by_the_app(db: str, redis_url: str, tmp_path: Path):
    """FCM: OAuth token, send, the app confirms with the receipt token in the data payload."""
    account = fcm.make_service_account()
    sim = fcm.create_app(account)
    with serve(sim) as url:
        config = {
            "base_url": url,
            "service_account_json": account.key_json(token_uri=f"{url}/token"),
        }
        with make_world(db, redis_url, tmp_path, "push", "fcm", config) as w:
            nid = notify(w, "f1", [{"channel": "push", "address": "device-" + "x" * 40}])
            attempt = sent_attempt(w, nid)
            assert attempt["provider"] == "fcm"
            (sent,) = sim.fcm.sends
            data = sent.json()["message"]["data"]
            assert data["attempt_id"] == attempt["id"]
            assert attempt["provider_message_id"].startswith("projects/")
            app_confirms(w, data)
            assert finished(w, nid, "read")["attempts"][0]["state"] == "read"


def test_apns_push_over_http2_read_confirmed_by_the_app(db: str, redis_url: str, tmp_path: Path):
    """APNs beside FCM on the push channel: the hex device token goes to APNs over HTTP/2
    (h2c simulator checking the ES256 provider token), and the app confirms with the receipt
    token it found in the payload."""
    key = apns.make_key()
    account = fcm.make_service_account()
    sim = apns.create_app(key, topic="com.example.shop")
    fcm_sim = fcm.create_app(account)
    with serve_h2(sim) as url, serve(fcm_sim) as fcm_url:
        providers = {
            "fcm": {
                "base_url": fcm_url,
                "service_account_json": account.key_json(token_uri=f"{fcm_url}/token"),
            },
            "apns": {
                "base_url": url,
                "team_id": key.team_id,
                "key_id": key.key_id,
                "private_key": key.private_key_pem,
                "topic": "com.example.shop",
            },
        }
        with world(
            database_url=db,
            redis_url=redis_url,
            data=tmp_path,
            channels={"push": ["fcm", "apns"]},
            providers=providers,
        ) as w:
            device = "a1" * 32
            nid = notify(w, "i1", [{"channel": "push", "address": device}])
            attempt = sent_attempt(w, nid)
            assert attempt["provider"] == "apns"
            (sent,) = sim.apns.sent
            assert sent["device_token"] == device
            assert sent["http_version"] == "2"
            assert attempt["provider_message_id"] == sent["apns_id"]
            assert sent["payload"]["aps"]["alert"] == {"title": "Parcel", "body": "At the door"}
            assert sent["payload"]["attempt_id"] == attempt["id"]
            assert fcm_sim.fcm.sends == []
            app_confirms(w, sent["payload"])
            assert finished(w, nid, "read")["attempts"][0]["state"] == "read"


def test_webpush_read_confirmed_by_the_service_worker(db: str, redis_url: str, tmp_path: Path):
    """Web Push: VAPID + aes128gcm to the push service; the service worker confirms."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    sim = webpush.create_app()
    with serve(sim) as url:
        config = {
            "vapid_private_key": pem,
            "vapid_subject": "mailto:ops@example.test",
            "allow_insecure_endpoints": True,
            "allow_private_endpoints": True,
        }
        with make_world(db, redis_url, tmp_path, "push", "webpush", config) as w:
            subscription = sim.webpush.subscribe(url, "browser-1").as_json()
            nid = notify(w, "w1", [{"channel": "push", "address": subscription}])
            attempt = sent_attempt(w, nid)
            (delivered,) = sim.sent
            assert delivered["payload"]["body"] == "At the door"
            app_confirms(w, delivered["payload"]["data"])
            assert finished(w, nid, "read")["attempts"][0]["id"] == attempt["id"]


def test_telegram_sent_finishes_and_button_press_is_recorded(
    db: str, redis_url: str, tmp_path: Path
):
    """Telegram: accepted = sent (its step waits for 'sent'); the ack button press is a read."""
    sim = telegram.create_app()
    with serve(sim) as url:
        config = {"base_url": url, "token": telegram.TOKEN, "webhook_secret": "tg-secret-123"}
        with make_world(db, redis_url, tmp_path, "telegram", "telegram", config) as w:
            nid = notify(w, "t1", [{"channel": "telegram", "address": "123456789"}])
            view = finished(w, nid, "sent")
            assert view["attempts"][0]["provider"] == "telegram"
            callback(
                url,
                url=w.webhook("telegram"),
                message_id=view["attempts"][0]["provider_message_id"],
                secret="tg-secret-123",
            )
            read = wait_until(lambda: w.show(nid)["attempts"][0]["read_at"], what="read_at")
            assert read


@pytest.mark.parametrize(
    ("name", "sim_module", "address", "config_of"),
    [
        (
            "whatsapp",
            whatsapp,
            PHONE,
            lambda url: {
                "base_url": url,
                "phone_number_id": whatsapp.PHONE_NUMBER_ID,
                "access_token": whatsapp.ACCESS_TOKEN,
                "app_secret": whatsapp.APP_SECRET,
            },
        ),
        (
            "viber",
            viber,
            "01234567890A=",
            lambda url: {"base_url": url, "auth_token": viber.AUTH_TOKEN},
        ),
        (
            "vk",
            vk,
            "5550001",
            lambda url: {
                "base_url": url,
                "access_token": vk.ACCESS_TOKEN,
                "secret": vk.SECRET,
                "group_id": vk.GROUP_ID,
                "confirmation_code": "confirm-me",
            },
        ),
    ],
)
def test_messenger_read_receipt_finishes(
    db: str,
    redis_url: str,
    tmp_path: Path,
    name: str,
    sim_module: Any,
    address: str,
    config_of: Any,
):
    """WhatsApp, Viber, VK: sent through the simulator, a signed read callback finishes it."""
    sim = sim_module.create_app()
    with serve(sim) as url, make_world(db, redis_url, tmp_path, name, name, config_of(url)) as w:
        if name == "whatsapp":  # free text only within 24 h of the customer's own message
            contacts = {"contacts": [{"channel": name, "address": address}]}
            assert w.api.put(f"/v1/customers/{name}-1", json=contacts).status_code == 200
            wrote = httpx.post(
                f"{url}/_sim/inbound", json={"url": w.webhook(name), "from": address}
            )
            assert wrote.json()["status_code"] == 200
        nid = notify(w, f"{name}-1", [{"channel": name, "address": address}])
        attempt = sent_attempt(w, nid)
        assert attempt["provider"] == name
        assert len(sim.sent) == 1
        callback(url, url=w.webhook(name), message_id=attempt["provider_message_id"], status="read")
        view = finished(w, nid, "read")
        assert [e["source"] for e in view["events"] if e["type"] == "read"] == [f"webhook:{name}"]


def test_smtp_email_sent_through_a_real_smtp_server(db: str, redis_url: str, tmp_path: Path):
    """SMTP (aiosmtpd with AUTH): the mail arrives with our Message-ID; no receipt exists."""
    with SmtpSim("none") as smtp:
        config = {
            "host": smtp.host,
            "port": smtp.port,
            "security": "none",
            "username": smtp.username,
            "password": smtp.password,
            "sender": "Shop <noreply@shop.example>",
        }
        with make_world(db, redis_url, tmp_path, "email", "smtp", config) as w:
            nid = notify(w, "e1", [{"channel": "email", "address": "alice@example.com"}])
            attempt = sent_attempt(w, nid)
            (mail,) = smtp.messages
            assert mail.email["Message-ID"].strip("<>") == attempt["provider_message_id"]
            assert mail.email["X-Cascade-Reference"] == attempt["id"]
            assert w.show(nid)["state"] == "in_progress"  # waits for 'delivered' it cannot get


def test_mailgun_delivered_event_finishes(db: str, redis_url: str, tmp_path: Path):
    """Mailgun: sent via the HTTP API; a signed 'delivered' event finishes the cascade."""
    sim = mailgun.create_app()
    with serve(sim) as url:
        config = {
            "base_url": url,
            "api_key": "key-sim",
            "domain": "mg.example.test",
            "sender": "noreply@mg.example.test",
            "webhook_signing_key": "signing-key-sim",
        }
        with make_world(db, redis_url, tmp_path, "email", "mailgun", config) as w:
            nid = notify(w, "m1", [{"channel": "email", "address": "alice@example.com"}])
            attempt = sent_attempt(w, nid)
            callback(
                url,
                url=w.webhook("mailgun"),
                event="delivered",
                message_id=attempt["provider_message_id"],
                reference=attempt["id"],
            )
            assert finished(w, nid, "delivered")["attempts"][0]["state"] == "delivered"


def test_twilio_signed_delivered_callback_finishes(db: str, redis_url: str, tmp_path: Path):
    """Twilio: form POST with Basic auth; the StatusCallback (ours, with ?ref=) is signed and
    verified over the public URL."""
    sim = twilio.create_app()
    with serve(sim) as url:
        config = {
            "base_url": url,
            "account_sid": twilio.ACCOUNT_SID,
            "auth_token": twilio.AUTH_TOKEN,
            "sender": "+15005550006",
        }
        with make_world(db, redis_url, tmp_path, "sms", "twilio", config) as w:
            nid = notify(w, "s1", [{"channel": "sms", "address": PHONE}])
            attempt = sent_attempt(w, nid)
            (sent,) = sim.sent
            assert sent["status_callback"] == f"{w.webhook('twilio')}?ref={attempt['id']}"
            callback(url, message_id=attempt["provider_message_id"], status="delivered")
            assert finished(w, nid, "delivered")["attempts"][0]["provider"] == "twilio"


def test_smsru_delivered_callback_finishes(db: str, redis_url: str, tmp_path: Path):
    """SMS.ru: JSON send answer per number; a status callback (code 103) finishes it."""
    sim = smsru.create_app()
    with serve(sim) as url:
        config = {"base_url": url, "api_id": smsru.API_ID, "callback_secret": "smsru-secret-1"}
        with make_world(db, redis_url, tmp_path, "sms", "smsru", config) as w:
            nid = notify(w, "s2", [{"channel": "sms", "address": "+79161234567"}])
            attempt = sent_attempt(w, nid)
            hook = f"{w.webhook('smsru')}?secret=smsru-secret-1"
            response = httpx.post(
                f"{url}/_sim/callback",
                json={"url": hook, "message_id": attempt["provider_message_id"], "status": 103},
            )
            assert response.json()["acknowledged"] is True
            assert finished(w, nid, "delivered")["attempts"][0]["provider"] == "smsru"
