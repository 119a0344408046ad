"""SMS.ru: ``POST /sms/send`` and the ``api callback`` status records.

SMS.ru answers HTTP 200 whatever happened; the JSON ``status_code`` decides,
first at the top level (the request), then per number (PROVIDERS.md §9b). The
number is sent as digits only (no ``+``); the message id is
``sms[<number>].sms_id``. Every SMS is billed and there is no idempotency key,
so only codes that say the message was refused are :class:`NotSentError`; a
server error (``status_code`` 500), an HTTP 5xx other than 503 or a read timeout is
:class:`UnknownOutcomeError`. An HTTP 503 (from whatever stands in front of SMS.ru)
is "not sent", as for every provider (:func:`providers.http.server_error`).

Status callbacks are form POSTs with fields ``data[0]``, ``data[1]``, …, each a
record of lines: ``sms_status``, the sms id, the status code and (not confirmed
from a primary source) a unix time. The handler must answer ``100`` or SMS.ru
sends them again. SMS.ru signs nothing, so the callback URL registered with
SMS.ru carries ``?secret=<callback_secret>``, compared in constant time.

Codes 208, 210, 211, 213 and 233 are from memory of sms.ru/api/send **[verify]**;
the retry hints on limit codes are ours, not SMS.ru's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from providers._messaging import from_unix, json_object, request_timeout, secret_matches
from providers.base import (
    Channel,
    Message,
    ProviderConfig,
    ReceiptEvent,
    ReceiptKind,
    SendResult,
    WebhookReply,
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
from providers.http import map_http_errors, quick_retry, raise_for_status_class

OK = 100
_CONFIG = ProviderConfigError
#: ``status_code`` -> error class. 202/207/209 concern one number; 2xx/3xx others our account.
STATUS_ERRORS: dict[int, type[ProviderError]] = {
    200: _CONFIG,  # wrong api_id
    201: _CONFIG,  # insufficient funds
    202: InvalidAddressError,  # invalid recipient number
    203: _CONFIG,  # no message text
    204: _CONFIG,  # sender name not approved
    205: _CONFIG,  # message too long
    206: NotSentError,  # daily account limit reached
    207: RejectedError,  # no route to this number
    208: _CONFIG,  # bad ``time`` parameter
    209: RejectedError,  # number is in our stop-list
    210: _CONFIG,  # GET used where POST is required
    211: _CONFIG,  # no such method
    212: _CONFIG,  # text not UTF-8
    213: _CONFIG,  # more than 100 numbers
    220: NotSentError,  # service temporarily unavailable
    230: NotSentError,  # daily limit of messages to this number
    231: NotSentError,  # identical messages to this number this minute
    232: NotSentError,  # identical messages to this number today
    233: NotSentError,  # too many repeated code messages to this number
    300: _CONFIG,  # wrong token
    301: _CONFIG,  # wrong api_id or login/password
    302: _CONFIG,  # account not confirmed
    500: UnknownOutcomeError,  # server error: the message may have gone out
}
#: Seconds before a limit can lift (our estimate): keeps quick_retry from hammering.
RETRY_AFTER: dict[int, float] = {206: 3600.0, 230: 3600.0, 231: 60.0, 232: 3600.0, 233: 600.0}
#: Delivery status codes of a callback -> receipt kind (PROVIDERS.md §9b).
DELIVERY: dict[int, ReceiptKind] = {
    102: ReceiptKind.SENT,  # handed to the operator, in transit
    103: ReceiptKind.DELIVERED,
    104: ReceiptKind.FAILED,  # TTL expired
    105: ReceiptKind.FAILED,  # deleted by the operator
    106: ReceiptKind.FAILED,  # handset failure: the number itself is fine
    107: ReceiptKind.FAILED,  # unknown reason
    108: ReceiptKind.FAILED,  # rejected
    150: ReceiptKind.FAILED,  # no route to this number
}
#: Failures that say the number cannot take SMS (not a handset or operator problem).
INVALID_ADDRESS = frozenset({150})
_DATA_FIELD = re.compile(r"^data\[(\d*)\]$")


class SmsRuConfig(ProviderConfig):
    """API key, approved sender name, and the secret in our callback URL."""

    base_url: str = "https://sms.ru"
    api_id: SecretStr
    sender: str | None = None  #: ``from``: a sender name approved by SMS.ru
    callback_secret: SecretStr | None = None  #: must equal the callback's ``secret`` parameter
    test: bool = False  #: ``test=1``: SMS.ru validates and answers but sends (and bills) nothing


class SmsRuProvider:
    """Sends SMS through SMS.ru and reads its status callbacks."""

    name: ClassVar[str] = "smsru"
    channel: ClassVar[Channel] = Channel.SMS
    config_model: ClassVar[type[ProviderConfig]] = SmsRuConfig

    def __init__(self, config: SmsRuConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._url = f"{config.base_url.rstrip('/')}/sms/send"
        self._timeout = request_timeout(config.timeout)

    def send(self, message: Message) -> SendResult:
        """Send one SMS; the top-level and the per-number ``status_code`` decide."""
        phone = "".join(ch for ch in message.recipient if ch.isdigit())
        form = {
            "api_id": self.config.api_id.get_secret_value(),
            "to": phone,
            "msg": message.text,
            "json": "1",
        }
        if self.config.sender:
            form["from"] = self.config.sender
        if self.config.test:
            form["test"] = "1"
        return self._post(form, phone)

    @quick_retry()
    def _post(self, form: dict[str, str], phone: str) -> SendResult:
        with map_http_errors(self.name):
            response = self._client.post(self._url, data=form, timeout=self._timeout)
        _raise_for_http(response)
        answer = json_object(response.content)
        if answer is None:
            raise UnknownOutcomeError("smsru: unreadable answer", code="unreadable")
        _raise_for_status(answer.get("status_code"), top_level=True)
        numbers = answer.get("sms")
        entry = _entry_for(numbers if isinstance(numbers, dict) else {}, phone)
        if entry is None:
            raise UnknownOutcomeError("smsru: accepted without a result for the number")
        _raise_for_status(entry.get("status_code"), top_level=False)
        sms_id = entry.get("sms_id")
        if not isinstance(sms_id, str) or not sms_id:
            raise UnknownOutcomeError("smsru: accepted without an sms_id", code="no_id")
        return SendResult(provider_message_id=sms_id, cost=_cost(entry.get("cost")))

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Check the URL's secret, then turn every ``sms_status`` record into a receipt."""
        if not secret_matches(request.query.get("secret"), self.config.callback_secret):
            raise WebhookSignatureError("smsru: missing or wrong callback secret", status_code=403)
        events = [
            event for record in _records(request.form) if (event := self._event(record)) is not None
        ]
        return WebhookReply(body="100", events=tuple(events))

    def _event(self, record: str) -> ReceiptEvent | None:
        lines = [line.strip() for line in record.replace("\r", "").split("\n")]
        if len(lines) < 3 or lines[0] != "sms_status" or not lines[1]:
            return None  # other record types, or a malformed one: acknowledge, ignore
        sms_id, raw_code = lines[1], lines[2]
        code = int(raw_code) if raw_code.lstrip("-").isdigit() else None
        kind = DELIVERY.get(code) if code is not None else None
        if kind is None:
            return None  # queued (100), passing to the operator (101), read (110), unknown
        failed = kind is ReceiptKind.FAILED
        return ReceiptEvent(
            provider=self.name,
            event_id=f"{sms_id}:{code}",
            kind=kind,
            provider_message_id=sms_id,
            occurred_at=from_unix(lines[3]) if len(lines) > 3 and lines[3] else None,
            error_code=str(code) if failed else None,
            invalid_address=code in INVALID_ADDRESS,
        )


