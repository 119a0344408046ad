"""Web Push: encryption, VAPID, headers, the error table, and the live push service."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import http_ece
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pydantic import ValidationError

from providers.base import Message
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
)
from providers.webpush import WebPushConfig, WebPushProvider, topic
from tests.simulators.server import serve
from tests.simulators.webpush import SimSubscription, WebPushState, create_app
from tests.support.retries import record_retry_waits

VAPID_KEY = ec.generate_private_key(ec.SECP256R1())
VAPID_PEM = VAPID_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
VAPID_PUBLIC = (
    base64.urlsafe_b64encode(
        VAPID_KEY.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    .rstrip(b"=")
    .decode()
)
DATA = {"notification_id": "n_1", "attempt_id": "att_1", "receipt_token": "rt_1"}


def _sub(
    endpoint_base: str = "https://push.example.net:8443", sub_id: str = "abc"
) -> SimSubscription:
    return WebPushState(scenarios={}).subscribe(endpoint_base, sub_id)


def _message(sub: SimSubscription, key: str = "idem_1") -> Message:
    return Message(
        recipient=sub.as_json(),
        text="Your order #42 is on its way",
        title="Order shipped",
        reference="att_1",
        idempotency_key=key,
        data=DATA,
    )


#: What our fake DNS answers; names not listed do not resolve.
DNS = {
    "push.example.net": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "p": ["93.184.216.35"],
    "rebind.example.net": ["93.184.216.34", "10.0.0.5"],
    "metadata.example.net": ["169.254.169.254"],
}


def public_dns(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError(f"no such host: {host}")
    return DNS[host]


def _config(**overrides: Any) -> WebPushConfig:
    values: dict[str, Any] = {
        "vapid_private_key": VAPID_PEM,
        "vapid_subject": "mailto:ops@example.org",
        "timeout": 6.0,
    }
    return WebPushConfig.model_validate({**values, **overrides})


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, WebPushProvider._post)


@pytest.fixture(name="make")
def _make() -> Iterator[Callable[..., tuple[WebPushProvider, list[httpx.Request]]]]:
    clients: list[httpx.Client] = []

    def make(
        answer: httpx.Response | Exception | None = None, **config: Any
    ) -> tuple[WebPushProvider, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if isinstance(answer, Exception):
                raise answer
            return answer or httpx.Response(201, headers={"Location": "https://p/m/1"})

        client = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(client)
        resolver = config.pop("resolver", public_dns)
        return WebPushProvider(_config(**config), client, resolver=resolver), seen

    yield make
    for client in clients:
        client.close()


def test_send_encrypts_for_the_subscription_and_signs_vapid(make: Callable[..., Any]) -> None:
    """The POST goes to the endpoint with RFC 8030/8291/8292 headers and a decryptable body."""
    sub = _sub()
    provider, seen = make()
    result = provider.send(_message(sub))
    assert result.provider_message_id == "https://p/m/1"
    [request] = seen
    assert str(request.url) == "https://push.example.net:8443/push/abc"
    assert request.headers["ttl"] == "86400"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.headers["urgency"] == "high"
    assert request.headers["topic"] == topic("idem_1")
    assert request.extensions["timeout"]["read"] == 6.0
    assert request.extensions["timeout"]["connect"] == 3.0
    plaintext = http_ece.decrypt(
        request.content, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
    )
    assert json.loads(plaintext) == {
        "title": "Order shipped",
        "body": "Your order #42 is on its way",
        "data": DATA,
    }
    scheme, _, params = request.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == VAPID_PUBLIC
    claims = jwt.decode(
        fields["t"],
        VAPID_KEY.public_key(),
        algorithms=["ES256"],
        audience="https://push.example.net:8443",
    )
    assert claims["sub"] == "mailto:ops@example.org"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600


def test_topic_is_stable_per_attempt_and_short() -> None:
    """A resend of one attempt carries the same Topic (so it replaces); others differ."""
    assert topic("idem_1") == topic("idem_1") != topic("idem_2")
    assert len(topic("x" * 500)) == 32
    assert set(topic("idem_1")) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


ERRORS = [
    (404, {}, InvalidAddressError, None, 1),
    (410, {}, InvalidAddressError, None, 1),
    (429, {"Retry-After": "120"}, NotSentError, 120.0, 1),
    (429, {}, NotSentError, None, 3),
    (400, {}, ProviderConfigError, None, 1),
    (401, {}, ProviderConfigError, None, 1),
    (403, {}, ProviderConfigError, None, 1),
    (413, {}, ProviderConfigError, None, 1),
    (500, {}, UnknownOutcomeError, None, 1),
    (502, {}, UnknownOutcomeError, None, 1),
    (503, {"Retry-After": "5"}, NotSentError, 5.0, 1),
    (301, {"Location": "https://elsewhere/"}, ProviderConfigError, None, 1),
]


@pytest.mark.parametrize(("status", "headers", "error", "retry_after", "calls"), ERRORS)
def test_error_statuses(
    make: Callable[..., Any],
    waits: list[float],
    status: int,
    headers: dict[str, str],
    error: type[ProviderError],
    retry_after: float | None,
    calls: int,
) -> None:
    """Each push-service status becomes the documented class; short "not sent" is retried."""
    provider, seen = make(httpx.Response(status, headers=headers, json={"code": status}))
    with pytest.raises(ProviderError) as caught:
        provider.send(_message(_sub()))
    assert type(caught.value) is error
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert "push.example.net" not in str(caught.value)
    assert len(seen) == calls


@pytest.mark.parametrize("status", [200, 201, 202])
def test_success_without_location_gets_a_generated_id(
    make: Callable[..., Any], status: int
) -> None:
    """Services that omit Location still yield a unique provider message id."""
    provider, _ = make(httpx.Response(status))
    first = provider.send(_message(_sub())).provider_message_id
    second = provider.send(_message(_sub())).provider_message_id
    assert first.startswith("webpush-")
    assert first != second


def test_read_timeout_is_unknown_outcome(make: Callable[..., Any]) -> None:
    """A read timeout after the body was sent may have been delivered."""
    provider, seen = make(httpx.ReadTimeout("slow"))
    with pytest.raises(UnknownOutcomeError):
        provider.send(_message(_sub()))
    assert len(seen) == 1


@pytest.mark.parametrize(
    "recipient",
    [
        "not json",
        '{"endpoint": "https://push.example.net/x"}',
        '{"endpoint": "https://push.example.net/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}',
        _sub("http://push.example.net").as_json(),
        _sub("ftp://push.example.net").as_json(),
    ],
)
def test_unusable_subscriptions_are_invalid_addresses(
    make: Callable[..., Any], recipient: str
) -> None:
    """A malformed subscription, bad keys or a non-https endpoint never reach the network."""
    provider, seen = make()
    message = Message(recipient=recipient, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(InvalidAddressError):
        provider.send(message)
    assert seen == []


def test_http_endpoints_only_when_allowed(make: Callable[..., Any]) -> None:
    """``allow_insecure_endpoints`` lets tests use a plain-HTTP push service."""
    provider, seen = make(allow_insecure_endpoints=True, allow_private_endpoints=True)
    provider.send(_message(_sub("http://127.0.0.1:9")))
    assert str(seen[0].url) == "http://127.0.0.1:9/push/abc"


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://127.0.0.1",
        "https://10.1.2.3",
        "https://172.16.0.1",
        "https://192.168.1.1",
        "https://169.254.169.254",
        "https://100.64.0.1",
        "https://0.0.0.0",
        "https://224.0.0.1",
        "https://240.0.0.1",
        "https://[::1]",
        "https://[fe80::1]",
        "https://[fc00::1]",
        "https://[ff02::1]",
        "https://[::ffff:127.0.0.1]",
        "https://rebind.example.net",
        "https://metadata.example.net",
    ],
)
def test_non_public_endpoints_are_refused_without_a_request(
    make: Callable[..., Any], endpoint: str
) -> None:
    """SSRF: an endpoint on (or resolving to any) non-public address is an invalid address."""
    provider, seen = make()
    with pytest.raises(InvalidAddressError) as caught:
        provider.send(_message(_sub(endpoint)))
    assert caught.value.code == "forbidden_endpoint"
    assert seen == []


def test_localhost_is_refused_by_real_resolution(make: Callable[..., Any]) -> None:
    """The default resolver really resolves names: ``localhost`` is loopback."""
    provider, seen = make(resolver=None)
    with pytest.raises(InvalidAddressError):
        provider.send(_message(_sub("https://localhost:8443")))
    assert seen == []


def test_unresolvable_host_is_not_sent(make: Callable[..., Any]) -> None:
    """A name that does not resolve (now) is retried later, nothing was sent."""
    provider, seen = make()
    with pytest.raises(NotSentError):
        provider.send(_message(_sub("https://nowhere.example.net")))
    assert seen == []


def test_private_endpoints_when_allowed(make: Callable[..., Any]) -> None:
    """``allow_private_endpoints`` or a CIDR in ``allowed_networks`` admit a private service."""
    provider, seen = make(allow_private_endpoints=True)
    provider.send(_message(_sub("https://10.1.2.3")))
    provider, seen_cidr = make(allowed_networks=["10.0.0.0/8"])
    provider.send(_message(_sub("https://10.1.2.3")))
    with pytest.raises(InvalidAddressError):
        provider.send(_message(_sub("https://127.0.0.1")))
    assert [str(r.url) for r in seen + seen_cidr] == ["https://10.1.2.3/push/abc"] * 2


def test_bad_allowed_network_is_a_config_error() -> None:
    """A CIDR that does not parse fails at startup, naming the setting."""
    with pytest.raises(ValueError, match="allowed_networks"):
        _config(allowed_networks=["10.0.0.0/33"])


def test_oversized_payload_is_rejected_before_sending(make: Callable[..., Any]) -> None:
    """A payload over the 4 KB body limit is refused for this message only."""
    provider, seen = make()
    big = Message(recipient=_sub().as_json(), text="x" * 5000, reference="r", idempotency_key="k")
    with pytest.raises(RejectedError) as caught:
        provider.send(big)
    assert not isinstance(caught.value, InvalidAddressError)
    assert seen == []


def test_vapid_key_formats_are_equivalent(make: Callable[..., Any]) -> None:
    """PEM, base64url raw scalar and base64url DER load the same key; junk is a config error."""
    raw = VAPID_KEY.private_numbers().private_value.to_bytes(32, "big")
    der = VAPID_KEY.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    for text in (base64.urlsafe_b64encode(raw).decode().rstrip("="),
                 base64.urlsafe_b64encode(der).decode().rstrip("=")):  # fmt: skip
        provider, seen = make(vapid_private_key=text)
        provider.send(_message(_sub()))
        assert f"k={VAPID_PUBLIC}" in seen[0].headers["authorization"]
    with pytest.raises(ProviderConfigError):
        make(vapid_private_key="not-a-key")


def test_subject_must_be_a_contact_uri() -> None:
    """RFC 8292 wants a mailto: or https: contact in ``sub``."""
    with pytest.raises(ValidationError):
        _config(vapid_subject="ops@example.org")


def test_accepts_only_subscriptions(make: Callable[..., Any]) -> None:
    """On the shared push channel, this provider takes subscriptions, not FCM tokens."""
    provider, _ = make()
    assert provider.accepts(_sub().as_json())
    assert not provider.accepts("fcm-registration-token")


# --- against the simulated push service, over real HTTP -----------------------------


@pytest.fixture(name="service")
def _service() -> Iterator[tuple[Any, str, WebPushProvider]]:
    app = create_app()
    with serve(app) as base_url, httpx.Client() as client:
        provider = WebPushProvider(
            _config(allow_insecure_endpoints=True, allow_private_endpoints=True), client
        )
        yield app, base_url, provider


def test_sim_decrypts_what_we_sent(service: tuple[Any, str, WebPushProvider]) -> None:
    """The push service verifies VAPID, decrypts with the browser's key, answers Location."""
    app, base_url, provider = service
    sub = app.webpush.subscribe(base_url, "alice", application_server_key=VAPID_PUBLIC)
    result = provider.send(_message(sub))
    assert result.provider_message_id == f"{base_url}/msg/1"
    [stored] = app.sent
    assert stored["payload"] == {
        "title": "Order shipped",
        "body": "Your order #42 is on its way",
        "data": DATA,
    }
    assert (stored["ttl"], stored["urgency"], stored["topic"]) == (86400, "high", topic("idem_1"))


