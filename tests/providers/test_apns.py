"""APNs: request shape, error table, provider-token caching, and the HTTP/2 simulator."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from providers.apns import ApnsConfig, ApnsProvider
from providers.base import Channel, Message, Provider
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
)
from tests.simulators.apns import ApnsSimulator, SimApnsKey, create_app, make_key, token_for
from tests.simulators.server import serve_h2
from tests.support.retries import record_retry_waits

TOPIC = "com.example.shop"
DEVICE = "0f" * 32
MESSAGE = Message(
    recipient=DEVICE,
    text="Your order #42 is on its way",
    title="Order shipped",
    reference="att_1",
    idempotency_key="idem_1",
    data={"notification_id": "n_1", "attempt_id": "att_1"},
)
APNS_ID = str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "https://cascade/apns-id"), "idem_1"))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="key", scope="module")
def _key() -> SimApnsKey:
    return make_key()


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, ApnsProvider._send)


def _config(key: SimApnsKey, **overrides: Any) -> ApnsConfig:
    values: dict[str, Any] = {
        "base_url": "https://apns.test",
        "team_id": key.team_id,
        "key_id": key.key_id,
    }
    values |= {"private_key": key.private_key_pem, "topic": TOPIC, "timeout": 7.0}
    return ApnsConfig.model_validate({**values, **overrides})


def _answer(status: int, reason: str | None = None, **headers: str) -> httpx.Response:
    body = {"reason": reason} if reason else None
    return httpx.Response(status, json=body, headers=headers) if body else httpx.Response(status)


OK = _answer(200, **{"apns-id": APNS_ID})
Made = tuple[ApnsProvider, list[httpx.Request]]


@pytest.fixture(name="make")
def _make(key: SimApnsKey) -> Iterator[Callable[..., Made]]:
    clients: list[httpx.Client] = []

    def make(*answers: httpx.Response | Exception, clock: Clock | None = None) -> Made:
        script, seen = list(answers or (OK,)), []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            answer = script.pop(0) if len(script) > 1 else script[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        clients.append(httpx.Client(transport=httpx.MockTransport(handler)))
        client = clients[-1]
        provider = ApnsProvider(_config(key), client, clock=clock, http2_client=client)
        return provider, seen

    yield make
    for client in clients:
        client.close()


def test_send_posts_the_notification(make: Callable[..., Made], key: SimApnsKey) -> None:
    """One send is the exact APNs request: path, every apns-* header, the JSON body."""
    provider, seen = make()
    assert provider.send(MESSAGE).provider_message_id == APNS_ID
    [request] = seen
    assert str(request.url) == f"https://apns.test/3/device/{DEVICE}"
    assert request.headers["authorization"].startswith("bearer ey")
    expected = {"apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "10"}
    expected |= {"apns-expiration": "0", "apns-id": APNS_ID, "apns-collapse-id": "idem_1"}
    assert {k: v for k, v in request.headers.items() if k.startswith("apns-")} == expected
    assert json.loads(request.content) == {
        "aps": {
            "alert": {"title": "Order shipped", "body": "Your order #42 is on its way"},
            "sound": "default",
        },
        "notification_id": "n_1",
        "attempt_id": "att_1",
    }
    assert request.extensions["timeout"]["read"] == 7.0


def test_provider_token_is_es256_with_kid_and_iss(
    make: Callable[..., Made], key: SimApnsKey
) -> None:
    """The bearer token is an ES256 JWT: header exactly alg+kid, claims exactly iss+iat."""
    clock = Clock()
    provider, seen = make(clock=clock)
    provider.send(MESSAGE)
    token = seen[0].headers["authorization"].removeprefix("bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": key.key_id}
    claims = jwt.decode(token, key.public_key, algorithms=["ES256"])
    assert claims == {"iss": key.team_id, "iat": int(clock.now)}


def test_ids_follow_the_idempotency_key(make: Callable[..., Made]) -> None:
    """apns-id and collapse id are stable per key; a long key collapses to a 64-byte digest."""
    provider, seen = make()
    long_key = "ключ-" + "x" * 80
    for idem in ("idem_1", "idem_1", "idem_2", long_key):
        provider.send(Message(recipient=DEVICE, text="t", reference="r", idempotency_key=idem))
    ids = [(r.headers["apns-id"], r.headers["apns-collapse-id"]) for r in seen]
    assert ids[0] == ids[1] == (APNS_ID, "idem_1")
    assert len(set(ids)) == 3
    assert uuid.UUID(ids[3][0]).version == 5
    assert ids[3][1] == hashlib.sha256(long_key.encode()).hexdigest()


def test_data_cannot_replace_aps_and_title_is_optional(make: Callable[..., Made]) -> None:
    """Data keys sit beside ``aps`` but never overwrite it; no title means a body-only alert."""
    provider, seen = make()
    data = {"aps": "evil", "k": "v"}
    provider.send(
        Message(recipient=DEVICE, text="hi", reference="r", idempotency_key="i", data=data)
    )
    assert json.loads(seen[0].content) == {
        "aps": {"alert": {"body": "hi"}, "sound": "default"},
        "k": "v",
    }


def test_200_without_apns_id_uses_ours(make: Callable[..., Made]) -> None:
    """APNs always echoes apns-id; if it did not, the id we sent is the message id."""
    provider, _ = make(httpx.Response(200))
    assert provider.send(MESSAGE).provider_message_id == APNS_ID


ERRORS = [
    (400, "BadDeviceToken", InvalidAddressError, 1),
    (400, "DeviceTokenNotForTopic", InvalidAddressError, 1),
    (410, "Unregistered", InvalidAddressError, 1),
    (410, "ExpiredToken", InvalidAddressError, 1),
    (400, "BadTopic", ProviderConfigError, 1),
    (400, "BadCollapseId", ProviderConfigError, 1),
    (400, "IdleTimeout", NotSentError, 3),
    (403, "InvalidProviderToken", ProviderConfigError, 1),
    (403, "Forbidden", ProviderConfigError, 1),
    (404, "BadPath", ProviderConfigError, 1),
    (405, "MethodNotAllowed", ProviderConfigError, 1),
    (413, "PayloadTooLarge", ProviderConfigError, 1),
    (429, "TooManyRequests", NotSentError, 3),
    (429, "TooManyProviderTokenUpdates", ProviderConfigError, 1),
    (500, "InternalServerError", UnknownOutcomeError, 1),
    (503, "ServiceUnavailable", NotSentError, 3),
    (503, "Shutdown", NotSentError, 3),
    (502, None, UnknownOutcomeError, 1),
]


@pytest.mark.parametrize(("status", "reason", "error", "sends"), ERRORS)
def test_error_responses_map_to_the_error_tree(
    make: Callable[..., Made],
    waits: list[float],
    status: int,
    reason: str | None,
    error: type[ProviderError],
    sends: int,
) -> None:
    """Each status/reason is the right class and code; only "not sent" is retried quickly."""
    provider, seen = make(_answer(status, reason))
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)
    assert type(caught.value) is error
    assert caught.value.code == (reason or str(status))
    assert DEVICE not in str(caught.value)
    assert len(seen) == sends
    assert len(waits) == sends - 1


@pytest.mark.parametrize(
    ("exc", "error", "sends"),
    [
        (httpx.ReadTimeout("slow"), UnknownOutcomeError, 1),
        (httpx.RemoteProtocolError("GOAWAY"), UnknownOutcomeError, 1),
        (httpx.ConnectError("refused"), NotSentError, 3),
    ],
)
def test_transport_failures(
    make: Callable[..., Made],
    waits: list[float],
    exc: Exception,
    error: type[ProviderError],
    sends: int,
) -> None:
    """After the request left, a failure is an unknown outcome; before, it is retried."""
    provider, seen = make(exc)
    with pytest.raises(error):
        provider.send(MESSAGE)
    assert len(seen) == sends


def _auth(requests: list[httpx.Request]) -> list[str]:
    return [r.headers["authorization"] for r in requests]


def test_token_is_reused_then_refreshed_after_50_minutes(make: Callable[..., Made]) -> None:
    """Sends share one JWT for 50 minutes; the first send after that signs a new one."""
    clock = Clock()
    provider, seen = make(clock=clock)
    provider.send(MESSAGE)
    clock.now += 50 * 60 - 1
    provider.send(MESSAGE)
    clock.now += 1
    provider.send(MESSAGE)
    provider.send(MESSAGE)
    first, second, third, fourth = _auth(seen)
    assert first == second != third == fourth
    assert jwt.decode(third.split()[1], options={"verify_signature": False})["iat"] == int(
        clock.now
    )


def test_concurrent_senders_sign_one_token(
    make: Callable[..., Made], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads that find no token wait for one signature instead of each making their own."""
    signed: list[int] = []
    encode = jwt.encode

    def slow_encode(*args: Any, **kwargs: Any) -> str:
        signed.append(1)
        threading.Event().wait(0.05)  # hold the signing open so the other threads pile up
        return encode(*args, **kwargs)

    monkeypatch.setattr(jwt, "encode", slow_encode)
    provider, seen = make()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: provider.send(MESSAGE), range(8)))
    assert len(signed) == 1
    assert len(set(_auth(seen))) == 1


