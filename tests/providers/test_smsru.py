"""SMS.ru: request shape, status-code table, secret-protected callbacks, and the live simulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

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
    RejectedError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.smsru import SmsRuConfig, SmsRuProvider
from tests.simulators.server import serve
from tests.simulators.smsru import API_ID, callback_form, callback_request, create_app
from tests.simulators.webhook_receiver import create_receiver
from tests.support.retries import record_retry_waits
from tests.support.transport import Answer, CannedClients

PHONE = "+7 999 123-45-67"
DIGITS = "79991234567"
SECRET = "cb-secret-0123456789"
HOOK = "https://cascade.example/v1/webhooks/smsru"
MESSAGE = Message(recipient=PHONE, text="Заказ 42 в пути", reference="att_1", idempotency_key="k1")
SMS_ID = "000000-10000001"
STAMP = 1740830400  # 2025-03-01 12:00:00 UTC


def _ok(phone: str = DIGITS, **entry: Any) -> dict[str, Any]:
    result = {"status": "OK", "status_code": 100, "sms_id": SMS_ID, **entry}
    return {"status": "OK", "status_code": 100, "sms": {phone: result}, "balance": 4122.56}


def _top(code: int) -> dict[str, Any]:
    return {"status": "ERROR", "status_code": code, "status_text": f"error {code}"}


def _per_number(code: int) -> dict[str, Any]:
    entry = {"status": "ERROR", "status_code": code, "status_text": f"{DIGITS} refused"}
    return {"status": "OK", "status_code": 100, "sms": {DIGITS: entry}, "balance": 4122.56}


def _config(**overrides: Any) -> SmsRuConfig:
    values: dict[str, Any] = {
        "base_url": "https://smsru.test",
        "api_id": API_ID,
        "sender": "Shop",
        "callback_secret": SECRET,
        "timeout": 9.0,
    }
    return SmsRuConfig.model_validate({**values, **overrides})


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, SmsRuProvider._post)


@pytest.fixture(name="make")
def _make(canned: CannedClients) -> Callable[..., tuple[SmsRuProvider, list[httpx.Request]]]:
    def make(answer: Answer = None, **config: Any) -> tuple[SmsRuProvider, list[httpx.Request]]:
        client, seen = canned.answering(answer, lambda: httpx.Response(200, json=_ok()))
        return SmsRuProvider(_config(**config), client), seen

    return make


def _form(request: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(request.content.decode()))


def test_send_posts_the_form(make: Callable[..., Any]) -> None:
    """One send is a form POST with api_id, the number as digits only, and json=1."""
    provider, seen = make()
    result = provider.send(MESSAGE)
    assert (result.provider_message_id, result.cost) == (SMS_ID, None)
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://smsru.test/sms/send"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert _form(request) == {
        "api_id": API_ID,
        "to": DIGITS,
        "msg": "Заказ 42 в пути",
        "json": "1",
        "from": "Shop",
    }
    assert request.extensions["timeout"]["read"] == 9.0
    assert request.extensions["timeout"]["connect"] == 3.0


def test_no_sender_and_test_mode(make: Callable[..., Any]) -> None:
    """Without a sender no ``from`` is sent; ``test`` mode adds ``test=1``."""
    provider, seen = make(sender=None, test=True)
    provider.send(MESSAGE)
    form = _form(seen[0])
    assert "from" not in form
    assert form["test"] == "1"


@pytest.mark.parametrize(("cost", "expected"), [(0.5, 0.5), ("1.25", 1.25), (None, None)])
def test_reported_cost_is_returned(
    make: Callable[..., Any], cost: object, expected: float | None
) -> None:
    """A per-number ``cost`` in the answer becomes the result's cost; none means None."""
    body = _ok(cost=cost) if cost is not None else _ok()
    provider, _ = make(httpx.Response(200, json=body))
    assert provider.send(MESSAGE).cost == expected


def test_normalised_number_key_is_found(make: Callable[..., Any]) -> None:
    """SMS.ru may key the result by its own normalisation of the number: the only entry wins."""
    provider, _ = make(httpx.Response(200, json=_ok(phone="89991234567")))
    assert provider.send(MESSAGE).provider_message_id == SMS_ID


