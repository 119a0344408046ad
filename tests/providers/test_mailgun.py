"""Mailgun: request shape, error table, signed events webhook, and the live simulator."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from providers.base import (
    Channel,
    Message,
    Provider,
    ReceiptKind,
    WebhookReceiver,
    WebhookRequest,
)
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.mailgun import MailgunConfig, MailgunProvider
from tests.simulators.mailgun import create_app, signed_event
from tests.simulators.server import serve
from tests.simulators.webhook_receiver import create_receiver
from tests.support.retries import record_retry_waits
from tests.support.transport import Answer, CannedClients

SIGNING_KEY = "signing-key-sim"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MESSAGE = Message(
    recipient="alice@example.org",
    text="Your order #42 is on its way",
    html="<p>Your order #42 is on its way</p>",
    title="Order shipped",
    reference="att_1",
    idempotency_key="idem_1",
)
QUEUED = {"id": "<20250301120000.1.ABCD@mg.example.test>", "message": "Queued. Thank you."}


def _config(**overrides: Any) -> MailgunConfig:
    values: dict[str, Any] = {
        "base_url": "https://mailgun.test",
        "api_key": "key-sim",
        "domain": "mg.example.test",
        "sender": "Shop <noreply@mg.example.test>",
        "webhook_signing_key": SIGNING_KEY,
        "timeout": 9.0,
    }
    return MailgunConfig.model_validate({**values, **overrides})


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, MailgunProvider._send)


@pytest.fixture(name="make")
def _make(canned: CannedClients) -> Callable[..., tuple[MailgunProvider, list[httpx.Request]]]:
    def make(answer: Answer = None, **config: Any) -> tuple[MailgunProvider, list[httpx.Request]]:
        client, seen = canned.answering(answer, lambda: httpx.Response(200, json=QUEUED))
        return MailgunProvider(_config(**config), client), seen

    return make


def test_send_posts_the_form(make: Callable[..., Any]) -> None:
    """One send is a Basic-authenticated form POST with tracking and our reference."""
    provider, seen = make()
    result = provider.send(MESSAGE)
    assert result.provider_message_id == "20250301120000.1.ABCD@mg.example.test"
    assert result.cost is None
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://mailgun.test/v3/mg.example.test/messages"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"api:key-sim").decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(request.content.decode())) == {
        "from": "Shop <noreply@mg.example.test>",
        "to": "alice@example.org",
        "subject": "Order shipped",
        "text": "Your order #42 is on its way",
        "html": "<p>Your order #42 is on its way</p>",
        "o:tracking-opens": "yes",
        "v:cascade_reference": "att_1",
    }
    assert request.extensions["timeout"]["read"] == 9.0
    assert request.extensions["timeout"]["connect"] == 3.0


ERRORS = [
    (400, {"message": "'to' parameter is not a valid address. please check documentation"},
     {}, InvalidAddressError, None, 1),
    (400, {"message": "'from' parameter is not a valid address. please check documentation"},
     {}, ProviderConfigError, None, 1),
    (401, "Forbidden", {}, ProviderConfigError, None, 1),
    (402, {"message": "Payment required"}, {}, ProviderConfigError, None, 1),
    (403, {"message": "Domain disabled"}, {}, ProviderConfigError, None, 1),
    (404, {"message": "Domain not found: mg.example.test"}, {}, ProviderConfigError, None, 1),
    (413, {"message": "Message too large"}, {}, ProviderConfigError, None, 1),
    (429, {"message": "Too many requests"}, {"Retry-After": "30"}, NotSentError, 30.0, 1),
    (429, {"message": "Too many requests"}, {}, NotSentError, None, 3),
    (500, {"message": "Internal"}, {}, UnknownOutcomeError, None, 1),
    (503, {"message": "Unavailable"}, {}, NotSentError, None, 3),
    (200, {"message": "Queued. Thank you."}, {}, UnknownOutcomeError, None, 1),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "error", "retry_after", "calls"), ERRORS)
def test_error_responses(
    make: Callable[..., Any],
    waits: list[float],
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[ProviderError],
    retry_after: float | None,
    calls: int,
) -> None:
    """Each Mailgun answer becomes the documented class; short "not sent" is retried."""
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    provider, seen = make(httpx.Response(status, content=content, headers=headers))
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)
    assert type(caught.value) is error
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert "alice@example.org" not in str(caught.value)
    assert len(seen) == calls
    assert len(waits) == calls - 1


@pytest.mark.parametrize(
    ("exc", "error"),
    [(httpx.ReadTimeout("slow"), UnknownOutcomeError), (httpx.ConnectTimeout("x"), NotSentError)],
)
def test_transport_failures(
    make: Callable[..., Any], waits: list[float], exc: Exception, error: type[ProviderError]
) -> None:
    """A read timeout may have queued the mail; a connect timeout provably did not."""
    provider, _ = make(exc)
    with pytest.raises(error):
        provider.send(MESSAGE)


# --- the events webhook ---------------------------------------------------------------


def _request(body: dict[str, Any] | bytes, received_at: datetime = NOW) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(
        method="POST",
        url="https://cascade.test/v1/webhooks/mailgun",
        headers={"content-type": "application/json"},
        query={},
        body=raw,
        received_at=received_at,
    )


def _event(event: str, **kwargs: Any) -> dict[str, Any]:
    return signed_event(
        SIGNING_KEY,
        event=event,
        message_id=kwargs.pop("message_id", "<20250301120000.1.ABCD@mg.example.test>"),
        reference=kwargs.pop("reference", "att_1"),
        timestamp=kwargs.pop("timestamp", int(NOW.timestamp()) - 5),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("event", "kwargs", "kind", "invalid", "error_code"),
    [
        ("delivered", {}, ReceiptKind.DELIVERED, False, None),
        ("opened", {}, ReceiptKind.READ, False, None),
        ("clicked", {}, ReceiptKind.READ, False, None),
        ("failed", {"severity": "permanent"}, ReceiptKind.FAILED, True, "550"),
        ("failed", {"severity": "permanent", "code": 554}, ReceiptKind.FAILED, True, "554"),
    ],
)
def test_signed_events_parse(
    make: Callable[..., Any],
    event: str,
    kwargs: dict[str, Any],
    kind: ReceiptKind,
    invalid: bool,
    error_code: str | None,
) -> None:
    """A correctly signed event yields one receipt with ids, reference and failure details."""
    provider, _ = make()
    body = _event(event, **kwargs)
    reply = provider.handle(_request(body))
    assert reply.status_code == 200
    [receipt] = reply.events
    assert receipt.provider == "mailgun"
    assert receipt.kind is kind
    assert receipt.event_id == body["event-data"]["id"]
    assert receipt.provider_message_id == "20250301120000.1.ABCD@mg.example.test"
    assert receipt.reference == "att_1"
    assert receipt.occurred_at == NOW - timedelta(seconds=5) + timedelta(seconds=0.25)
    assert receipt.invalid_address is invalid
    assert receipt.error_code == error_code


def test_policy_bounce_is_not_an_invalid_address(make: Callable[..., Any]) -> None:
    """A 5.7.x policy refusal fails the attempt but keeps the address."""
    provider, _ = make()
    body = _event("failed", severity="permanent")
    body["event-data"]["delivery-status"] = {"code": 550, "message": "5.7.1 Blocked by policy"}
    [receipt] = provider.handle(_request(body)).events
    assert receipt.kind is ReceiptKind.FAILED
    assert receipt.invalid_address is False


@pytest.mark.parametrize("event", ["accepted", "complained", "unsubscribed"])
def test_uninteresting_events_are_acknowledged_without_receipts(
    make: Callable[..., Any], event: str
) -> None:
    """Events that say nothing about delivery are answered 200 and ignored."""
    provider, _ = make()
    reply = provider.handle(_request(_event(event)))
    assert (reply.status_code, reply.events) == (200, ())


def test_temporary_failure_is_ignored(make: Callable[..., Any]) -> None:
    """A temporary failure is Mailgun's to retry: no receipt yet."""
    provider, _ = make()
    reply = provider.handle(_request(_event("failed", severity="temporary")))
    assert (reply.status_code, reply.events) == (200, ())