def test_expired_provider_token_is_regenerated_once(make: Callable[..., Made]) -> None:
    """403 ExpiredProviderToken on a 25-min-old token: sign anew, resend once, keep the new one."""
    clock = Clock()
    provider, seen = make(_answer(200), _answer(403, "ExpiredProviderToken"), OK, clock=clock)
    provider.send(MESSAGE)
    clock.now += 25 * 60
    assert provider.send(MESSAGE).provider_message_id == APNS_ID
    provider.send(MESSAGE)
    first, refused, resent, later = _auth(seen)
    assert first == refused != resent == later


@pytest.mark.parametrize(("age", "sends"), [(25 * 60, 2), (5 * 60, 1)])
def test_expired_provider_token_gives_up(make: Callable[..., Made], age: int, sends: int) -> None:
    """Expired again after one renewal, or "expired" while under 20 min old: a config error."""
    clock = Clock()
    provider, seen = make(_answer(200), _answer(403, "ExpiredProviderToken"), clock=clock)
    provider.send(MESSAGE)
    clock.now += age
    with pytest.raises(ProviderConfigError) as caught:
        provider.send(MESSAGE)
    assert caught.value.code == "ExpiredProviderToken"
    assert len(seen) == 1 + sends
    assert len(set(_auth(seen))) == sends  # a young token is not churned


