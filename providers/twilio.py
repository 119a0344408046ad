"""Twilio Programmable Messaging: ``Messages.json`` and signed StatusCallbacks.

A send is a form POST with HTTP Basic ``AccountSid:AuthToken`` (PROVIDERS.md §9a).
Every SMS is billed and Twilio has no idempotency key, so only an answer that
proves the message was refused (a 4xx, 429 "too many requests", or 503 "service
unavailable", which by HTTP's definition means the request was not handled: the one
rule of :func:`providers.http.server_error`) is anything but
:class:`UnknownOutcomeError`: another 5xx or a read timeout may have queued it (Twilio
error 20500: "retrying may deliver multiple messages").

``StatusCallback`` is ``status_callback_url`` plus ``ref=<attempt id>``, so a
callback can be matched to its attempt before the ``sid`` is stored. Callbacks
are verified like twilio-python's ``RequestValidator``: ``X-Twilio-Signature`` is
``base64(HMAC-SHA1(auth token, URL + name/value pairs in sorted order))``, and
the URL is tried with and without its default port because Twilio itself is not
consistent about it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from pydantic import SecretStr, model_validator

from providers._messaging import json_object, request_timeout
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
from providers.http import map_http_errors, quick_retry, retry_after_seconds, server_error

SIGNATURE_HEADER = "x-twilio-signature"

#: Error ``code`` of a 4xx answer -> error class (PROVIDERS.md §9a); other 400s are rejections.
CODE_ERRORS: dict[int, type[ProviderError]] = {
    21211: InvalidAddressError,  # invalid 'To' number
    21614: InvalidAddressError,  # 'To' is not a mobile number
    21610: RejectedError,  # the recipient replied STOP
    21408: ProviderConfigError,  # region not enabled
    21612: ProviderConfigError,  # cannot route to this number from our sender
    21606: ProviderConfigError,  # 'From' cannot send to this destination
    20003: ProviderConfigError,  # authentication failed
    20404: ProviderConfigError,  # no such account (or resource)
    20429: NotSentError,  # too many concurrent requests
}
#: Callback ``ErrorCode`` values meaning the number itself cannot take SMS.
INVALID_ADDRESS_CODES = frozenset({"21211", "21614", "30005", "30006"})
_KINDS = {
    "sent": ReceiptKind.SENT,
    "delivered": ReceiptKind.DELIVERED,
    "undelivered": ReceiptKind.FAILED,
    "failed": ReceiptKind.FAILED,
}


class TwilioConfig(ProviderConfig):
    """Account credentials, the sender, and where Twilio should report status."""

    base_url: str = "https://api.twilio.com"
    account_sid: str
    auth_token: SecretStr  #: also the key of the callback signatures
    sender: str | None = None  #: ``From``: an E.164 number or alphanumeric sender id
    messaging_service_sid: str | None = None  #: ``MessagingServiceSid``, used instead of From
    status_callback_url: str | None = None  #: our public webhook URL for this provider

    @model_validator(mode="after")
    def _has_a_sender(self) -> TwilioConfig:
        if not self.sender and not self.messaging_service_sid:
            raise ValueError("twilio needs sender or messaging_service_sid")
        return self


class TwilioProvider:
    """Sends SMS through Twilio and reads its status callbacks."""

    name: ClassVar[str] = "twilio"
    channel: ClassVar[Channel] = Channel.SMS
    config_model: ClassVar[type[ProviderConfig]] = TwilioConfig

    def __init__(self, config: TwilioConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._url = (
            f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        )
        self._auth = httpx.BasicAuth(config.account_sid, config.auth_token.get_secret_value())
        self._timeout = request_timeout(config.timeout)

    def send(self, message: Message) -> SendResult:
        """Create one message; the answer's ``sid`` is the provider message id."""
        form = {"To": message.recipient}
        if self.config.messaging_service_sid:
            form["MessagingServiceSid"] = self.config.messaging_service_sid
        else:
            form["From"] = str(self.config.sender)
        form["Body"] = message.text
        if self.config.status_callback_url:
            form["StatusCallback"] = _with_ref(self.config.status_callback_url, message.reference)
        return self._post(form)

    @quick_retry()
    def _post(self, form: dict[str, str]) -> SendResult:
        with map_http_errors(self.name):
            response = self._client.post(
                self._url, data=form, auth=self._auth, timeout=self._timeout
            )
        answer = json_object(response.content)
        if not response.is_success:
            raise _error(response, answer)
        sid = answer.get("sid") if answer else None
        if not isinstance(sid, str) or not sid:
            raise UnknownOutcomeError(
                f"twilio: HTTP {response.status_code} without a sid", code="no_id"
            )
        return SendResult(provider_message_id=sid, cost=_price(answer))

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Verify ``X-Twilio-Signature`` and turn one StatusCallback into a receipt."""
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            raise WebhookSignatureError("twilio: missing signature", status_code=401)
        token = self.config.auth_token.get_secret_value()
        if not _signature_matches(token, request.url, request.form, given):
            raise WebhookSignatureError("twilio: wrong signature", status_code=403)
        form = request.form
        sid = _first(form, "MessageSid") or _first(form, "SmsSid")
        status = _first(form, "MessageStatus") or _first(form, "SmsStatus")
        kind = _KINDS.get(status or "")
        if sid is None or status is None or kind is None:
            return WebhookReply()  # queued/sending/accepted, or not a status callback
        failed = kind is ReceiptKind.FAILED
        error_code = _first(form, "ErrorCode") if failed else None
        receipt = ReceiptEvent(
            provider=self.name,
            event_id=f"{sid}:{status}",
            kind=kind,
            provider_message_id=sid,
            reference=_first(parse_qs(urlsplit(request.url).query), "ref"),
            recipient=_first(form, "To"),
            error_code=(error_code or status) if failed else None,
            invalid_address=error_code in INVALID_ADDRESS_CODES,
        )
        return WebhookReply(events=(receipt,))


def signature(auth_token: str, url: str, params: Mapping[str, Sequence[str]]) -> str:
    """``X-Twilio-Signature`` of a form POST to ``url``, as Twilio computes it."""
    payload = url + "".join(
        name + value for name in sorted(params) for value in sorted(set(params[name]))
    )
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> tuple[str, ...]:
    """``url`` as given, with its default port added, and with its port removed."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return (url,)
    netloc = parts.netloc
    if port is None:
        default = 443 if parts.scheme == "https" else 80
        other = parts._replace(netloc=f"{netloc}:{default}").geturl()
    else:
        other = parts._replace(netloc=netloc[: netloc.rfind(":")]).geturl()
    return (url, other)


