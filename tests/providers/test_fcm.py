"""FCM HTTP v1: request shape, error table, OAuth token flow, and the live simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from providers.base import Message, Provider
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
)
from providers.fcm import SCOPE, FcmConfig, FcmProvider
from tests.simulators.fcm import SimServiceAccount, create_app, make_service_account
from tests.simulators.server import serve
from tests.support.retries import record_retry_waits

TOKEN_URI = "https://oauth.test/token"
SEND_URL = "https://fcm.test/v1/projects/cascade-sim/messages:send"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
MESSAGE = Message(
    recipient="device-token-1",
    text="Your order #42 is on its way",
    title="Order shipped",
    reference="att_1",
    idempotency_key="idem_1",
    data={"notification_id": "n_1", "attempt_id": "att_1", "receipt_token": "rt_1"},
)


@pytest.fixture(name="account", scope="module")
def _account() -> SimServiceAccount:
    return make_service_account()


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, FcmProvider._send)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _config(account: SimServiceAccount, **overrides: Any) -> FcmConfig:
    values: dict[str, Any] = {
        "base_url": "https://fcm.test",
        "service_account_json": account.key_json(TOKEN_URI),
        "timeout": 7.0,
    }
    values.update(overrides)
    return FcmConfig.model_validate(values)


def _rpc(status: int, canonical: str, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": canonical}
    if code:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": code}]
    return {"error": error}


class Fake:
    """A MockTransport handler: issues tokens and answers sends from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.tokens: list[httpx.Request] = []
        self.sends: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URI:
            self.tokens.append(request)
            body = {"access_token": f"tok-{len(self.tokens)}", "expires_in": 3599}
            return httpx.Response(200, json={**body, "token_type": "Bearer"})
        self.sends.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


OK = httpx.Response(200, json={"name": "projects/cascade-sim/messages/0:1%abc"})


@pytest.fixture(name="make")
def _make(account: SimServiceAccount) -> Iterator[Callable[..., tuple[FcmProvider, Fake]]]:
    clients: list[httpx.Client] = []

    def make(*answers: httpx.Response | Exception, **config: Any) -> tuple[FcmProvider, Fake]:
        fake = Fake(*(answers or (OK,)))
        client = httpx.Client(transport=httpx.MockTransport(fake))
        clients.append(client)
        clock = config.pop("clock", Clock())
        return FcmProvider(_config(account, **config), client, clock=clock), fake

    yield make
    for client in clients:
        client.close()


def test_send_posts_the_v1_message(make: Callable[..., tuple[FcmProvider, Fake]]) -> None:
    """One send is a Bearer-authenticated POST of the exact v1 message, with our timeouts."""
    provider, fake = make()
    result = provider.send(MESSAGE)
    assert result.provider_message_id == "projects/cascade-sim/messages/0:1%abc"
    assert result.cost is None
    [request] = fake.sends
    assert str(request.url) == SEND_URL
    assert request.headers["authorization"] == "Bearer tok-1"
    assert json.loads(request.content) == {
        "message": {
            "token": "device-token-1",
            "notification": {"title": "Order shipped", "body": "Your order #42 is on its way"},
            "data": {"notification_id": "n_1", "attempt_id": "att_1", "receipt_token": "rt_1"},
            "android": {"priority": "high"},
        }
    }
    assert request.extensions["timeout"]["read"] == 7.0
    assert request.extensions["timeout"]["connect"] == 3.0


def test_token_request_is_a_signed_jwt_bearer_grant(
    make: Callable[..., tuple[FcmProvider, Fake]], account: SimServiceAccount
) -> None:
    """The token request is an RFC 7523 grant whose RS256 assertion verifies with the SA key."""
    provider, fake = make()
    provider.send(MESSAGE)
    [request] = fake.tokens
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(
        form["assertion"], account.public_key, algorithms=["RS256"], audience=TOKEN_URI
    )
    assert claims["iss"] == account.client_email
    assert claims["scope"] == SCOPE
    assert 0 < claims["exp"] - claims["iat"] <= 3600


