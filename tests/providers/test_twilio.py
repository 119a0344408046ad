"""Twilio: request shape, error table, signed StatusCallbacks, and the live simulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

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
    RejectedError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.twilio import TwilioConfig, TwilioProvider, signature, url_variants
from tests.simulators.server import serve
from tests.simulators.twilio import ACCOUNT_SID, AUTH_TOKEN, create_app, status_callback
from tests.simulators.webhook_receiver import create_receiver
from tests.support.retries import record_retry_waits
from tests.support.transport import Answer, CannedClients

PHONE = "+14155552671"
HOOK = "https://cascade.example/v1/webhooks/twilio"
MESSAGE = Message(
    recipient=PHONE, text="Your order #42 is on its way", reference="att_1", idempotency_key="k1"
)
CREATED = {"sid": "SM" + "a" * 32, "status": "queued", "price": None, "to": PHONE}


def _config(**overrides: Any) -> TwilioConfig:
    values: dict[str, Any] = {
        "base_url": "https://twilio.test",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": "+15005550006",
        "status_callback_url": HOOK,
        "timeout": 9.0,
    }
    return TwilioConfig.model_validate({**values, **overrides})


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, TwilioProvider._post)


@pytest.fixture(name="make")
def _make(canned: CannedClients) -> Callable[..., tuple[TwilioProvider, list[httpx.Request]]]:
    def make(answer: Answer = None, **config: Any) -> tuple[TwilioProvider, list[httpx.Request]]:
        client, seen = canned.answering(answer, lambda: httpx.Response(201, json=CREATED))
        return TwilioProvider(_config(**config), client), seen

    return make


def _form(request: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(request.content.decode()))


def test_send_posts_the_form(make: Callable[..., Any]) -> None:
    """One send is a Basic-authenticated form POST whose StatusCallback carries our reference."""
    provider, seen = make()
    result = provider.send(MESSAGE)
    assert (result.provider_message_id, result.cost) == ("SM" + "a" * 32, None)
    [request] = seen
    assert request.method == "POST"
    assert (
        str(request.url) == f"https://twilio.test/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    )
    credentials = f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()
    assert request.headers["authorization"] == "Basic " + base64.b64encode(credentials).decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert _form(request) == {
        "To": PHONE,
        "From": "+15005550006",
        "Body": "Your order #42 is on its way",
        "StatusCallback": f"{HOOK}?ref=att_1",
    }
    assert request.extensions["timeout"]["read"] == 9.0
    assert request.extensions["timeout"]["connect"] == 3.0


def test_messaging_service_replaces_from_and_callback_is_optional(
    make: Callable[..., Any],
) -> None:
    """With a Messaging Service no From is sent; without a callback URL no StatusCallback."""
    provider, seen = make(messaging_service_sid="MG" + "1" * 32, status_callback_url=None)
    provider.send(MESSAGE)
    assert _form(seen[0]) == {
        "To": PHONE,
        "MessagingServiceSid": "MG" + "1" * 32,
        "Body": "Your order #42 is on its way",
    }


@pytest.mark.parametrize(
    ("callback_url", "reference", "expected"),
    [
        (f"{HOOK}?tenant=a", "att_1", f"{HOOK}?tenant=a&ref=att_1"),
        (f"{HOOK}?", "att_1", f"{HOOK}?ref=att_1"),
        (HOOK, "a b&c=d", f"{HOOK}?ref=a+b%26c%3Dd"),
    ],
)
def test_status_callback_ref_is_appended_encoded(
    make: Callable[..., Any], callback_url: str, reference: str, expected: str
) -> None:
    """``ref`` joins an existing query with ``&`` and is URL-encoded."""
    provider, seen = make(status_callback_url=callback_url)
    message = Message(recipient=PHONE, text="hi", reference=reference, idempotency_key="k")
    provider.send(message)
    assert _form(seen[0])["StatusCallback"] == expected


@pytest.mark.parametrize(("price", "cost"), [("-0.00750", 0.0075), (None, None), ("n/a", None)])
def test_price_becomes_cost_only_when_reported(
    make: Callable[..., Any], price: str | None, cost: float | None
) -> None:
    """Twilio's negative ``price`` string is the cost; a null or odd price is no cost."""
    provider, _ = make(httpx.Response(201, json={**CREATED, "price": price}))
    assert provider.send(MESSAGE).cost == cost


def _twilio_error(status: int, code: int, message: str = "The 'To' number +14155552671 ...") -> Any:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