ERRORS = [
    (_top(200), ProviderConfigError, None, 1),
    (_top(201), ProviderConfigError, None, 1),
    (_top(204), ProviderConfigError, None, 1),
    (_top(212), ProviderConfigError, None, 1),
    (_top(300), ProviderConfigError, None, 1),
    (_top(301), ProviderConfigError, None, 1),
    (_top(302), ProviderConfigError, None, 1),
    (_top(299), ProviderConfigError, None, 1),
    (_top(206), NotSentError, 3600.0, 1),
    (_top(220), NotSentError, None, 3),
    (_top(500), UnknownOutcomeError, None, 1),
    (_per_number(202), InvalidAddressError, None, 1),
    (_per_number(207), RejectedError, None, 1),
    (_per_number(209), RejectedError, None, 1),
    (_per_number(230), NotSentError, 3600.0, 1),
    (_per_number(231), NotSentError, 60.0, 1),
    (_per_number(299), RejectedError, None, 1),
    (_per_number(500), UnknownOutcomeError, None, 1),
    ({"status": "OK", "status_code": 100, "sms": {}}, UnknownOutcomeError, None, 1),
    ({"status": "OK", "status_code": 100, "sms": {DIGITS: {"status_code": 100}}},
     UnknownOutcomeError, None, 1),
    ({"status": "OK"}, UnknownOutcomeError, None, 1),
    (b"100\n000000-10000001", UnknownOutcomeError, None, 1),
]  # fmt: skip


@pytest.mark.parametrize(("body", "error", "retry_after", "calls"), ERRORS)
def test_status_codes(
    make: Callable[..., Any],
    waits: list[float],
    body: Any,
    error: type[ProviderError],
    retry_after: float | None,
    calls: int,
) -> None:
    """HTTP is 200 every time: top-level, then per-number ``status_code`` pick the class."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    provider, seen = make(httpx.Response(200, content=content))
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)
    assert type(caught.value) is error
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert DIGITS not in str(caught.value)
    assert len(seen) == calls
    assert len(waits) == calls - 1


def test_status_code_is_kept(make: Callable[..., Any]) -> None:
    """The SMS.ru code travels on the exception for history and stats."""
    provider, _ = make(httpx.Response(200, json=_per_number(202)))
    with pytest.raises(InvalidAddressError) as caught:
        provider.send(MESSAGE)
    assert caught.value.code == "202"


@pytest.mark.parametrize(
    ("status", "error", "calls"),
    [
        (502, UnknownOutcomeError, 1),
        (500, UnknownOutcomeError, 1),
        (503, NotSentError, 3),  # the one rule: 503 was not processed
        (404, ProviderConfigError, 1),
        (401, ProviderConfigError, 1),
        (429, NotSentError, 3),
    ],
)
def test_http_errors_from_in_front_of_smsru(
    make: Callable[..., Any],
    waits: list[float],
    status: int,
    error: type[ProviderError],
    calls: int,
) -> None:
    """A non-200 came from a proxy or a wrong URL: 503 and 429 not sent, other 5xx unknown,
    404 config."""
    provider, seen = make(httpx.Response(status, content=b"<html></html>"))
    with pytest.raises(error):
        provider.send(MESSAGE)
    assert len(seen) == calls


@pytest.mark.parametrize(
    ("exc", "error", "calls"),
    [
        (httpx.ReadTimeout("slow"), UnknownOutcomeError, 1),
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
    """A read timeout may have sent (and billed) the SMS; a refused connect provably did not."""
    provider, seen = make(exc)
    with pytest.raises(error):
        provider.send(MESSAGE)
    assert len(seen) == calls


def test_is_a_provider_and_a_webhook_receiver(make: Callable[..., Any]) -> None:
    """The dispatcher finds ``send`` and ``handle`` through the contract's protocols."""
    provider, _ = make()
    assert (provider.name, provider.channel) == ("smsru", Channel.SMS)
    assert SmsRuProvider.config_model is SmsRuConfig
    assert isinstance(provider, Provider)
    assert isinstance(provider, WebhookReceiver)


# --- the status callback ------------------------------------------------------------------


def _incoming(
    form: dict[str, str] | bytes, secret: str | None = SECRET, url: str = HOOK
) -> WebhookRequest:
    """A callback as the dispatcher builds it (form parsed from the raw body)."""
    query = {"secret": secret} if secret is not None else {}
    body = form if isinstance(form, bytes) else urlencode(form).encode()
    return WebhookRequest(
        method="POST",
        url=url + (f"?secret={secret}" if secret is not None else ""),
        headers={"content-type": "application/x-www-form-urlencoded"},
        query=query,
        body=body,
        form=parse_qs(body.decode(), keep_blank_values=True),
    )