def test_token_is_cached_until_shortly_before_expiry(
    make: Callable[..., tuple[FcmProvider, Fake]],
) -> None:
    """Sends reuse one token; a send near its expiry fetches a new one."""
    clock = Clock()
    provider, fake = make(clock=clock)
    provider.send(MESSAGE)
    clock.now += 3000
    provider.send(MESSAGE)
    assert len(fake.tokens) == 1
    clock.now += 500  # 3500 s after issue: inside the refresh margin of a 3599 s token
    provider.send(MESSAGE)
    assert len(fake.tokens) == 2
    assert fake.sends[-1].headers["authorization"] == "Bearer tok-2"


def test_concurrent_senders_share_one_token_grant(account: SimServiceAccount) -> None:
    """Threads that find no token wait for one grant instead of each requesting their own."""
    grants: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URI:
            grants.append(1)
            time.sleep(0.05)  # hold the grant open so the other threads pile up behind it
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3599})
        return OK

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        provider = FcmProvider(_config(account), client)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: provider.send(MESSAGE), range(8)))
    assert len(results) == 8
    assert len(grants) == 1


def test_unauthenticated_refreshes_the_token_once(
    make: Callable[..., tuple[FcmProvider, Fake]],
) -> None:
    """A 401 UNAUTHENTICATED drops the cached token and retries once with a new one."""
    expired = httpx.Response(401, json=_rpc(401, "UNAUTHENTICATED", "Invalid credentials."))
    provider, fake = make(expired, OK)
    assert provider.send(MESSAGE).provider_message_id.startswith("projects/")
    assert [r.headers["authorization"] for r in fake.sends] == ["Bearer tok-1", "Bearer tok-2"]


def test_unauthenticated_twice_is_a_config_error(
    make: Callable[..., tuple[FcmProvider, Fake]],
) -> None:
    """A fresh token refused again means our credentials are wrong: no endless refresh."""
    expired = httpx.Response(401, json=_rpc(401, "UNAUTHENTICATED", "Invalid credentials."))
    provider, fake = make(expired)
    with pytest.raises(ProviderConfigError):
        provider.send(MESSAGE)
    assert len(fake.sends) == 2
    assert len(fake.tokens) == 2


ERRORS = [
    (404, _rpc(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), {},
     InvalidAddressError, "UNREGISTERED", None),
    (400, _rpc(400, "INVALID_ARGUMENT",
               "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT"),
     {}, InvalidAddressError, "INVALID_ARGUMENT", None),
    (400, _rpc(400, "INVALID_ARGUMENT", "Message is too big", "INVALID_ARGUMENT"), {},
     ProviderConfigError, "INVALID_ARGUMENT", None),
    (403, _rpc(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), {},
     InvalidAddressError, "SENDER_ID_MISMATCH", None),
    (429, _rpc(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"),
     {"Retry-After": "60"}, NotSentError, "QUOTA_EXCEEDED", 60.0),
    (503, _rpc(503, "UNAVAILABLE", "Unavailable.", "UNAVAILABLE"), {"Retry-After": "1"},
     NotSentError, "UNAVAILABLE", 1.0),
    (500, _rpc(500, "INTERNAL", "Internal error.", "INTERNAL"), {},
     UnknownOutcomeError, "INTERNAL", None),
    (401, _rpc(401, "UNAUTHENTICATED", "Auth error from APNS", "THIRD_PARTY_AUTH_ERROR"), {},
     ProviderConfigError, "THIRD_PARTY_AUTH_ERROR", None),
    (403, _rpc(403, "PERMISSION_DENIED", "Permission denied."), {},
     ProviderConfigError, "PERMISSION_DENIED", None),
    (502, {}, {}, UnknownOutcomeError, "502", None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "error", "code", "retry_after"), ERRORS)
def test_error_responses_map_to_the_error_tree(
    make: Callable[..., tuple[FcmProvider, Fake]],
    waits: list[float],
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    error: type[ProviderError],
    code: str,
    retry_after: float | None,
) -> None:
    """Each FCM error becomes the right class, code and Retry-After; errorCode wins."""
    provider, fake = make(httpx.Response(status, json=body, headers=headers))
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)
    assert type(caught.value) is error
    assert caught.value.code == code
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert "device-token-1" not in str(caught.value)
    # Only a short "not sent" is retried quickly; a long Retry-After is the dispatcher's.
    assert len(fake.sends) == (3 if error is NotSentError and (retry_after or 0) <= 2 else 1)
    assert len(fake.tokens) == 1