ERRORS = [
    (400, _twilio_error(400, 21211), {}, InvalidAddressError, None, 1),
    (400, _twilio_error(400, 21614), {}, InvalidAddressError, None, 1),
    (400, _twilio_error(400, 21610), {}, RejectedError, None, 1),
    (400, _twilio_error(400, 21408), {}, ProviderConfigError, None, 1),
    (400, _twilio_error(400, 21612), {}, ProviderConfigError, None, 1),
    (400, _twilio_error(400, 21606), {}, ProviderConfigError, None, 1),
    (400, _twilio_error(400, 21617), {}, RejectedError, None, 1),
    (401, _twilio_error(401, 20003, "Authenticate"), {}, ProviderConfigError, None, 1),
    (404, _twilio_error(404, 20404, "not found"), {}, ProviderConfigError, None, 1),
    (403, b"Forbidden", {}, ProviderConfigError, None, 1),
    (429, _twilio_error(429, 20429), {"Retry-After": "30"}, NotSentError, 30.0, 1),
    (429, _twilio_error(429, 20429), {}, NotSentError, None, 3),
    (500, _twilio_error(500, 20500), {}, UnknownOutcomeError, None, 1),
    (503, _twilio_error(503, 20503), {"Retry-After": "1"}, NotSentError, 1.0, 3),
    (503, _twilio_error(503, 20503), {"Retry-After": "60"}, NotSentError, 60.0, 1),
    (502, b"<html>Bad Gateway</html>", {}, UnknownOutcomeError, None, 1),
    (201, {"status": "queued"}, {}, UnknownOutcomeError, None, 1),
    (201, b"not json", {}, UnknownOutcomeError, None, 1),
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
    """Each answer becomes its class; only a short 429/503 is retried; other 5xx are unknown."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    provider, seen = make(httpx.Response(status, content=content, headers=headers))
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)
    assert type(caught.value) is error
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert PHONE not in str(caught.value)
    assert "order" not in str(caught.value)
    assert len(seen) == calls
    assert len(waits) == calls - 1


def test_error_code_is_kept(make: Callable[..., Any]) -> None:
    """The Twilio error code travels on the exception for history and stats."""
    provider, _ = make(httpx.Response(400, json=_twilio_error(400, 21211)))
    with pytest.raises(InvalidAddressError) as caught:
        provider.send(MESSAGE)
    assert caught.value.code == "21211"


@pytest.mark.parametrize(
    ("exc", "error", "calls"),
    [
        (httpx.ReadTimeout("slow"), UnknownOutcomeError, 1),
        (httpx.RemoteProtocolError("dropped"), UnknownOutcomeError, 1),
        (httpx.ConnectError("refused"), NotSentError, 3),
    ],
)
def test_transport_failures(
    make: Callable[..., Any],
    waits: list[float],
    exc: Exception,
    error: type[ProviderError],
    calls: int,
) -> None:
    """After the body left, an SMS may be billed: unknown, never retried; a refused connect is."""
    provider, seen = make(exc)
    with pytest.raises(error):
        provider.send(MESSAGE)
    assert len(seen) == calls


def test_config_needs_a_sender() -> None:
    """Neither ``sender`` nor ``messaging_service_sid``: refused at startup."""
    with pytest.raises(ValidationError, match="sender or messaging_service_sid"):
        _config(sender=None)


def test_is_a_provider_and_a_webhook_receiver(make: Callable[..., Any]) -> None:
    """The dispatcher finds ``send`` and ``handle`` through the contract's protocols."""
    provider, _ = make()
    assert (provider.name, provider.channel) == ("twilio", Channel.SMS)
    assert TwilioProvider.config_model is TwilioConfig
    assert isinstance(provider, Provider)
    assert isinstance(provider, WebhookReceiver)


# --- the StatusCallback webhook -----------------------------------------------------------


class _MultiDict(dict[str, list[str]]):
    """Flask-style multi-valued params, which ``RequestValidator`` reads with ``getall``."""

    def getall(self, name: str) -> list[str]:
        return self[name]


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (HOOK + "?ref=att_1", {"MessageSid": ["SM1"], "MessageStatus": ["delivered"]}),
        ("https://x.example:8443/cb?a=1&b=2", {"To": ["+1 415"], "Body": ["ünïcode ✓"]}),
        ("http://x.example/cb", {"B": ["2", "1", "2"], "A": ["z"], "Empty": [""]}),
        ("https://x.example/cb", {}),
    ],
)
def test_signature_equals_twilio_reference(url: str, params: dict[str, list[str]]) -> None:
    """Our signature is byte-for-byte ``RequestValidator.compute_signature``."""
    expected = RequestValidator(AUTH_TOKEN).compute_signature(url, _MultiDict(params))
    assert signature(AUTH_TOKEN, url, params) == expected