def test_callback_records_become_receipts(make: Callable[..., Any]) -> None:
    """Each ``sms_status`` record is one receipt, in ``data[N]`` order; the answer is ``100``."""
    provider, _ = make()
    records = [
        ("000000-1", 103, STAMP),
        ("000000-2", 104, STAMP + 1),
        ("000000-3", 150, STAMP + 2),
        ("000000-4", 106, STAMP + 3),
        ("000000-5", 102, STAMP + 4),
    ]
    reply = provider.handle(_incoming(callback_form(records)))
    assert (reply.status_code, reply.body) == (200, "100")
    summary = [
        (e.provider_message_id, e.kind, e.error_code, e.invalid_address, e.event_id)
        for e in reply.events
    ]
    assert summary == [
        ("000000-1", ReceiptKind.DELIVERED, None, False, "000000-1:103"),
        ("000000-2", ReceiptKind.FAILED, "104", False, "000000-2:104"),
        ("000000-3", ReceiptKind.FAILED, "150", True, "000000-3:150"),
        ("000000-4", ReceiptKind.FAILED, "106", False, "000000-4:106"),
        ("000000-5", ReceiptKind.SENT, None, False, "000000-5:102"),
    ]
    assert reply.events[0].occurred_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert all(e.provider == "smsru" and e.reference is None for e in reply.events)


def test_records_are_taken_in_numeric_index_order(make: Callable[..., Any]) -> None:
    """``data[10]`` comes after ``data[2]``, not before it as a string sort would put it."""
    provider, _ = make()
    form = {f"data[{i}]": f"sms_status\n000000-{i}\n103\n{STAMP}" for i in (10, 2, 0)}
    reply = provider.handle(_incoming(form))
    assert [e.provider_message_id for e in reply.events] == ["000000-0", "000000-2", "000000-10"]


@pytest.mark.parametrize(
    "record",
    [
        "sms_status\n000000-1\n100\n1740830400",  # still queued
        "sms_status\n000000-1\n101\n1740830400",  # passing to the operator
        "sms_status\n000000-1\n110\n1740830400",  # read (Viber-type messages only)
        "sms_status\n000000-1\nabc",
        "sms_status\n000000-1",
        "callback_test\n1740830400",
        "",
    ],
)
def test_other_records_are_acknowledged_and_ignored(make: Callable[..., Any], record: str) -> None:
    """Intermediate codes, other record types and malformed records: ``100``, no receipt."""
    provider, _ = make()
    reply = provider.handle(_incoming({"data[0]": record}))
    assert (reply.status_code, reply.body, reply.events) == (200, "100", ())


def test_crlf_records_and_missing_time_parse(make: Callable[..., Any]) -> None:
    """Records with CRLF line ends or without the time line still parse."""
    provider, _ = make()
    form = {"data[0]": "sms_status\r\n000000-1\r\n103\r\n", "data[1]": "sms_status\n000000-2\n108"}
    events = provider.handle(_incoming(form)).events
    assert [(e.provider_message_id, e.kind, e.occurred_at) for e in events] == [
        ("000000-1", ReceiptKind.DELIVERED, None),
        ("000000-2", ReceiptKind.FAILED, None),
    ]


def test_repeated_callback_has_the_same_event_id(make: Callable[..., Any]) -> None:
    """SMS.ru re-sends unacknowledged callbacks; a repeat shares the dispatcher's dedup key."""
    provider, _ = make()
    _, body = callback_request([("000000-1", 103, STAMP)])
    first = provider.handle(_incoming(body)).events
    again = provider.handle(_incoming(body)).events
    assert first == again


@pytest.mark.parametrize(
    ("secret", "configured"),
    [
        pytest.param(None, SECRET, id="missing"),
        pytest.param("wrong-secret", SECRET, id="wrong"),
        pytest.param("", SECRET, id="empty"),
        pytest.param(SECRET + "x", SECRET, id="longer"),
        pytest.param(SECRET, None, id="nothing-configured"),
    ],
)
def test_bad_secret_is_refused(
    make: Callable[..., Any], secret: str | None, configured: str | None
) -> None:
    """Without the configured secret in the URL the callback is refused with 403."""
    provider, _ = make(callback_secret=configured)
    with pytest.raises(WebhookSignatureError) as caught:
        provider.handle(_incoming(callback_form([("000000-1", 103, STAMP)]), secret=secret))
    assert caught.value.status_code == 403


# --- against the simulator, over real HTTP -------------------------------------------------


@pytest.fixture(name="sim")
def _sim() -> Iterator[tuple[Any, str, Callable[..., SmsRuProvider]]]:
    app = create_app(cost=0.5)
    with serve(app) as base_url, httpx.Client() as client:

        def provider(**overrides: Any) -> SmsRuProvider:
            return SmsRuProvider(_config(base_url=base_url, **overrides), client)

        yield app, base_url, provider