def test_sim_resend_replaces_by_topic(service: tuple[Any, str, WebPushProvider]) -> None:
    """Resending one attempt replaces the queued copy; another attempt adds a message."""
    app, base_url, provider = service
    sub = app.webpush.subscribe(base_url, "bob")
    provider.send(_message(sub, key="idem_1"))
    provider.send(_message(sub, key="idem_1"))
    assert len(app.sent) == 1
    provider.send(_message(sub, key="idem_2"))
    assert len(app.sent) == 2


@pytest.mark.parametrize(
    ("sub_id", "error", "retry_after"),
    [
        ("gone-1", InvalidAddressError, None),
        ("ratelimited-1", NotSentError, 30.0),
        ("unavailable-1", NotSentError, 30.0),
    ],
)
def test_sim_scenarios(
    service: tuple[Any, str, WebPushProvider],
    sub_id: str,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    """Expired subscriptions and throttling come back as the right classes."""
    app, base_url, provider = service
    with pytest.raises(error) as caught:
        provider.send(_message(app.webpush.subscribe(base_url, sub_id)))
    assert getattr(caught.value, "retry_after", None) == retry_after


def test_sim_unknown_subscription_is_invalid(service: tuple[Any, str, WebPushProvider]) -> None:
    """An endpoint the service does not know (404) marks the address invalid."""
    _, base_url, provider = service
    with pytest.raises(InvalidAddressError) as caught:
        provider.send(_message(_sub(base_url, "never-subscribed")))
    assert caught.value.code == "404"


def test_sim_vapid_key_mismatch_is_config(service: tuple[Any, str, WebPushProvider]) -> None:
    """A subscription bound to another application server key refuses our VAPID key (403)."""
    app, base_url, provider = service
    sub = app.webpush.subscribe(base_url, "carol", application_server_key="BOther")
    with pytest.raises(ProviderConfigError) as caught:
        provider.send(_message(sub))
    assert caught.value.code == "403"
    assert app.sent == []


def test_sim_hang_is_unknown_outcome(service: tuple[Any, str, WebPushProvider]) -> None:
    """No answer within the read timeout: the push may have been queued."""
    app, base_url, _ = service
    with httpx.Client() as client:
        provider = WebPushProvider(
            _config(allow_insecure_endpoints=True, allow_private_endpoints=True, timeout=0.2),
            client,
        )
        with pytest.raises(UnknownOutcomeError):
            provider.send(_message(app.webpush.subscribe(base_url, "hang-1")))