@pytest.mark.parametrize(
    ("url", "variants"),
    [
        ("https://h.example/cb?x=1", ("https://h.example/cb?x=1", "https://h.example:443/cb?x=1")),
        ("http://h.example:80/cb", ("http://h.example:80/cb", "http://h.example/cb")),
        ("http://h.example:8080/cb", ("http://h.example:8080/cb", "http://h.example/cb")),
        ("http://h.example:bad/cb", ("http://h.example:bad/cb",)),
    ],
)
def test_url_variants_match_request_validator(url: str, variants: tuple[str, ...]) -> None:
    """Like twilio-python, the URL is tried with the default port added and the port removed."""
    assert url_variants(url) == variants


def _incoming(url: str, headers: dict[str, str], body: bytes) -> WebhookRequest:
    """A callback as the dispatcher builds it (form parsed from the raw body)."""
    return WebhookRequest(
        method="POST",
        url=url,
        headers={k.lower(): v for k, v in headers.items()},
        query={k: v[0] for k, v in parse_qs(url.partition("?")[2]).items()},
        body=body,
        form=parse_qs(body.decode(), keep_blank_values=True),
    )


def _callback(status: str, url: str = f"{HOOK}?ref=att_1", **kwargs: Any) -> WebhookRequest:
    headers, body = status_callback(
        AUTH_TOKEN, url, message_sid="SM" + "b" * 32, status=status, to=PHONE, **kwargs
    )
    return _incoming(url, headers, body)


@pytest.mark.parametrize(
    ("status", "error_code", "kind", "expected_code", "invalid"),
    [
        ("delivered", None, ReceiptKind.DELIVERED, None, False),
        ("sent", None, ReceiptKind.SENT, None, False),
        ("undelivered", "30003", ReceiptKind.FAILED, "30003", False),
        ("undelivered", "30005", ReceiptKind.FAILED, "30005", True),
        ("failed", "30006", ReceiptKind.FAILED, "30006", True),
        ("failed", "21211", ReceiptKind.FAILED, "21211", True),
        ("failed", "30008", ReceiptKind.FAILED, "30008", False),
        ("failed", None, ReceiptKind.FAILED, "failed", False),
    ],
)
def test_signed_callback_parses(
    make: Callable[..., Any],
    status: str,
    error_code: str | None,
    kind: ReceiptKind,
    expected_code: str | None,
    invalid: bool,
) -> None:
    """A correctly signed StatusCallback becomes one receipt with our reference from the URL."""
    provider, _ = make()
    reply = provider.handle(_callback(status, error_code=error_code))
    assert reply.status_code == 200
    [receipt] = reply.events
    assert receipt.provider == "twilio"
    assert receipt.kind is kind
    assert receipt.event_id == f"SM{'b' * 32}:{status}"
    assert receipt.provider_message_id == "SM" + "b" * 32
    assert receipt.reference == "att_1"
    assert receipt.recipient == PHONE
    assert receipt.error_code == expected_code
    assert receipt.invalid_address is invalid


def test_repeated_callback_has_the_same_event_id(make: Callable[..., Any]) -> None:
    """Twilio repeats callbacks; identical ones share the dispatcher's dedup key."""
    provider, _ = make()
    first = provider.handle(_callback("delivered")).events[0]
    again = provider.handle(_callback("delivered")).events[0]
    assert first.event_id == again.event_id


@pytest.mark.parametrize("status", ["queued", "sending", "accepted", "scheduled", "read"])
def test_intermediate_statuses_are_acknowledged_without_receipts(
    make: Callable[..., Any], status: str
) -> None:
    """Statuses that say nothing the SMS channel tracks are answered 200 and ignored."""
    provider, _ = make()
    reply = provider.handle(_callback(status))
    assert (reply.status_code, reply.events) == (200, ())


def test_callback_without_ref_has_no_reference(make: Callable[..., Any]) -> None:
    """A callback URL configured elsewhere (no ``ref``) still yields the receipt by sid."""
    provider, _ = make()
    [receipt] = provider.handle(_callback("delivered", url=HOOK)).events
    assert (receipt.reference, receipt.provider_message_id) == (None, "SM" + "b" * 32)


def _without_signature(request: WebhookRequest) -> WebhookRequest:
    headers = {k: v for k, v in request.headers.items() if k != "x-twilio-signature"}
    return WebhookRequest("POST", request.url, headers, request.query, request.body, request.form)


