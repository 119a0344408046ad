"""VK provider: exact form, random_id dedup, error codes, the simulator, Callback API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from providers.base import Message, ReceiptKind
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.vk import VkConfig, VkProvider, random_id
from tests.providers.messenger_support import (
    NOW,
    no_retry_wait,
    reply,
    running,
    scripted,
    webhook_request,
)
from tests.simulators import vk as sim
from tests.simulators.server import serve

BASE = "https://vk.example"
TOKEN = "vk1.a.community-token"
SECRET = "callback-secret"
GROUP = 217000001
USER = "1234567"
TEXT = "Посылка у двери"  # noqa: RUF001  (Cyrillic on purpose: the form must be UTF-8)
MESSAGE = Message(recipient=USER, text=TEXT, reference="att-5", idempotency_key="idem-5")


def config(**overrides: Any) -> VkConfig:
    values: dict[str, Any] = {
        "base_url": BASE,
        "access_token": SecretStr(TOKEN),
        "confirmation_code": "a1b2c3d4",
        "secret": SecretStr(SECRET),
        "group_id": GROUP,
    }
    return VkConfig(**{**values, **overrides})


def vk_error(code: int) -> dict[str, Any]:
    params = [{"key": "method", "value": "messages.send"}]
    return {"error": {"error_code": code, "error_msg": "x", "request_params": params}}


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    no_retry_wait(monkeypatch, VkProvider._post)


def test_send_posts_exact_form() -> None:
    """messages.send is a form POST with token, version, user, text and random_id."""
    with scripted(reply(200, {"response": 456})) as (client, script):
        result = VkProvider(config(), client).send(MESSAGE)
    assert result.provider_message_id == "456"
    assert result.cost is None
    assert str(script.last.url) == f"{BASE}/method/messages.send"
    assert script.last.headers["content-type"] == "application/x-www-form-urlencoded"
    assert script.last.extensions["timeout"]["read"] == 15.0
    assert dict(parse_qsl(script.last.content.decode())) == {
        "access_token": TOKEN,
        "v": "5.199",
        "user_id": USER,
        "message": TEXT,
        "random_id": str(random_id("idem-5")),
    }


def test_random_id_is_deterministic_positive_int32() -> None:
    """random_id depends only on the idempotency key and is a non-zero int32."""
    values = {random_id(f"key-{n}") for n in range(2000)}
    assert random_id("idem-5") == random_id("idem-5")
    assert len(values) == 2000
    assert all(0 < v <= 0x7FFFFFFF for v in values)


@pytest.mark.parametrize(
    ("code", "expected", "retry_after"),
    [
        (6, NotSentError, 1.0),
        (9, NotSentError, 3600.0),
        (1, NotSentError, None),
        (10, UnknownOutcomeError, None),
        (5, ProviderConfigError, None),
        (7, ProviderConfigError, None),
        (15, ProviderConfigError, None),
        (27, ProviderConfigError, None),
        (14, ProviderConfigError, None),
        (100, ProviderConfigError, None),
        (914, ProviderConfigError, None),
        (113, InvalidAddressError, None),
        (900, InvalidAddressError, None),
        (901, InvalidAddressError, None),
        (902, InvalidAddressError, None),
        (917, InvalidAddressError, None),
        (936, InvalidAddressError, None),
        (12345, RejectedError, None),
    ],
)
def test_error_codes_map(
    code: int, expected: type[ProviderError], retry_after: float | None
) -> None:
    """HTTP 200 with ``error.error_code`` is classified by the table."""
    with (
        scripted(reply(200, vk_error(code))) as (client, _),
        pytest.raises(ProviderError) as caught,
    ):
        VkProvider(config(), client).send(MESSAGE)
    assert type(caught.value) is expected
    assert caught.value.code == str(code)
    if isinstance(caught.value, NotSentError):
        assert caught.value.retry_after == retry_after
    assert TOKEN not in str(caught.value)
    assert USER not in str(caught.value)


@pytest.mark.parametrize(
    ("response", "expected", "attempts"),
    [
        (reply(200, b"<html>"), UnknownOutcomeError, 1),
        (reply(200, {"response": [{"peer_id": 1}]}), UnknownOutcomeError, 1),
        (reply(502, b""), UnknownOutcomeError, 1),
        (httpx.ReadTimeout("slow"), UnknownOutcomeError, 1),
        (httpx.ConnectError("down"), NotSentError, 3),
    ],
)
def test_transport_and_odd_answers(
    response: httpx.Response | Exception, expected: type[ProviderError], attempts: int
) -> None:
    """Unreadable answers and read timeouts are Unknown; connect errors are NotSent."""
    with scripted(response) as (client, script), pytest.raises(ProviderError) as caught:
        VkProvider(config(), client).send(MESSAGE)
    assert type(caught.value) is expected
    assert len(script.requests) == attempts


def test_too_many_requests_retried_with_same_random_id() -> None:
    """Error 6 is retried quickly; every attempt carries the same random_id."""
    with scripted(reply(200, vk_error(6)), reply(200, {"response": 9})) as (client, script):
        result = VkProvider(config(), client).send(MESSAGE)
    assert result.provider_message_id == "9"
    ids = {dict(parse_qsl(r.content.decode()))["random_id"] for r in script.requests}
    assert len(script.requests) == 2
    assert len(ids) == 1


# --- against the simulator, over real HTTP -------------------------------------------


def sim_provider(base: str, client: httpx.Client, **overrides: Any) -> VkProvider:
    values: dict[str, Any] = {
        "base_url": base,
        "access_token": SecretStr(sim.ACCESS_TOKEN),
        "timeout": 2.0,
    }
    return VkProvider(VkConfig(**{**values, **overrides}), client)


def to(user: str, key: str = "k") -> Message:
    return Message(recipient=user, text="t", reference="r", idempotency_key=key)


def test_simulator_send_and_errors() -> None:
    """Real HTTP: success; no permission, privacy and a bad token map as documented."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client:
        provider = sim_provider(base, client)
        first = provider.send(MESSAGE)
        recorded = client.get(f"{base}/_sim/requests").json()["requests"]
        with pytest.raises(InvalidAddressError):
            provider.send(to("901"))
        with pytest.raises(InvalidAddressError):
            provider.send(to("902"))
        with pytest.raises(ProviderConfigError):
            sim_provider(base, client, access_token=SecretStr("revoked")).send(MESSAGE)
    assert first.provider_message_id == str(sim.FIRST_MESSAGE_ID)
    assert app.sent == [{"id": sim.FIRST_MESSAGE_ID, "user_id": USER, "message": TEXT}]
    assert [r["path"] for r in recorded] == ["/method/messages.send"]