@pytest.mark.parametrize(
    ("exc", "error", "sends"),
    [
        (httpx.ReadTimeout("slow"), UnknownOutcomeError, 1),
        (httpx.RemoteProtocolError("reset"), UnknownOutcomeError, 1),
        (httpx.ConnectError("refused"), NotSentError, 3),
    ],
)
def test_transport_failures(
    make: Callable[..., tuple[FcmProvider, Fake]],
    waits: list[float],
    exc: Exception,
    error: type[ProviderError],
    sends: int,
) -> None:
    """A read timeout may have been accepted; a connect error provably was not (and is retried)."""
    provider, fake = make(exc)
    with pytest.raises(error):
        provider.send(MESSAGE)
    assert len(fake.sends) == sends
    assert len(waits) == sends - 1


def test_token_endpoint_failures_are_not_sent(
    account: SimServiceAccount, waits: list[float]
) -> None:
    """A token grant that times out never sent the push: NotSentError, not unknown."""
    sends: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URI:
            raise httpx.ReadTimeout("slow")
        sends.append(request)
        return OK

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        provider = FcmProvider(_config(account), client)
        with pytest.raises(NotSentError):
            provider.send(MESSAGE)
    assert sends == []


def test_refused_grant_is_a_config_error(account: SimServiceAccount) -> None:
    """``invalid_grant`` from the token endpoint means our key is wrong."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": "x"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        provider = FcmProvider(_config(account), client)
        with pytest.raises(ProviderConfigError) as caught:
            provider.send(MESSAGE)
    assert caught.value.code == "invalid_grant"


def test_config_takes_exactly_one_key_source(account: SimServiceAccount, tmp_path: Any) -> None:
    """The key comes from inline JSON or a file, never both or neither; the file works."""
    with pytest.raises(ValidationError):
        FcmConfig.model_validate({})
    key_file = tmp_path / "sa.json"
    key_file.write_text(account.key_json(TOKEN_URI))
    with pytest.raises(ValidationError):
        _config(account, service_account_file=key_file)
    config = FcmConfig.model_validate(
        {"base_url": "https://fcm.test", "service_account_file": str(key_file)}
    )
    provider: Provider = FcmProvider(config, httpx.Client())
    assert provider.name == "fcm"


def test_unusable_key_fails_at_construction(tmp_path: Any) -> None:
    """A missing file or a broken key is a config error when the provider is built."""
    missing = FcmConfig.model_validate({"service_account_file": str(tmp_path / "nope.json")})
    with pytest.raises(ProviderConfigError):
        FcmProvider(missing, httpx.Client())
    broken = FcmConfig.model_validate(
        {"service_account_json": json.dumps({"client_email": "a@b", "private_key": "nope"})}
    )
    with pytest.raises(ProviderConfigError) as caught:
        FcmProvider(broken, httpx.Client())
    assert "nope" not in str(caught.value)


def test_accepts_tokens_but_not_web_push_subscriptions(
    make: Callable[..., tuple[FcmProvider, Fake]],
) -> None:
    """The router can tell FCM tokens from Web Push subscriptions on the push channel."""
    provider, _ = make()
    assert provider.accepts("dGVzdA:APA91b")
    assert not provider.accepts('{"endpoint": "https://push.example/x", "keys": {}}')


def test_accepts_leaves_apns_device_tokens_to_apns(
    make: Callable[..., tuple[FcmProvider, Fake]],
) -> None:
    """64+ hex characters are an APNs device token, which FCM cannot send to: not FCM's."""
    provider, _ = make()
    for apns_token in ("ab" * 32, "AB" * 32, "0f" * 50):
        assert not provider.accepts(apns_token)
    # Real FCM tokens: an instance id, a colon, then a long base64url part.
    fcm = "cR1rXv8YTk2yX3Q0q7bPjS:APA91bH" + "x_-9" * 35
    for token in (fcm, "a" * 63, "ab" * 32 + ":APA91b", "g" + "a" * 63):
        assert provider.accepts(token)