def _with_form(request: WebhookRequest, **changes: list[str]) -> WebhookRequest:
    form = {**request.form, **changes}
    return WebhookRequest("POST", request.url, request.headers, request.query, b"", form)


def _with_url(request: WebhookRequest, url: str) -> WebhookRequest:
    return WebhookRequest("POST", url, request.headers, request.query, request.body, request.form)


def _with_header(request: WebhookRequest, value: str) -> WebhookRequest:
    headers = {**request.headers, "x-twilio-signature": value}
    return WebhookRequest("POST", request.url, headers, request.query, request.body, request.form)


_SIGNED = _callback("delivered")


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        pytest.param(_without_signature(_SIGNED), 401, id="missing"),
        pytest.param(_with_header(_SIGNED, "A" * 28), 403, id="wrong"),
        pytest.param(_with_header(_SIGNED, "ünïcode"), 403, id="non-ascii"),
        pytest.param(
            _with_form(_SIGNED, MessageStatus=["failed"]), 403, id="status-altered-after-signing"
        ),
        pytest.param(
            _with_form(_SIGNED, MessageSid=["SM" + "c" * 32]), 403, id="sid-altered-after-signing"
        ),
        pytest.param(_with_form(_SIGNED, ErrorCode=["30005"]), 403, id="param-added"),
        pytest.param(_with_url(_SIGNED, f"{HOOK}?ref=att_2"), 403, id="ref-altered-after-signing"),
        pytest.param(_with_url(_SIGNED, HOOK.replace("https", "http")), 403, id="scheme-differs"),
    ],
)
def test_bad_signatures_are_refused(
    make: Callable[..., Any], request_: WebhookRequest, status: int
) -> None:
    """Missing, wrong or stale signatures raise with the right status; nothing is parsed."""
    provider, _ = make()
    with pytest.raises(WebhookSignatureError) as caught:
        provider.handle(request_)
    assert caught.value.status_code == status


def test_callback_signed_with_another_token_is_refused(make: Callable[..., Any]) -> None:
    """A callback signed by someone without our auth token is refused."""
    provider, _ = make(auth_token="another-auth-token")
    with pytest.raises(WebhookSignatureError):
        provider.handle(_callback("delivered"))


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        ("https://cascade.example:443/cb?ref=att_1", "https://cascade.example/cb?ref=att_1"),
        ("https://cascade.example/cb?ref=att_1", "https://cascade.example:443/cb?ref=att_1"),
        ("http://cascade.example/cb?ref=att_1", "http://cascade.example:80/cb?ref=att_1"),
        ("http://cascade.example:80/cb?ref=att_1", "http://cascade.example/cb?ref=att_1"),
    ],
)
def test_url_with_or_without_port_is_accepted(
    make: Callable[..., Any], signed_url: str, received_url: str
) -> None:
    """Twilio may sign with or without the default port; both verify, like RequestValidator."""
    provider, _ = make()
    headers, body = status_callback(AUTH_TOKEN, signed_url, message_sid="SM1", status="delivered")
    [receipt] = provider.handle(_incoming(received_url, headers, body)).events
    assert receipt.reference == "att_1"
    params = {name: values[0] for name, values in parse_qs(body.decode()).items()}
    assert RequestValidator(AUTH_TOKEN).validate(
        received_url, params, headers["X-Twilio-Signature"]
    )


# --- against the simulator, over real HTTP -------------------------------------------------


@pytest.fixture(name="sim")
def _sim() -> Iterator[tuple[Any, str, Callable[..., TwilioProvider]]]:
    app = create_app()
    with serve(app) as base_url, httpx.Client() as client:

        def provider(**overrides: Any) -> TwilioProvider:
            return TwilioProvider(_config(base_url=base_url, **overrides), client)

        yield app, base_url, provider


def test_sim_send_is_queued(sim: tuple[Any, str, Callable[..., TwilioProvider]]) -> None:
    """Over HTTP the simulator authenticates us, creates the message and keeps its callback."""
    app, _, provider = sim
    result = provider().send(MESSAGE)
    [sent] = app.sent
    assert sent["sid"] == result.provider_message_id
    assert result.provider_message_id.startswith("SM")
    assert sent["status_callback"] == f"{HOOK}?ref=att_1"
    assert (sent["to"], sent["from"], sent["status"]) == (PHONE, "+15005550006", "queued")