def _raise_for_http(response: httpx.Response) -> None:
    """SMS.ru itself always answers 200: anything else came from a proxy or a wrong URL.

    5xx follow the one rule for every provider: 503 not sent, the others unknown.
    """
    status = response.status_code
    if status == 200:
        return
    if status in (400, 404, 405) or status < 400:
        raise ProviderConfigError(f"smsru: HTTP {status}", code=str(status))
    raise_for_status_class("smsru", response)


def _raise_for_status(value: object, *, top_level: bool) -> None:
    if value == OK and not isinstance(value, bool):
        return
    code = value if isinstance(value, int) and not isinstance(value, bool) else None
    label = str(code) if code is not None else "missing"
    detail = f"smsru: status_code {label}" + ("" if top_level else " for the number")
    # Unknown codes: a refused request is about our account; a refused number is permanent.
    error = STATUS_ERRORS.get(code or 0, ProviderConfigError if top_level else RejectedError)
    if code is None:
        error = UnknownOutcomeError
    if error is NotSentError:
        raise NotSentError(detail, code=label, retry_after=RETRY_AFTER.get(code or 0))
    raise error(detail, code=label)


def _entry_for(numbers: dict[str, Any], phone: str) -> dict[str, Any] | None:
    """The per-number result: by our digits, or the only one (SMS.ru may normalise 8… to 7…)."""
    entry = numbers.get(phone)
    if entry is None and len(numbers) == 1:
        entry = next(iter(numbers.values()))
    return entry if isinstance(entry, dict) else None


def _cost(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _records(form: Mapping[str, Sequence[str]]) -> list[str]:
    """``data[0]``, ``data[1]``, … (or PHP-style ``data[]``) in index order."""
    indexed: list[tuple[int, int, str]] = []
    for name, values in form.items():
        match = _DATA_FIELD.match(name)
        if match:
            index = int(match.group(1)) if match.group(1) else -1
            indexed.extend((index, n, value) for n, value in enumerate(values))
    return [value for _, _, value in sorted(indexed)]
