"""One rule for HTTP server errors, the same for every HTTP provider (providers/http.py).

HTTP 503 means the request was not processed: ``NotSentError`` (retry, fail over),
whatever the body says. Any other 5xx may have been processed: ``UnknownOutcomeError``
(never resent on a paid channel). Each provider gets the same table, with an empty body
and with the body it sends itself with a server error. Also here, because it is the same
table: a ``Retry-After`` longer than the quick-retry cap is handed to the dispatcher at
once, one request and no sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from providers import REGISTRY
from providers.apns import ApnsProvider
from providers.base import Message
from providers.errors import NotSentError, UnknownOutcomeError
from providers.http import QUICK_RETRY
from providers.webpush import WebPushProvider
from tests.simulators import apns, fcm, webpush

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass(frozen=True)
class Case:
    recipient: str
    config: dict[str, Any]
    #: what the provider itself answers with a server error (that alone would say "unknown")
    server_error: Any


def _cases() -> dict[str, Case]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    vapid = ec.generate_private_key(ec.SECP256R1())
    key = apns.make_key()
    subscription = webpush.create_app().webpush.subscribe("https://push.test", "b1").as_json()
    phone = "+79161234567"
    return {
        "fcm": Case(
            "device-token-" + "x" * 40,
            {"service_account_json": fcm.make_service_account().key_json("https://oauth.test/t")},
            {
                "error": {
                    "code": 500,
                    "status": "INTERNAL",
                    "message": "Internal error encountered.",
                    "details": [{"@type": FCM_ERROR, "errorCode": "INTERNAL"}],
                }
            },
        ),
        "apns": Case(
            "0f" * 32,
            {
                "team_id": key.team_id,
                "key_id": key.key_id,
                "private_key": key.private_key_pem,
                "topic": "com.example.shop",
            },
            {"reason": "InternalServerError"},
        ),
        "webpush": Case(
            subscription,
            {
                "vapid_private_key": vapid.private_bytes(
                    Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
                ).decode(),
                "vapid_subject": "mailto:ops@example.test",
            },
            {"error": "internal"},
        ),
        "telegram": Case(
            "123456789",
            {"token": "123:abc"},
            {"ok": False, "error_code": 500, "description": "Internal Server Error"},
        ),
        "whatsapp": Case(
            phone,
            {"phone_number_id": "1055", "access_token": "t"},
            {
                "error": {
                    "message": "Something went wrong",
                    "type": "OAuthException",
                    "code": 131000,
                }
            },
        ),
        "viber": Case(
            "01234567890A=", {"auth_token": "t"}, {"status": 1, "status_message": "error"}
        ),
        "vk": Case(
            "5550001",
            {"access_token": "t"},
            {"error": {"error_code": 10, "error_msg": "Internal server error"}},
        ),
        "mailgun": Case(
            "alice@example.com",
            {"api_key": "k", "domain": "mg.example.test", "sender": "noreply@mg.example.test"},
            {"message": "Internal Server Error"},
        ),
        "twilio": Case(
            phone,
            {"account_sid": "AC" + "0" * 32, "auth_token": "t", "sender": "+15005550006"},
            {"code": 20500, "message": "Internal Server Error", "status": 500},
        ),
        "smsru": Case(
            phone, {"api_id": "k"}, {"status": "ERROR", "status_code": 500, "status_text": "x"}
        ),
    }


CASES = _cases()
HTTP_PROVIDERS = sorted(name for name in REGISTRY if name != "smtp")


def test_every_http_provider_is_in_the_table() -> None:
    """A new HTTP provider must join this table (SMTP has no HTTP status to map)."""
    assert sorted(CASES) == HTTP_PROVIDERS


@dataclass
class Sent:
    requests: list[httpx.Request]
    waits: list[float]
    error: Exception


@pytest.fixture(name="send")
def _send(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Sent]]:
    clients: list[httpx.Client] = []

    def send(name: str, answer: httpx.Response, expected: type[Exception]) -> Sent:
        case, cls = CASES[name], REGISTRY[name]
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/t"):  # FCM's OAuth token endpoint
                return httpx.Response(200, json={"access_token": "at", "expires_in": 3599})
            seen.append(request)
            return answer

        waits: list[float] = []
        for attribute in vars(cls).values():  # every @quick_retry() method: record, never sleep
            if hasattr(attribute, "retry"):
                monkeypatch.setattr(attribute.retry, "sleep", waits.append)
        client = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(client)
        config = cls.config_model.model_validate(case.config)
        extra: dict[str, Any] = {"http2_client": client} if cls is ApnsProvider else {}
        if cls is WebPushProvider:  # the endpoint's host resolves to a public address
            extra["resolver"] = lambda host, port: ["93.184.216.34"]
        provider = cls(config, client, **extra)
        message = Message(
            recipient=case.recipient,
            text="hi",
            reference="a1",
            idempotency_key="k1",
            window_open=True,  # WhatsApp sends free text only inside its 24-hour window
        )
        with pytest.raises(expected) as caught:
            provider.send(message)
        assert type(caught.value) is expected, caught.value
        return Sent(seen, waits, caught.value)

    yield send
    for client in clients:
        client.close()


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
@pytest.mark.parametrize("with_body", [False, True], ids=["empty", "provider-body"])
def test_503_is_not_sent(send: Callable[..., Sent], name: str, with_body: bool) -> None:
    """503: not processed, so "not sent" (retried quickly, then failover), whatever the body."""
    body = CASES[name].server_error if with_body else None
    answer = httpx.Response(503, json=body) if body is not None else httpx.Response(503)
    sent = send(name, answer, NotSentError)
    assert len(sent.requests) == QUICK_RETRY.attempts


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("with_body", [False, True], ids=["empty", "provider-body"])
def test_other_5xx_is_unknown_outcome(
    send: Callable[..., Sent], name: str, status: int, with_body: bool
) -> None:
    """Another 5xx may have been processed: unknown outcome, sent once, never retried."""
    body = CASES[name].server_error if with_body else None
    answer = httpx.Response(status, json=body) if body is not None else httpx.Response(status)
    sent = send(name, answer, UnknownOutcomeError)
    assert len(sent.requests) == 1
    assert sent.waits == []


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_long_retry_after_goes_to_the_dispatcher_at_once(
    send: Callable[..., Sent], name: str
) -> None:
    """503 with Retry-After: 120 is one request and no sleep; the error carries the 120 s."""
    sent = send(name, httpx.Response(503, headers={"Retry-After": "120"}), NotSentError)
    assert len(sent.requests) == 1
    assert sent.waits == []
    assert isinstance(sent.error, NotSentError)
    assert sent.error.retry_after == 120.0


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_short_retry_after_is_honoured(send: Callable[..., Sent], name: str) -> None:
    """503 with Retry-After within the cap: the quick retries wait what the provider asked."""
    wait = QUICK_RETRY.max_retry_after
    sent = send(name, httpx.Response(503, headers={"Retry-After": str(wait)}), NotSentError)
    assert sent.waits == [wait] * (len(sent.requests) - 1)
    assert len(sent.requests) > 1