def test_accepts_only_hex_device_tokens(make: Callable[..., Made]) -> None:
    """64-200 hex characters only: FCM tokens and Web Push subscriptions are not APNs's."""
    provider, _ = make()
    assert all(provider.accepts(t) for t in ("ab" * 32, "AB" * 32, "0" * 200))
    fcm = "dGVzdA:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
    for token in ("a" * 63, "a" * 201, "g" * 64, f" {'a' * 64}", fcm, '{"endpoint": "x"}'):
        assert not provider.accepts(token)


def test_non_token_recipient_is_refused_before_any_request(make: Callable[..., Made]) -> None:
    """A recipient that is no device token never reaches the URL path."""
    provider, seen = make()
    bad = Message(recipient="../../1/x?y=" + "a" * 64, text="t", reference="r", idempotency_key="i")
    with pytest.raises(InvalidAddressError):
        provider.send(bad)
    assert seen == []


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def test_config_and_key_are_checked_at_construction(key: SimApnsKey) -> None:
    """Defaults match Apple production; a bad priority, PEM or curve fails before any send."""
    config = _config(key, base_url="https://api.push.apple.com")
    assert (config.push_type, config.priority) == ("alert", 10)
    assert ApnsConfig.model_fields["base_url"].default == "https://api.push.apple.com"
    assert key.private_key_pem not in repr(config)
    with httpx.Client() as shared:
        provider = ApnsProvider(config, shared)
        provider.close()
    assert isinstance(provider, Provider)
    assert (provider.name, provider.channel) == ("apns", Channel.PUSH)
    with pytest.raises(ValidationError):
        _config(key, priority=7)
    with pytest.raises(ValidationError):
        ApnsConfig.model_validate({"team_id": "T", "key_id": "K", "topic": TOPIC})
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()))
    for pem in ("not a key", p384, _pem(rsa.generate_private_key(65537, 2048))):
        with pytest.raises(ProviderConfigError) as caught:
            ApnsProvider(_config(key, private_key=pem), httpx.Client())
        assert caught.value.code == "bad_key"
        assert "not a key" not in str(caught.value)


# --- against the HTTP/2 simulator, over a real socket ------------------------------


@pytest.fixture(name="sim")
def _sim(key: SimApnsKey) -> Iterator[tuple[ApnsSimulator, str, Clock]]:
    clock = Clock()
    app = create_app(key, topic=TOPIC, clock=clock)
    with serve_h2(app) as base_url:
        yield app, base_url, clock