def _tampered(mutate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    body = _event("delivered")
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(_tampered(lambda b: b.pop("signature")), 401, id="missing"),
        pytest.param(
            _tampered(lambda b: b["signature"].update(signature="0" * 64)), 401, id="wrong"
        ),
        pytest.param(
            signed_event("another-key", event="delivered", message_id="m", reference="r",
                         timestamp=int(NOW.timestamp())),
            401,
            id="other-key",
        ),
        pytest.param(
            _tampered(lambda b: b["signature"].update(timestamp=str(int(NOW.timestamp())))),
            401,
            id="timestamp-altered-after-signing",
        ),
        pytest.param(
            _tampered(lambda b: b["signature"].update(token="f" * 50)),
            401,
            id="token-altered-after-signing",
        ),
        pytest.param(
            _event("delivered", timestamp=int(NOW.timestamp()) - 16 * 60),
            403,
            id="stale-replay",
        ),
        pytest.param(
            _event("delivered", timestamp=int(NOW.timestamp()) + 16 * 60),
            403,
            id="from-the-future",
        ),
    ],
)  # fmt: skip
def test_bad_signatures_are_refused(
    make: Callable[..., Any], body: dict[str, Any] | bytes, status: int
) -> None:
    """Missing, wrong, altered or stale signatures raise with the right status; nothing parsed."""
    provider, _ = make()
    with pytest.raises(WebhookSignatureError) as caught:
        provider.handle(_request(body))
    assert caught.value.status_code == status


