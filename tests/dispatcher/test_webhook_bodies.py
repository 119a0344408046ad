"""Malformed webhook bodies: a 400 problem JSON from every receiver, never a 500.

Each body is sent unsigned and, where the provider signs something we can compute
without parsing (the raw body, a header secret, the URL), correctly signed, so the
receiver really reaches its parser. Nothing may be stored either way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.db import get_engine
from dispatcher.publisher import RecordingPublisher
from dispatcher.receipt_tables import ProviderEvent
from dispatcher.runtime import Runtime, build_router
from tests.conftest import make_settings
from tests.simulators import mailgun, smsru, telegram, twilio, viber, vk, whatsapp
from tests.support.clock import FakeClock
from tests.support.database import truncate

PUBLIC = "http://cascade.test"
TG_SECRET = "tg-secret-123"
SMSRU_SECRET = "smsru-secret-1"
PROVIDERS = {
    "whatsapp": {
        "phone_number_id": whatsapp.PHONE_NUMBER_ID,
        "access_token": whatsapp.ACCESS_TOKEN,
        "app_secret": whatsapp.APP_SECRET,
    },
    "viber": {"auth_token": viber.AUTH_TOKEN},
    "twilio": {
        "account_sid": twilio.ACCOUNT_SID,
        "auth_token": twilio.AUTH_TOKEN,
        "sender": "+15005550006",
    },
    "mailgun": {
        "api_key": "key-sim",
        "domain": "mg.example.test",
        "sender": "noreply@mg.example.test",
        "webhook_signing_key": "signing-key-sim",
    },
    "vk": {"access_token": vk.ACCESS_TOKEN, "secret": vk.SECRET, "group_id": vk.GROUP_ID},
    "smsru": {"api_id": smsru.API_ID, "callback_secret": SMSRU_SECRET},
    "telegram": {"token": telegram.TOKEN, "webhook_secret": TG_SECRET},
}

#: Bodies a hostile client (or a broken proxy) may send.
BODIES: dict[str, bytes] = {
    "nested_lists_60k": b"[" * 30_000 + b"]" * 30_000,
    "nested_objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "unterminated_nesting": b"[" * 60_000,
    "invalid_utf8": b'{"a": "\xff\xfe\x80"}',
    "truncated": b'{"signature": {"token": ',
    "huge_integer": b"1" * 5_000,
    "array": b"[1, 2, 3]",
    "string": b'"hello"',
    "null": b"null",
    "nan": b"NaN",
    "empty": b"",
}

Signer = Callable[[bytes], tuple[dict[str, str], str]]


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {"Content-Type": "application/json", **headers}


def _twilio_signed(body: bytes) -> tuple[dict[str, str], str]:
    path = "/v1/webhooks/twilio?ref=a1"
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    params = {name: values[0] for name, values in form.items()}
    signature = twilio.sign(twilio.AUTH_TOKEN, PUBLIC + path, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return headers, path


#: provider -> how to sign a raw body so that the receiver gets as far as parsing it.
SIGNED: dict[str, Signer] = {
    "whatsapp": lambda body: (whatsapp.sign(whatsapp.APP_SECRET, body), "/v1/webhooks/whatsapp"),
    "viber": lambda body: (
        _json(
            {
                "X-Viber-Content-Signature": hmac.new(
                    viber.AUTH_TOKEN.encode(), body, hashlib.sha256
                ).hexdigest()
            }
        ),
        "/v1/webhooks/viber",
    ),
    "telegram": lambda body: (
        _json({"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}),
        "/v1/webhooks/telegram",
    ),
    "mailgun": lambda body: (_json({}), "/v1/webhooks/mailgun"),  # signed inside the body
    "vk": lambda body: (_json({}), "/v1/webhooks/vk"),  # secret inside the body
    "twilio": _twilio_signed,
    "smsru": lambda body: (
        {"Content-Type": "application/x-www-form-urlencoded"},
        f"/v1/webhooks/smsru?secret={SMSRU_SECRET}",
    ),
}
#: Form receivers read any bytes as a (possibly empty) form: a signed one is acknowledged
#: and carries no receipt (SMS.ru and Twilio retry anything else).
FORM_RECEIVERS = {"twilio", "smsru"}


@pytest.fixture(name="db_engine", scope="module")
def _db_engine(database_url: str) -> Engine:
    engine = get_engine(database_url)
    truncate(engine)
    return engine


@pytest.fixture(name="api", scope="module")
def _api(
    database_url: str, db_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One app with every receiver configured (no Redis needed: nothing is published)."""
    settings = make_settings(
        database_url,
        "redis://127.0.0.1:1/0",
        tmp_path_factory.mktemp("bodies"),
        public_url=PUBLIC,
        providers=PROVIDERS,
    )
    router = build_router(settings, None)
    runtime = Runtime(
        settings,
        load_cascades(settings.cascades_dir, router.available_channels()),
        db_engine,
        router,
        RecordingPublisher(),
        FakeClock(),
    )
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client
    router.close()


def _stored(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(ProviderEvent)).all())


@pytest.mark.parametrize("body_name", list(BODIES))
@pytest.mark.parametrize("provider", list(SIGNED))
def test_malformed_body_is_a_400_problem(
    api: TestClient, db_engine: Engine, provider: str, body_name: str
):
    """A malformed body reaching the parser answers 400 problem JSON (forms: acknowledged)."""
    body = BODIES[body_name]
    headers, path = SIGNED[provider](body)
    response = api.post(path, content=body, headers=headers)
    if provider in FORM_RECEIVERS:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 400
        assert problem["errors"][0]["field"] == "(body)"
    assert _stored(db_engine) == 0


@pytest.mark.parametrize("body_name", list(BODIES))
@pytest.mark.parametrize("provider", list(SIGNED))
def test_malformed_unsigned_body_is_refused_without_a_500(
    api: TestClient, db_engine: Engine, provider: str, body_name: str
):
    """Without a signature a malformed body is a client error (400/401/403), never a 500."""
    body = BODIES[body_name]
    path = SIGNED[provider](body)[1].split("?")[0]
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 401, 403), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert _stored(db_engine) == 0


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("mailgun", {"signature": "yes", "event-data": {}}),
        ("mailgun", {"signature": {"timestamp": [1], "token": {}, "signature": None}}),
        ("vk", {"type": "message_read", "secret": ["not", "a", "string"], "object": []}),
        ("vk", {"type": ["confirmation"], "group_id": {"x": 1}}),
        ("telegram", {"callback_query": ["id", 1]}),
        ("telegram", {"callback_query": {"id": 1, "data": {"ack": 1}, "from": []}}),
    ],
)
def test_wrong_json_shape_never_500(api: TestClient, provider: str, body: object):
    """Valid JSON of the wrong shape is a client error or ignored, never a 500."""
    import json

    raw = json.dumps(body).encode()
    headers, path = SIGNED[provider](raw)
    response = api.post(path, content=raw, headers=headers)
    assert response.status_code in (200, 400, 401, 403), response.text


def test_mailgun_signed_event_data_of_wrong_shape_is_400(api: TestClient, db_engine: Engine):
    """A correctly signed Mailgun body whose ``event-data`` is not an object: 400."""
    import json

    event = mailgun.signed_event(
        "signing-key-sim", event="delivered", message_id="m1@mg", reference=None
    )
    event["event-data"] = [event["event-data"]]
    response = api.post(
        "/v1/webhooks/mailgun",
        content=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert _stored(db_engine) == 0