def test_sim_send_is_accepted(sim: tuple[Any, str, Callable[..., SmsRuProvider]]) -> None:
    """Over HTTP the simulator takes digits only, returns the id and cost, and tracks status."""
    app, base_url, provider = sim
    result = provider().send(MESSAGE)
    [sent] = app.sent
    assert (result.provider_message_id, result.cost) == (sent["sms_id"], 0.5)
    assert (sent["to"], sent["from"], sent["json"]) == (DIGITS, "Shop", "1")
    with httpx.Client() as control:
        params = {"api_id": API_ID, "sms_id": result.provider_message_id, "json": "1"}
        status = control.get(f"{base_url}/sms/status", params=params).json()
    assert status["sms"][result.provider_message_id]["status_code"] == 100


@pytest.mark.parametrize(
    ("overrides", "recipient", "error"),
    [
        ({"api_id": "wrong"}, PHONE, ProviderConfigError),
        ({}, "+79000000201", ProviderConfigError),
        ({}, "+79000000202", InvalidAddressError),
        ({}, "+79000000209", RejectedError),
        ({}, "+79000000500", UnknownOutcomeError),
    ],
)
def test_sim_errors(
    sim: tuple[Any, str, Callable[..., SmsRuProvider]],
    overrides: dict[str, str],
    recipient: str,
    error: type[ProviderError],
) -> None:
    """A wrong api_id, no funds, a bad number, the stop-list and a server error, over HTTP."""
    app, _, provider = sim
    message = Message(recipient=recipient, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(error):
        provider(**overrides).send(message)
    assert app.sent == []
    assert len(app.requests) == 1


def test_sim_unavailable_is_retried_quickly(
    sim: tuple[Any, str, Callable[..., SmsRuProvider]], waits: list[float]
) -> None:
    """220 "temporarily unavailable" is not sent: a few quick retries, then the error."""
    app, _, provider = sim
    message = Message(recipient="+79000000220", text="hi", reference="r", idempotency_key="k")
    with pytest.raises(NotSentError):
        provider().send(message)
    assert len(app.requests) == 3


def test_sim_hang_is_unknown_outcome(sim: tuple[Any, str, Callable[..., SmsRuProvider]]) -> None:
    """No answer within the read timeout: the SMS may be billed, so it is not resent."""
    app, _, provider = sim
    message = Message(recipient="+79000000000", text="hi", reference="r", idempotency_key="k")
    with pytest.raises(UnknownOutcomeError):
        provider(timeout=0.2).send(message)
    assert len(app.requests) == 1


def test_sim_callback_reaches_the_webhook(
    sim: tuple[Any, str, Callable[..., SmsRuProvider]],
) -> None:
    """The URL registered with ``/callback/add`` gets ``data[]`` records; we answer ``100``."""
    _, base_url, provider = sim
    smsru = provider()
    receiver, received = create_receiver(smsru)
    with serve(receiver) as hook_url, httpx.Client() as control:
        url = f"{hook_url}/webhook?secret={SECRET}"
        added = control.post(f"{base_url}/callback/add", data={"api_id": API_ID, "url": url})
        assert added.json()["callback"] == [url]
        first = smsru.send(MESSAGE).provider_message_id
        second = smsru.send(MESSAGE).provider_message_id
        spec = {
            "records": [{"message_id": first, "status": 103}, {"message_id": second, "status": 150}]
        }
        answer = control.post(f"{base_url}/_sim/callback", json=spec).json()
        params = {"api_id": API_ID, "sms_id": f"{first},{second}", "json": "1"}
        status = control.get(f"{base_url}/sms/status", params=params).json()
    assert answer == {"status_code": 200, "body": "100", "acknowledged": True}
    assert [(e.provider_message_id, e.kind, e.invalid_address) for e in received.events] == [
        (first, ReceiptKind.DELIVERED, False),
        (second, ReceiptKind.FAILED, True),
    ]
    assert [status["sms"][i]["status_code"] for i in (first, second)] == [103, 150]


def test_sim_callback_without_secret_is_refused(
    sim: tuple[Any, str, Callable[..., SmsRuProvider]],
) -> None:
    """A callback URL without our secret is answered 403: not acknowledged, nothing recorded."""
    _, base_url, provider = sim
    smsru = provider()
    receiver, received = create_receiver(smsru)
    with serve(receiver) as hook_url, httpx.Client() as control:
        sms_id = smsru.send(MESSAGE).provider_message_id
        spec = {"url": f"{hook_url}/webhook", "message_id": sms_id, "status": 103}
        answer = control.post(f"{base_url}/_sim/callback", json=spec).json()
    assert (answer["status_code"], answer["acknowledged"]) == (403, False)
    assert (received.events, received.refused) == ([], [403])