@pytest.mark.parametrize(
    ("overrides", "recipient", "error", "tries"),
    [
        ({"auth_token": "wrong"}, PHONE, ProviderConfigError, 1),
        ({"account_sid": "AC" + "9" * 32}, PHONE, ProviderConfigError, 1),
        ({}, "+15005550001", InvalidAddressError, 1),
        ({}, "+15005550004", RejectedError, 1),
        ({}, "+15005550003", ProviderConfigError, 1),
        ({}, "+15005550503", NotSentError, 3),
    ],
)
def test_sim_errors(
    sim: tuple[Any, str, Callable[..., TwilioProvider]],
    waits: list[float],
    overrides: dict[str, str],
    recipient: str,
    error: type[ProviderError],
    tries: int,
) -> None:
    """Wrong credentials, Twilio's magic numbers and a 503 map to their classes over HTTP."""
    app, _, provider = sim
    message = Message(recipient=recipient, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(error):
        provider(**overrides).send(message)
    assert app.sent == []
    assert len(app.requests) == tries  # only "not sent" is retried quickly


def test_sim_throttling_is_retried_quickly(
    sim: tuple[Any, str, Callable[..., TwilioProvider]], waits: list[float]
) -> None:
    """429 20429 without Retry-After is "not sent": a few quick retries, then the error."""
    app, _, provider = sim
    message = Message(recipient="+15005550429", text="hi", reference="r", idempotency_key="k")
    with pytest.raises(NotSentError) as caught:
        provider().send(message)
    assert caught.value.code == "20429"
    assert len(app.requests) == 3


def test_sim_hang_is_unknown_outcome(sim: tuple[Any, str, Callable[..., TwilioProvider]]) -> None:
    """No answer within the read timeout: the SMS may be billed, so it is not resent."""
    app, _, provider = sim
    message = Message(recipient="+15005559999", text="hi", reference="r", idempotency_key="k")
    with pytest.raises(UnknownOutcomeError):
        provider(timeout=0.2).send(message)
    assert len(app.requests) == 1


def test_sim_outage_then_recovery(sim: tuple[Any, str, Callable[..., TwilioProvider]]) -> None:
    """In outage mode every send gets 503 (not sent, retried quickly); back to normal it works."""
    app, base_url, provider = sim
    twilio = provider()
    with httpx.Client() as control:
        assert control.post(f"{base_url}/_sim/mode", json={"mode": "outage"}).status_code == 200
        for _ in range(2):
            with pytest.raises(NotSentError):
                twilio.send(MESSAGE)
        assert control.post(f"{base_url}/_sim/mode", json={"mode": "normal"}).status_code == 200
    assert twilio.send(MESSAGE).provider_message_id == app.sent[0]["sid"]
    assert len(app.requests) == 2 * 3 + 1  # two sends with three quick tries each, then one


@pytest.mark.parametrize(
    ("status", "error_code", "kind", "invalid"),
    [
        ("delivered", None, ReceiptKind.DELIVERED, False),
        ("undelivered", "30005", ReceiptKind.FAILED, True),
    ],
)
def test_sim_callback_reaches_the_webhook(
    sim: tuple[Any, str, Callable[..., TwilioProvider]],
    status: str,
    error_code: str | None,
    kind: ReceiptKind,
    invalid: bool,
) -> None:
    """The simulator signs a StatusCallback to the URL given at send time; we accept it."""
    _, base_url, provider = sim
    receiver, received = create_receiver(provider())
    with serve(receiver) as hook_url, httpx.Client() as control:
        result = provider(status_callback_url=f"{hook_url}/webhook").send(MESSAGE)
        spec = {"message_id": result.provider_message_id, "status": status}
        if error_code:
            spec["error_code"] = error_code
        answer = control.post(f"{base_url}/_sim/callback", json=spec).json()
    assert answer["status_code"] == 200
    [receipt] = received.events
    assert (receipt.kind, receipt.reference, receipt.invalid_address) == (kind, "att_1", invalid)
    assert receipt.provider_message_id == result.provider_message_id


def test_sim_callback_with_wrong_token_is_refused(
    sim: tuple[Any, str, Callable[..., TwilioProvider]],
) -> None:
    """A receiver holding another auth token answers 403 and records nothing."""
    _, base_url, provider = sim
    receiver, received = create_receiver(provider(auth_token="not-the-token"))
    with serve(receiver) as hook_url, httpx.Client() as control:
        result = provider(status_callback_url=f"{hook_url}/webhook").send(MESSAGE)
        spec = {"message_id": result.provider_message_id, "status": "delivered"}
        answer = control.post(f"{base_url}/_sim/callback", json=spec).json()
    assert answer["status_code"] == 403
    assert (received.events, received.refused) == ([], [403])