def _signature_matches(
    token: str, url: str, params: Mapping[str, Sequence[str]], given: str
) -> bool:
    matches = [
        hmac.compare_digest(signature(token, variant, params).encode(), given.strip().encode())
        for variant in url_variants(url)
    ]
    return any(matches)


def _with_ref(url: str, reference: str) -> str:
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}{urlencode({'ref': reference})}"


def _error(response: httpx.Response, answer: dict[str, object] | None) -> ProviderError:
    """The error for a non-2xx answer; the body's ``message`` may quote the number, so it
    never goes into the exception."""
    status = response.status_code
    raw = answer.get("code") if answer else None
    code = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    label = str(code or status)
    detail = f"twilio: HTTP {status} code {label}"
    if status == 429 or code in (20429, 20503):
        # Refused before processing: safe to retry or fail over.
        return NotSentError(detail, code=label, retry_after=retry_after_seconds(response))
    if (error := server_error("twilio", response, code=label)) is not None:
        return error  # 503 not sent; another 5xx may have been queued and billed
    if code in CODE_ERRORS:
        return CODE_ERRORS[code](detail, code=label)
    if status in (401, 403, 404) or status < 400:
        return ProviderConfigError(detail, code=label)  # credentials, account, or base_url
    return RejectedError(detail, code=label)


def _price(answer: dict[str, object] | None) -> float | None:
    """Twilio reports ``price`` as a negative decimal string once it is known."""
    value = answer.get("price") if answer else None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return abs(float(value))
    except ValueError:
        return None


def _first(values: Mapping[str, Sequence[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found and found[0] else None