# --- against the simulator, over real HTTP ------------------------------------------


@pytest.fixture(name="sim")
def _sim(account: SimServiceAccount) -> Iterator[tuple[Any, str]]:
    app = create_app(account)
    with serve(app) as base_url:
        yield app, base_url


@pytest.fixture(name="live")
def _live(sim: tuple[Any, str], account: SimServiceAccount) -> Iterator[Callable[..., FcmProvider]]:
    _, base_url = sim
    client = httpx.Client()

    def live(**overrides: Any) -> FcmProvider:
        config = {
            "base_url": base_url,
            "service_account_json": account.key_json(f"{base_url}/token"),
        }
        return FcmProvider(FcmConfig.model_validate({**config, **overrides}), client)

    yield live
    client.close()


def test_sim_two_sends_one_token(sim: tuple[Any, str], live: Callable[..., FcmProvider]) -> None:
    """Over HTTP: the simulator verifies our assertion, and two sends share one token."""
    app, _ = sim
    provider = live()
    first = provider.send(MESSAGE)
    second = provider.send(MESSAGE)
    assert first.provider_message_id != second.provider_message_id
    assert first.provider_message_id.startswith("projects/cascade-sim/messages/0:")
    assert len(app.fcm.token_requests) == 1
    assert len(app.fcm.sends) == 2
    assert app.sent[0]["data"]["receipt_token"] == "rt_1"


def test_sim_revoked_token_is_refreshed(
    sim: tuple[Any, str], live: Callable[..., FcmProvider]
) -> None:
    """A token the server stopped accepting is replaced transparently."""
    app, _ = sim
    provider = live()
    provider.send(MESSAGE)
    app.fcm.revoke_tokens()
    provider.send(MESSAGE)
    assert len(app.fcm.token_requests) == 2
    assert len(app.sent) == 2


@pytest.mark.parametrize(
    ("token", "error", "retry_after"),
    [
        ("unregistered-1", InvalidAddressError, None),
        ("invalid-1", InvalidAddressError, None),
        ("quota-1", NotSentError, 30.0),
        ("internal-1", UnknownOutcomeError, None),
    ],
)
def test_sim_errors(
    live: Callable[..., FcmProvider],
    token: str,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    """The simulator's scripted errors arrive as the right classes."""
    message = Message(recipient=token, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(error) as caught:
        live().send(message)
    assert getattr(caught.value, "retry_after", None) == retry_after


def test_sim_wrong_key_is_refused(sim: tuple[Any, str], live: Callable[..., FcmProvider]) -> None:
    """An assertion not signed by the account's registered key gets ``invalid_grant``."""
    _, base_url = sim
    impostor = json.loads(make_service_account().key_json(f"{base_url}/token"))
    impostor["private_key"] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ProviderConfigError) as caught:
        live(service_account_json=json.dumps(impostor)).send(MESSAGE)
    assert caught.value.code == "invalid_grant"


def test_sim_hang_is_unknown_outcome(live: Callable[..., FcmProvider]) -> None:
    """No answer within the read timeout: the push may have gone out."""
    message = Message(recipient="hang-1", text="hi", reference="r", idempotency_key="k")
    with pytest.raises(UnknownOutcomeError):
        live(timeout=0.2).send(message)