@pytest.fixture(name="live")
def _live(
    sim: tuple[ApnsSimulator, str, Clock], key: SimApnsKey
) -> Iterator[Callable[..., ApnsProvider]]:
    shared, providers = httpx.Client(), []

    def live(clock: Clock | None = None, **overrides: Any) -> ApnsProvider:
        config = _config(key, base_url=sim[1], **overrides)
        providers.append(ApnsProvider(config, shared, clock=clock))
        return providers[-1]

    yield live
    for provider in providers:
        provider.close()
    shared.close()


def _to(token: str) -> Message:
    return Message(recipient=token, text="hi", reference="r", idempotency_key="k")


def test_sim_sends_over_http2(sim: tuple[ApnsSimulator, str, Clock], live: Any) -> None:
    """The provider's own client speaks h2c; two sends, one JWT, APNs' apns-id echoed."""
    app, _, _ = sim
    provider = live()
    assert provider.send(MESSAGE).provider_message_id == APNS_ID
    provider.send(MESSAGE)
    assert [r.http_version for r in app.apns.records] == ["2", "2"]
    assert len({r.headers["authorization"] for r in app.apns.records}) == 1
    assert app.sent[0]["device_token"] == DEVICE
    assert app.sent[0]["payload"]["aps"]["alert"]["title"] == "Order shipped"
    provider.close()
    with pytest.raises(RuntimeError, match="closed"):
        provider.send(MESSAGE)


def test_sim_is_http2_only(sim: tuple[ApnsSimulator, str, Clock]) -> None:
    """HTTP/1.1 gets 505; a prior-knowledge HTTP/2 client gets an APNs answer over HTTP/2."""
    _, base_url, _ = sim
    url = f"{base_url}/3/device/{DEVICE}"
    with httpx.Client() as http1, httpx.Client(http1=False, http2=True) as http2:
        old, new = http1.post(url, json={}), http2.post(url, json={})
    assert (old.http_version, old.status_code) == ("HTTP/1.1", 505)
    assert (new.http_version, new.status_code) == ("HTTP/2", 403)
    assert new.json() == {"reason": "MissingProviderToken"}


@pytest.mark.parametrize(
    ("scenario", "error", "sends"),
    [
        ("Unregistered", InvalidAddressError, 1),
        ("BadDeviceToken", InvalidAddressError, 1),
        ("TooManyRequests", NotSentError, 3),
        ("InternalServerError", UnknownOutcomeError, 1),
        ("ServiceUnavailable", NotSentError, 3),
    ],
)
def test_sim_errors(
    sim: tuple[ApnsSimulator, str, Clock],
    live: Any,
    waits: list[float],
    scenario: str,
    error: type[ProviderError],
    sends: int,
) -> None:
    """The simulator's scripted reasons arrive as the right classes and codes."""
    with pytest.raises(error) as caught:
        live().send(_to(token_for(scenario)))
    assert caught.value.code == scenario
    assert len(sim[0].requests) == sends


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({"private_key": make_key(seed=1).private_key_pem}, "InvalidProviderToken"),
     ({"key_id": "OTHERKEY00"}, "InvalidProviderToken"),
     ({"topic": "com.example.other"}, "TopicDisallowed")],
)  # fmt: skip
def test_sim_refuses_our_credentials(live: Any, overrides: dict[str, Any], code: str) -> None:
    """A token signed by another key, another kid, or another app's topic: config errors."""
    with pytest.raises(ProviderConfigError) as caught:
        live(**overrides).send(MESSAGE)
    assert caught.value.code == code


def test_sim_expired_token_is_regenerated(sim: tuple[ApnsSimulator, str, Clock], live: Any) -> None:
    """When APNs' clock says our 25-min-old token is expired, one new token fixes the send."""
    app, _, sim_clock = sim
    clock = Clock()
    provider = live(clock=clock)
    provider.send(MESSAGE)
    clock.now += 25 * 60
    sim_clock.now += 61 * 60
    provider.send(MESSAGE)
    first, refused, resent = (r.headers["authorization"] for r in app.apns.records)
    assert first == refused != resent
    assert len(app.sent) == 2


def test_sim_hang_is_unknown_outcome(live: Any) -> None:
    """No answer within the read timeout over HTTP/2: the push may have gone out."""
    with pytest.raises(UnknownOutcomeError):
        live(timeout=0.2).send(_to(token_for("hang")))