@pytest.mark.parametrize("body", [b"not json", b"[" * 30_000 + b"]" * 30_000, b"[]", b"\xff"])
def test_unreadable_body_is_a_400_reply(make: Callable[..., Any], body: bytes) -> None:
    """A body that is not a JSON object (deep nesting included) is 400, not an exception."""
    provider, _ = make()
    reply = provider.handle(_request(body))
    assert (reply.status_code, reply.events) == (400, ())


def test_max_age_is_configurable(make: Callable[..., Any]) -> None:
    """An operator can widen the replay window (e.g. for a slow queue in front of us)."""
    provider, _ = make(max_age=3600)
    body = _event("delivered", timestamp=int(NOW.timestamp()) - 30 * 60)
    assert len(provider.handle(_request(body)).events) == 1


def test_is_a_provider_and_a_webhook_receiver(make: Callable[..., Any]) -> None:
    """The dispatcher finds ``send`` and ``handle`` through the contract's protocols."""
    provider, _ = make()
    assert isinstance(provider, Provider)
    assert isinstance(provider, WebhookReceiver)
    assert (provider.name, provider.channel) == ("mailgun", Channel.EMAIL)


def test_no_signing_key_refuses_every_callback(make: Callable[..., Any]) -> None:
    """Without a signing key nothing can be verified, so nothing is applied."""
    provider, _ = make(webhook_signing_key=None)
    with pytest.raises(WebhookSignatureError):
        provider.handle(_request(_event("delivered")))


# --- against the simulator, over real HTTP -------------------------------------------


@pytest.fixture(name="sim")
def _sim() -> Iterator[tuple[Any, Callable[..., MailgunProvider]]]:
    app = create_app(signing_key=SIGNING_KEY)
    with serve(app) as base_url, httpx.Client() as client:

        def provider(**overrides: Any) -> MailgunProvider:
            return MailgunProvider(_config(base_url=base_url, **overrides), client)

        yield app, provider


