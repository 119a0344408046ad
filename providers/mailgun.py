"""Mailgun: ``POST /v3/{domain}/messages`` and the signed events webhook.

Sends carry ``v:cascade_reference`` so that events can be matched to the attempt
before the provider message id is stored. Events are signed inside the body:
``signature = hex(HMAC-SHA256(signing key, timestamp + token))``. A timestamp
further than ``max_age`` from the time we received the callback is refused, so
a captured callback cannot be replayed later. The signature does not cover
``event-data``: within that window a captured token could carry any payload, so
every reply returns the token as a :class:`~providers.base.Nonce` and the
dispatcher refuses a token it has seen with another body (as Mailgun advises).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from providers._messaging import json_object
from providers.base import (
    Channel,
    Message,
    Nonce,
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
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.http import (
    DEFAULT_TIMEOUT,
    map_http_errors,
    quick_retry,
    raise_for_status_class,
    retry_after_seconds,
)

#: Events that move an attempt forward; ``failed`` is handled separately.
_KINDS = {
    "delivered": ReceiptKind.DELIVERED,
    "opened": ReceiptKind.READ,
    "clicked": ReceiptKind.READ,  # a click implies the message was read
}
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class MailgunConfig(ProviderConfig):
    """API key, sending domain and the key that signs webhooks."""

    base_url: str = "https://api.mailgun.net"  #: EU: https://api.eu.mailgun.net
    api_key: SecretStr
    domain: str
    sender: str  #: ``From``, e.g. ``Shop <noreply@mg.shop.example>``
    webhook_signing_key: SecretStr | None = None
    max_age: timedelta = timedelta(minutes=15)  #: oldest callback timestamp accepted


class MailgunProvider:
    """Sends e-mail through Mailgun and reads its delivery/open events."""

    name: ClassVar[str] = "mailgun"
    channel: ClassVar[Channel] = Channel.EMAIL
    config_model: ClassVar[type[ProviderConfig]] = MailgunConfig

    def __init__(self, config: MailgunConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._url = f"{config.base_url.rstrip('/')}/v3/{config.domain}/messages"
        self._auth = httpx.BasicAuth("api", config.api_key.get_secret_value())
        self._timeout = httpx.Timeout(
            config.timeout, connect=min(DEFAULT_TIMEOUT.connect or 3.0, config.timeout)
        )

    def send(self, message: Message) -> SendResult:
        form = {
            "from": self.config.sender,
            "to": message.recipient,
            "subject": message.title or "",
            "text": message.text,
            "o:tracking-opens": "yes",
            "v:cascade_reference": message.reference,
        }
        if message.html:
            form["html"] = message.html
        return self._send(form)

    @quick_retry()
    def _send(self, form: dict[str, str]) -> SendResult:
        with map_http_errors(self.name):
            response = self._client.post(
                self._url, data=form, auth=self._auth, timeout=self._timeout
            )
        _raise_for_error(response)
        message_id = _json(response.content).get("id")
        if not isinstance(message_id, str) or not message_id.strip("<>"):
            raise UnknownOutcomeError("mailgun: 2xx without a message id", code="no_id")
        return SendResult(provider_message_id=message_id.strip("<>"))

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Verify one event callback and turn it into at most one receipt event."""
        body = json_object(request.body)
        if body is None:
            return WebhookReply(status_code=400, body="not a JSON object")
        nonce = self._verify(body.get("signature"), request.received_at or datetime.now(UTC))
        data = body.get("event-data")
        if not isinstance(data, dict):
            return WebhookReply(status_code=400, body="event-data is not an object")
        event = _event(data)
        fingerprinted = replace(nonce, fingerprint=hashlib.sha256(request.body).hexdigest())
        return WebhookReply(body="ok", events=(event,) if event else (), nonce=fingerprinted)

    def _verify(self, signature: object, now: datetime) -> Nonce:
        """Check the signature and its age; return its token, valid until the age runs out."""
        key = self.config.webhook_signing_key
        if key is None:
            raise WebhookSignatureError("mailgun: no webhook signing key configured")
        if not isinstance(signature, dict):
            raise WebhookSignatureError("mailgun: signature missing")
        timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
        if not all(isinstance(v, str) and v for v in (timestamp, token, given)):
            raise WebhookSignatureError("mailgun: signature incomplete")
        expected = hmac.new(
            key.get_secret_value().encode(), f"{timestamp}{token}".encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, str(given)):
            raise WebhookSignatureError("mailgun: signature mismatch")
        try:
            signed_at = datetime.fromtimestamp(int(str(timestamp)), tz=UTC)
        except (ValueError, OverflowError, OSError):
            raise WebhookSignatureError("mailgun: bad timestamp", status_code=403) from None
        if abs(now - signed_at) > self.config.max_age:
            raise WebhookSignatureError("mailgun: stale signature timestamp", status_code=403)
        return Nonce(str(token), expires_at=signed_at + self.config.max_age, fingerprint="")


def _raise_for_error(response: httpx.Response) -> None:
    status = response.status_code
    if status == 400:
        text = str(_json(response.content).get("message") or "").lower()
        if "'to'" in text or "to parameter" in text:
            raise InvalidAddressError("mailgun: HTTP 400 invalid recipient", code="400")
        raise ProviderConfigError("mailgun: HTTP 400", code="400")
    if status in (401, 402, 403, 404, 413):
        raise ProviderConfigError(f"mailgun: HTTP {status}", code=str(status))
    if status == 429:
        raise NotSentError(
            "mailgun: HTTP 429", code="429", retry_after=retry_after_seconds(response)
        )
    raise_for_status_class("mailgun", response)


def _event(data: dict[str, Any]) -> ReceiptEvent | None:
    name = data.get("event")
    if name == "failed":
        if data.get("severity") != "permanent":
            return None  # temporary: Mailgun keeps retrying on its own
        kind = ReceiptKind.FAILED
    elif isinstance(name, str) and name in _KINDS:
        kind = _KINDS[name]
    else:
        return None
    headers = _dict(_dict(data.get("message")).get("headers"))
    variables = _dict(data.get("user-variables"))
    status = _dict(data.get("delivery-status"))
    message_id = headers.get("message-id")
    reference = variables.get("cascade_reference")
    failed = kind is ReceiptKind.FAILED
    return ReceiptEvent(
        provider="mailgun",
        event_id=str(data.get("id") or f"{message_id}:{name}:{data.get('timestamp')}"),
        kind=kind,
        provider_message_id=str(message_id).strip("<>") if message_id else None,
        reference=str(reference) if reference else None,
        recipient=str(data["recipient"]) if data.get("recipient") else None,
        occurred_at=_time(data.get("timestamp")),
        error_code=str(status.get("code") or data.get("reason") or "failed") if failed else None,
        invalid_address=failed and _bad_mailbox(data, status),
    )


def _bad_mailbox(data: dict[str, Any], status: dict[str, Any]) -> bool:
    """A permanent failure that says the address does not exist (550 / 5.1.x)."""
    if data.get("reason") == "suppress-bounce":
        return True  # Mailgun refused to try: this address bounced before
    text = f"{status.get('enhanced-code') or ''} {status.get('message') or ''}"
    enhanced = _ENHANCED.search(text)
    if enhanced:
        return enhanced.group(1) == "5" and enhanced.group(2) == "1"
    return str(status.get("code")) in ("550", "551", "553")


def _time(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json(content: bytes) -> dict[str, Any]:
    return json_object(content) or {}
