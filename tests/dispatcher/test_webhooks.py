"""Webhook security at our API: a receipt changes state only with a valid signature.

For each signed provider: a valid callback finishes the notification; the same
callback again is a duplicate applied once; a missing or wrong signature, or a
body altered after signing, is refused (401/403) and changes nothing. Mailgun's
signed timestamp also stops replays of old callbacks. Attempts are really sent
through each provider's simulator first, so the message ids are the provider's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.dispatch import send_attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from tests.conftest import AUTH, make_settings
from tests.simulators import mailgun, smsru, telegram, twilio, viber, vk, whatsapp
from tests.simulators.server import serve
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, show

PUBLIC = "http://cascade.test"
Build = Callable[[dict[str, Any], str], tuple[dict[str, str], bytes, str]]


@dataclass(frozen=True)
class Case:
    name: str
    channel: str
    address: str
    config: Callable[[str], dict[str, Any]]
    build: Build  #: (attempt, secret) -> headers, body, path+query
    secret: str
    wait_for: str  #: the state a valid callback leads to
    bad_status: int = 403


def _whatsapp(attempt: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes, str]:
    headers, body = whatsapp.status_callback(
        secret,
        message_id=attempt["provider_message_id"],
        status="read",
        recipient_id=PHONE.lstrip("+"),
        timestamp=int(time.time()),
    )
    return headers, body, "/v1/webhooks/whatsapp"


def _viber(attempt: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes, str]:
    headers, body = viber.receipt_callback(
        secret,
        event="seen",
        message_token=int(attempt["provider_message_id"]),
        user_id="01234567890A=",
        timestamp=int(time.time() * 1000),
    )
    return headers, body, "/v1/webhooks/viber"


def _twilio(attempt: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes, str]:
    path = f"/v1/webhooks/twilio?ref={attempt['id']}"
    headers, body = twilio.status_callback(
        secret, PUBLIC + path, message_sid=attempt["provider_message_id"], status="delivered"
    )
    return headers, body, path


def _mailgun(attempt: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes, str]:
    event = mailgun.signed_event(
        secret,
        event="delivered",
        message_id=attempt["provider_message_id"],
        reference=attempt["id"],
    )
    return {"Content-Type": "application/json"}, json.dumps(event).encode(), "/v1/webhooks/mailgun"


def _vk(attempt: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes, str]:
    headers, body = vk.message_read(
        secret=secret, peer_id=5550001, read_message_id=int(attempt["provider_message_id"])
    )
    return headers, body, "/v1/webhooks/vk"


def _smsru(attempt: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes, str]:
    headers, body = smsru.callback_request(
        [(attempt["provider_message_id"], 103, int(time.time()))]
    )
    return headers, body, f"/v1/webhooks/smsru?secret={secret}"


CASES = [
    Case(
        "whatsapp",
        "whatsapp",
        PHONE,
        lambda url: {
            "base_url": url,
            "phone_number_id": whatsapp.PHONE_NUMBER_ID,
            "access_token": whatsapp.ACCESS_TOKEN,
            "app_secret": whatsapp.APP_SECRET,
        },
        _whatsapp,
        whatsapp.APP_SECRET,
        "read",
    ),
    Case(
        "viber",
        "viber",
        "01234567890A=",
        lambda url: {"base_url": url, "auth_token": viber.AUTH_TOKEN},
        _viber,
        viber.AUTH_TOKEN,
        "read",
    ),
    Case(
        "twilio",
        "sms",
        PHONE,
        lambda url: {
            "base_url": url,
            "account_sid": twilio.ACCOUNT_SID,
            "auth_token": twilio.AUTH_TOKEN,
            "sender": "+15005550006",
        },
        _twilio,
        twilio.AUTH_TOKEN,
        "delivered",
    ),
    Case(
        "mailgun",
        "email",
        "alice@example.com",
        lambda url: {
            "base_url": url,
            "api_key": "key-sim",
            "domain": "mg.example.test",
            "sender": "noreply@mg.example.test",
            "webhook_signing_key": "signing-key-sim",
        },
        _mailgun,
        "signing-key-sim",
        "delivered",
        bad_status=401,
    ),
    Case(
        "vk",
        "vk",
        "5550001",
        lambda url: {
            "base_url": url,
            "access_token": vk.ACCESS_TOKEN,
            "secret": vk.SECRET,
            "group_id": vk.GROUP_ID,
        },
        _vk,
        vk.SECRET,
        "read",
    ),
    Case(
        "smsru",
        "sms",
        "+79161234567",
        lambda url: {"base_url": url, "api_id": smsru.API_ID, "callback_secret": "smsru-secret-1"},
        _smsru,
        "smsru-secret-1",
        "delivered",
    ),
]
SIMS = {
    "whatsapp": whatsapp,
    "viber": viber,
    "twilio": twilio,
    "mailgun": mailgun,
    "vk": vk,
    "smsru": smsru,
}


@dataclass
class Setup:
    runtime: Runtime
    api: TestClient
    nid: str
    attempt: dict[str, Any]


@pytest.fixture(name="setup", params=CASES, ids=[c.name for c in CASES])
def _setup(
    request: pytest.FixtureRequest,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    db_engine: Engine,
    clock: FakeClock,
) -> Iterator[Setup]:
    case: Case = request.param
    with serve(SIMS[case.name].create_app()) as sim_url:
        settings = make_settings(
            database_url,
            redis_url,
            tmp_path,
            public_url=PUBLIC,
            channels={case.channel: [case.name]},
            providers={case.name: case.config(sim_url)},
        )
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        router = build_router(settings, client)
        runtime = Runtime(
            settings,
            load_cascades(settings.cascades_dir, router.available_channels()),
            db_engine,
            router,
            RecordingPublisher(),
            clock,
        )
        with TestClient(create_app(runtime), headers=AUTH) as api:
            assert (
                api.put(
                    "/v1/customers/h1",
                    json={"contacts": [{"channel": case.channel, "address": case.address}]},
                ).status_code
                == 200
            )
            if case.name == "whatsapp":  # free text needs the customer's message within 24 h
                headers, body = whatsapp.inbound_callback(
                    case.secret, sender=PHONE.lstrip("+"), timestamp=int(clock().timestamp())
                )
                wrote = api.post("/v1/webhooks/whatsapp", content=body, headers=headers)
                assert wrote.status_code == 200
            nid = api.post(
                "/v1/notifications",
                json={"customer_id": "h1", "cascade": "basic", "content": {"text": "hi"}},
            ).json()["id"]
            publisher = runtime.publisher
            assert isinstance(publisher, RecordingPublisher)
            assert send_attempt(runtime, publisher.published[0].attempt_id) == "sent"
            yield Setup(runtime, api, nid, show(api, nid)["attempts"][0])
        router.close()


def case_of(request: pytest.FixtureRequest) -> Case:
    return request.node.callspec.params["setup"]  # type: ignore[no-any-return]


def post(setup: Setup, headers: dict[str, str], body: bytes, path: str) -> int:
    response = setup.api.post(path, content=body, headers={**headers, "Authorization": ""})
    return int(response.status_code)


def test_valid_callback_finishes_once(setup: Setup, request: pytest.FixtureRequest):
    """A correctly signed callback finishes the cascade; the same callback again changes nothing."""
    case = case_of(request)
    headers, body, path = case.build(setup.attempt, case.secret)
    assert post(setup, headers, body, path) == 200
    view = show(setup.api, setup.nid)
    assert view["state"] == case.wait_for
    assert post(setup, headers, body, path) == 200  # providers retry; we dedupe
    again = show(setup.api, setup.nid)
    assert len(again["events"]) == len(view["events"])


def test_missing_and_wrong_signatures_change_nothing(setup: Setup, request: pytest.FixtureRequest):
    """No signature, or one made with the wrong key: refused, and the attempt is untouched."""
    case = case_of(request)
    headers, body, path = case.build(setup.attempt, "not-the-secret")
    assert post(setup, headers, body, path) in (401, 403)
    signature_headers = {"x-hub-signature-256", "x-viber-content-signature", "x-twilio-signature"}
    stripped = {k: v for k, v in headers.items() if k.lower() not in signature_headers}
    if case.name == "mailgun":
        event = json.loads(body)
        del event["signature"]
        body = json.dumps(event).encode()
    elif case.name == "vk":
        event = json.loads(body)
        event.pop("secret", None)
        body = json.dumps(event).encode()
    elif case.name == "smsru":
        path = path.split("?")[0]
    assert post(setup, stripped, body, path) in (401, 403)
    assert show(setup.api, setup.nid)["state"] == "in_progress"
    assert show(setup.api, setup.nid)["attempts"][0]["state"] == "sent"


@pytest.mark.parametrize(
    "setup",
    [c for c in CASES if c.name in ("whatsapp", "viber", "twilio")],
    ids=["whatsapp", "viber", "twilio"],
    indirect=True,
)
def test_body_altered_after_signing_is_refused(setup: Setup, request: pytest.FixtureRequest):
    """The signature covers the body: changing one byte after signing is refused."""
    case = case_of(request)
    headers, body, path = case.build(setup.attempt, case.secret)
    altered = (
        body.replace(b"read", b"sent", 1)
        if b"read" in body
        else body.replace(b"delivered", b"failed", 1)
    )
    if case.name == "viber":
        altered = body.replace(b"seen", b"sent", 1)
    assert altered != body
    assert post(setup, headers, altered, path) in (401, 403)
    assert show(setup.api, setup.nid)["state"] == "in_progress"


@pytest.mark.parametrize(
    "setup", [c for c in CASES if c.name == "mailgun"], ids=["mailgun"], indirect=True
)
def test_replayed_old_mailgun_callback_is_refused(setup: Setup):
    """A genuine Mailgun event captured an hour ago and replayed now is refused (403)."""
    event = mailgun.signed_event(
        "signing-key-sim",
        event="delivered",
        reference=setup.attempt["id"],
        message_id=setup.attempt["provider_message_id"],
        timestamp=int(time.time()) - 3600,
    )
    status = post(
        setup,
        {"Content-Type": "application/json"},
        json.dumps(event).encode(),
        "/v1/webhooks/mailgun",
    )
    assert status == 403
    assert show(setup.api, setup.nid)["state"] == "in_progress"


def test_telegram_secret_header_is_required(
    database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock
):
    """Telegram updates without the configured secret token header are refused."""
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        channels={"telegram": ["telegram"]},
        providers={"telegram": {"token": telegram.TOKEN, "webhook_secret": "tg-secret-123"}},
    )
    router = build_router(settings, None)
    runtime = Runtime(
        settings,
        load_cascades(settings.cascades_dir, router.available_channels()),
        db_engine,
        router,
        RecordingPublisher(),
        clock,
    )
    with TestClient(create_app(runtime)) as api:
        for secret in ("wrong-secret", "tg-secret-123"):
            headers, body = telegram.callback_update(
                secret=secret, chat_id=1, message_id=2, data="ack:nope"
            )
            status = api.post("/v1/webhooks/telegram", content=body, headers=headers).status_code
            assert status == (200 if secret == "tg-secret-123" else 403)


PATH_MAILGUN = "/v1/webhooks/mailgun"
MAILGUN_ONLY = pytest.mark.parametrize(
    "setup", [c for c in CASES if c.name == "mailgun"], ids=["mailgun"], indirect=True
)


def _mailgun_post(setup: Setup, event: dict[str, Any]) -> int:
    return post(
        setup, {"Content-Type": "application/json"}, json.dumps(event).encode(), PATH_MAILGUN
    )


@MAILGUN_ONLY
def test_mailgun_token_reused_with_forged_event_data_is_refused(setup: Setup):
    """A captured signature (it covers only timestamp + token) carries no other event-data."""
    # Given a genuine, uninteresting event whose signature an attacker captured
    genuine = mailgun.signed_event(
        "signing-key-sim", event="accepted", message_id="other@mg", reference=None
    )
    assert _mailgun_post(setup, genuine) == 200
    # When the same signature arrives with event-data that would finish our notification
    forged = mailgun.signed_event(
        "signing-key-sim",
        event="delivered",
        message_id=setup.attempt["provider_message_id"],
        reference=setup.attempt["id"],
    )
    forged["signature"] = genuine["signature"]
    # Then it is refused and nothing changes
    assert _mailgun_post(setup, forged) == 403
    assert show(setup.api, setup.nid)["state"] == "in_progress"
    assert show(setup.api, setup.nid)["attempts"][0]["state"] == "sent"


@MAILGUN_ONLY
def test_mailgun_identical_redelivery_is_acknowledged_once(setup: Setup):
    """Mailgun retries a delivery whose answer it missed: 200 again, applied once."""
    event = mailgun.signed_event(
        "signing-key-sim",
        event="delivered",
        message_id=setup.attempt["provider_message_id"],
        reference=setup.attempt["id"],
    )
    assert _mailgun_post(setup, event) == 200
    view = show(setup.api, setup.nid)
    assert view["state"] == "delivered"
    assert _mailgun_post(setup, event) == 200
    assert len(show(setup.api, setup.nid)["events"]) == len(view["events"])


@MAILGUN_ONLY
def test_mailgun_tokens_are_forgotten_once_stale(setup: Setup, clock: FakeClock):
    """Stored tokens are deleted when their timestamps could no longer be accepted."""
    from sqlmodel import Session, select

    from dispatcher.receipt_tables import WebhookNonce

    def tokens() -> set[str]:
        with Session(setup.runtime.engine) as session:
            return {row.nonce for row in session.exec(select(WebhookNonce)).all()}

    stamp = int(clock.current.timestamp())
    old = mailgun.signed_event(
        "signing-key-sim", event="accepted", message_id="m@mg", reference=None, timestamp=stamp
    )
    assert _mailgun_post(setup, old) == 200
    assert old["signature"]["token"] in tokens()
    clock.advance(16 * 60)
    new = mailgun.signed_event(
        "signing-key-sim",
        event="accepted",
        message_id="m@mg",
        reference=None,
        timestamp=int(clock.current.timestamp()),
    )
    assert _mailgun_post(setup, new) == 200
    assert tokens() == {new["signature"]["token"]}


def test_telegram_press_naming_another_attempt_confirms_nothing(
    database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock
):
    """``ack:<SMS attempt id>`` sent by a Telegram client (no MAC) does not mark the SMS read."""
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        channels={"telegram": ["telegram"]},
        providers={"telegram": {"token": telegram.TOKEN, "webhook_secret": "tg-secret-123"}},
    )
    router = build_router(settings, None)
    ack_key = router.provider("telegram").config.ack_key.get_secret_value()
    assert ack_key not in ("", "test-receipt-secret", "tg-secret-123")  # a key of its own
    runtime = Runtime(
        settings,
        load_cascades(settings.cascades_dir, router.available_channels()),
        db_engine,
        router,
        RecordingPublisher(),
        clock,
    )
    with TestClient(create_app(runtime), headers=AUTH) as api:
        # Given an SMS (sandbox) that was sent and waits for its delivery report
        contacts = [{"channel": "sms", "address": PHONE}]
        assert api.put("/v1/customers/t1", json={"contacts": contacts}).status_code == 200
        nid = api.post(
            "/v1/notifications",
            json={"customer_id": "t1", "cascade": "basic", "content": {"text": "hi"}},
        ).json()["id"]
        publisher = runtime.publisher
        assert isinstance(publisher, RecordingPublisher)
        assert send_attempt(runtime, publisher.published[0].attempt_id) == "sent"
        sms = show(api, nid)["attempts"][0]
        assert sms["channel"] == "sms"
        # When a Telegram client sends callback data naming that attempt
        headers, body = telegram.callback_update(
            secret="tg-secret-123", chat_id=1, message_id=2, data=f"ack:{sms['id']}"
        )
        response = api.post("/v1/webhooks/telegram", content=body, headers=headers)
        # Then the press is answered, and the SMS is untouched
        assert response.status_code == 200
        assert response.json()["method"] == "answerCallbackQuery"
        view = show(api, nid)
        assert view["state"] == "in_progress"
        assert view["attempts"][0]["state"] == "sent"
    router.close()