def test_sim_send_is_queued(sim: tuple[Any, Callable[..., MailgunProvider]]) -> None:
    """Over HTTP the simulator authenticates us and records the form we sent."""
    app, provider = sim
    result = provider().send(MESSAGE)
    [sent] = app.sent
    assert sent["id"].strip("<>") == result.provider_message_id
    assert sent["form"]["v:cascade_reference"] == "att_1"
    assert sent["form"]["o:tracking-opens"] == "yes"


@pytest.mark.parametrize(
    ("overrides", "recipient", "error"),
    [
        ({"api_key": "wrong"}, "alice@example.org", ProviderConfigError),
        ({"domain": "other.example"}, "alice@example.org", ProviderConfigError),
        ({}, "invalid@example.org", InvalidAddressError),
    ],
)
def test_sim_errors(
    sim: tuple[Any, Callable[..., MailgunProvider]],
    overrides: dict[str, str],
    recipient: str,
    error: type[ProviderError],
) -> None:
    """A wrong key or domain is a config error; a refused ``to`` is an invalid address."""
    app, provider = sim
    message = Message(recipient=recipient, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(error):
        provider(**overrides).send(message)
    assert app.sent == []


def test_sim_hang_is_unknown_outcome(sim: tuple[Any, Callable[..., MailgunProvider]]) -> None:
    """No answer within the read timeout: the mail may have been queued."""
    _, provider = sim
    message = Message(recipient="hang@example.org", text="hi", reference="r", idempotency_key="k")
    with pytest.raises(UnknownOutcomeError):
        provider(timeout=0.2).send(message)


@pytest.mark.parametrize(
    ("event", "severity", "kind"),
    [("delivered", None, ReceiptKind.DELIVERED), ("failed", "permanent", ReceiptKind.FAILED)],
)
def test_sim_callback_reaches_the_webhook(
    sim: tuple[Any, Callable[..., MailgunProvider]],
    event: str,
    severity: str | None,
    kind: ReceiptKind,
) -> None:
    """The simulator signs an event for the last message and our handler accepts it."""
    _, provider = sim
    mailgun = provider()
    result = mailgun.send(MESSAGE)
    receiver, received = create_receiver(mailgun)
    with serve(receiver) as hook_url, httpx.Client() as control:
        sim_url = str(mailgun.config.base_url)
        spec = {"url": f"{hook_url}/webhook", "event": event, "severity": severity}
        answer = control.post(f"{sim_url}/_sim/callback", json=spec).json()
    assert answer["status_code"] == 200
    [receipt] = received.events
    assert (receipt.kind, receipt.reference) == (kind, "att_1")
    assert receipt.provider_message_id == result.provider_message_id


def test_sim_callback_with_wrong_key_is_refused(
    sim: tuple[Any, Callable[..., MailgunProvider]],
) -> None:
    """A receiver configured with another signing key answers 401 and records nothing."""
    _, provider = sim
    mailgun = provider(webhook_signing_key="not-the-key")
    mailgun.send(MESSAGE)
    receiver, received = create_receiver(mailgun)
    with serve(receiver) as hook_url, httpx.Client() as control:
        spec = {"url": f"{hook_url}/webhook", "event": "delivered"}
        answer = control.post(f"{mailgun.config.base_url}/_sim/callback", json=spec).json()
    assert answer["status_code"] == 401
    assert (received.events, received.refused) == ([], [401])


def test_reply_carries_the_token_as_a_nonce(make: Callable[..., Any]) -> None:
    """The token comes back as a nonce, valid until its timestamp goes stale, with the body's
    digest, so the dispatcher can refuse the same token with another payload."""
    provider, _ = make()
    body = _event("delivered", timestamp=int(NOW.timestamp()) - 60)
    request = _request(body)
    nonce = provider.handle(request).nonce
    assert nonce is not None
    assert nonce.value == body["signature"]["token"]
    assert nonce.expires_at == NOW.replace(microsecond=0) - timedelta(seconds=60) + timedelta(
        minutes=15
    )
    assert nonce.fingerprint == hashlib.sha256(request.body).hexdigest()