def test_retry_after_unknown_outcome_is_deduplicated() -> None:
    """Hang, then resend with the same idempotency key: one message, and its id comes back."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client:
        with pytest.raises(UnknownOutcomeError):
            sim_provider(base, client, timeout=0.2).send(to("409", key="attempt-1"))
        retried = sim_provider(base, client).send(to("409", key="attempt-1"))
        internal_error = to("10", key="attempt-2")
        with pytest.raises(UnknownOutcomeError):
            sim_provider(base, client).send(internal_error)
        after_error = sim_provider(base, client).send(internal_error)
    assert retried.provider_message_id == str(sim.FIRST_MESSAGE_ID)
    assert after_error.provider_message_id == str(sim.FIRST_MESSAGE_ID + 1)
    assert [m["user_id"] for m in app.sent] == ["409", "10"]
    assert len(app.requests) == 4


def test_simulator_hang_is_unknown_outcome() -> None:
    """A request the service never answers raises UnknownOutcomeError after the read timeout."""
    app = sim.create_app()
    with serve(app) as base, httpx.Client() as client, pytest.raises(UnknownOutcomeError):
        sim_provider(base, client, timeout=0.2).send(to("408"))
    assert len(app.requests) == 1


# --- Callback API ------------------------------------------------------------------------


def test_message_read_becomes_read_up_to_receipt() -> None:
    """A message_read with our secret is one READ 'up to' event for the peer; answer ok."""
    headers, body = sim.message_read(
        secret=SECRET, peer_id=1234567, read_message_id=456, group_id=GROUP
    )
    with scripted() as (client, _):
        provider = VkProvider(config(), client)
        answer = provider.handle(webhook_request(body, headers))
        again = provider.handle(webhook_request(body, headers))
    (event,) = answer.events
    assert (answer.status_code, answer.body) == (200, "ok")
    assert event.kind is ReceiptKind.READ
    assert event.read_up_to is True
    assert event.recipient == "1234567"
    assert event.provider_message_id == "456"
    assert event.occurred_at == NOW
    assert event.event_id == again.events[0].event_id == json.loads(body)["event_id"]


def test_other_events_answer_ok_without_receipts() -> None:
    """Verified events that are not receipts still get ``ok`` (else VK retries them)."""
    event = {"type": "message_new", "group_id": GROUP, "secret": SECRET, "object": {}}
    with scripted() as (client, _):
        answer = VkProvider(config(), client).handle(webhook_request(json.dumps(event).encode()))
    assert (answer.status_code, answer.body, answer.events) == (200, "ok", ())


@pytest.mark.parametrize("secret", [None, SECRET])
def test_confirmation_answers_the_code(secret: str | None) -> None:
    """The confirmation event is answered with the configured code as plain text."""
    headers, body = sim.confirmation(group_id=GROUP, secret=secret)
    with scripted() as (client, _):
        answer = VkProvider(config(), client).handle(webhook_request(body, headers))
    assert (answer.status_code, answer.body, answer.media_type) == (200, "a1b2c3d4", "text/plain")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(
            sim.message_read(secret=None, peer_id=1, read_message_id=2, group_id=GROUP)[1],
            401,
            id="missing",
        ),
        pytest.param(
            sim.message_read(secret="guess", peer_id=1, read_message_id=2, group_id=GROUP)[1],
            403,
            id="wrong",
        ),
        pytest.param(
            sim.message_read(secret=SECRET, peer_id=1, read_message_id=2, group_id=1)[1],
            403,
            id="other-group",
        ),
        pytest.param(sim.confirmation(group_id=GROUP, secret="guess")[1], 403, id="confirm-wrong"),
        pytest.param(sim.confirmation(group_id=99)[1], 403, id="confirm-other-group"),
    ],
)
def test_callback_refuses_missing_or_wrong_secret(body: bytes, status: int) -> None:
    """Wrong or missing secret, or another community, is refused; nothing is parsed."""
    with scripted() as (client, _), pytest.raises(WebhookSignatureError) as caught:
        VkProvider(config(), client).handle(webhook_request(body))
    assert caught.value.status_code == status


def test_callback_without_configured_secret_refuses_events() -> None:
    """With no secret configured, events cannot be authenticated and are refused."""
    _, body = sim.message_read(secret="", peer_id=1, read_message_id=2, group_id=GROUP)
    with scripted() as (client, _), pytest.raises(WebhookSignatureError):
        VkProvider(config(secret=None), client).handle(webhook_request(body))


def test_simulator_callbacks_over_http() -> None:
    """Confirmation and a message_read from the simulator travel over real HTTP."""
    app = sim.create_app()
    with scripted() as (unused, _):
        receiver = VkProvider(config(secret=SecretStr(sim.SECRET), group_id=sim.GROUP_ID), unused)
    with running(app, receiver) as (base, hook, received), httpx.Client() as client:
        confirmed = client.post(f"{base}/_sim/confirm", json={"url": hook})
        sent = sim_provider(base, client).send(MESSAGE)
        read = client.post(
            f"{base}/_sim/callback", json={"url": hook, "message_id": sent.provider_message_id}
        )
        forged = client.post(
            f"{base}/_sim/callback",
            json={"url": hook, "message_id": sent.provider_message_id, "secret": "forged"},
        )
    assert confirmed.json() == {"status_code": 200, "body": "a1b2c3d4"}
    assert read.json() == {"status_code": 200, "body": "ok"}
    assert forged.json()["status_code"] == 403
    (event,) = received.events
    assert (event.kind, event.recipient) == (ReceiptKind.READ, USER)
    assert event.provider_message_id == sent.provider_message_id
