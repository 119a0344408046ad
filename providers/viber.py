"""Viber REST Bot API: ``/pa/send_message``, and ``delivered``/``seen``/``failed`` callbacks.

Viber answers HTTP 200 for almost everything; the body's ``status`` says what
happened (PROVIDERS.md §6). The message id is ``message_token``, a 64-bit integer:
it is kept exact and handed on as a string. Callbacks are signed with
``X-Viber-Content-Signature: hex(HMAC-SHA256(bot auth token, raw body))``, the
``webhook`` probe sent by ``set_webhook`` included.

With ``ack_button`` set, each message carries a keyboard with one ``reply`` button
whose ``ActionBody`` is ``ack:<reference>:<mac>`` (:class:`~providers._messaging.AckSigner`);
pressing it makes Viber POST a ``message`` callback from the user whose text is that
body, which becomes a READ receipt for the attempt. It is off by default: Viber
already reports ``seen``, and a keyboard changes every message the customer gets.
Only an inbound text carrying a valid MAC is read as a press; no other text is kept.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from providers._messaging import (
    AckSigner,
    as_id,
    from_unix,
    hmac_sha256_hex,
    json_object,
    request_timeout,
)
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

SIGNATURE_HEADER = "x-viber-content-signature"

#: Body ``status`` codes (PROVIDERS.md §6) -> error class and a safe description.
STATUS_ERRORS: dict[int, tuple[type[ProviderError], str]] = {
    1: (ProviderConfigError, "invalidUrl"),
    2: (ProviderConfigError, "invalidAuthToken"),
    3: (ProviderConfigError, "badData"),
    4: (ProviderConfigError, "missingData"),
    5: (InvalidAddressError, "receiverNotRegistered"),
    6: (InvalidAddressError, "receiverNotSubscribed"),
    7: (ProviderConfigError, "publicAccountBlocked"),
    8: (ProviderConfigError, "publicAccountNotFound"),
    9: (ProviderConfigError, "publicAccountSuspended"),
    10: (ProviderConfigError, "webhookNotSet"),
    11: (RejectedError, "receiverNoSuitableDevice"),
    12: (NotSentError, "tooManyRequests"),
    13: (ProviderConfigError, "apiVersionNotSupported"),
    14: (ProviderConfigError, "incompatibleWithVersion"),
    15: (ProviderConfigError, "publicAccountNotAuthorized"),
    21: (RejectedError, "unsupportedCountry"),
    22: (ProviderConfigError, "paymentUnsupported"),
    23: (ProviderConfigError, "freeMessagesExceeded"),
    24: (ProviderConfigError, "noBalance"),
}
_KINDS = {
    "delivered": ReceiptKind.DELIVERED,
    "seen": ReceiptKind.READ,
    "failed": ReceiptKind.FAILED,
}


class ViberConfig(ProviderConfig):
    """Bot auth token (it also signs callbacks) and the sender shown to users."""

    base_url: str = "https://chatapi.viber.com"
    auth_token: SecretStr
    sender_name: str = Field(default="Notifications", min_length=1, max_length=28)
    sender_avatar: str | None = None
    min_api_version: int = 1
    #: The confirmation button's label; None (the default) sends no keyboard.
    ack_button: str | None = Field(default=None, min_length=1, max_length=250)
    #: Signs the button's payload; the router derives one from the receipt secret.
    ack_key: SecretStr | None = None


class ViberProvider:
    """Sends text messages through a Viber bot."""

    name: ClassVar[str] = "viber"
    channel: ClassVar[Channel] = Channel.VIBER
    config_model: ClassVar[type[ProviderConfig]] = ViberConfig

    def __init__(self, config: ViberConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._timeout = request_timeout(config.timeout)

    def send(self, message: Message) -> SendResult:
        """Send one text message or raise (the body ``status`` decides)."""
        return self._post(self._payload(message))

    def _payload(self, message: Message) -> dict[str, Any]:
        sender: dict[str, str] = {"name": self.config.sender_name}
        if self.config.sender_avatar:
            sender["avatar"] = self.config.sender_avatar
        body: dict[str, Any] = {
            "receiver": message.recipient,
            "min_api_version": self.config.min_api_version,
            "sender": sender,
            "tracking_data": message.reference,
            "type": "text",
            "text": message.text,
        }
        signer = self._signer()
        if self.config.ack_button and signer is not None:
            button = {
                "Columns": 6,
                "Rows": 1,
                "ActionType": "reply",
                "ActionBody": signer.payload(message.reference),
                "Text": self.config.ack_button,
                "Silent": True,  # the press is not echoed as a message in the chat
            }
            body["keyboard"] = {"Type": "keyboard", "DefaultHeight": False, "Buttons": [button]}
        return body

    def _signer(self) -> AckSigner | None:
        return AckSigner.first("viber-ack", self.config.ack_key, self.config.auth_token)

    @quick_retry()
    def _post(self, body: dict[str, Any]) -> SendResult:
        url = f"{self.config.base_url.rstrip('/')}/pa/send_message"
        headers = {"X-Viber-Auth-Token": self.config.auth_token.get_secret_value()}
        with map_http_errors(self.name):
            response = self._client.post(url, json=body, headers=headers, timeout=self._timeout)
        raise_for_status_class(self.name, response)
        answer = json_object(response.content)
        status = answer.get("status") if answer else None
        if answer is None or not isinstance(status, int) or isinstance(status, bool):
            raise UnknownOutcomeError(f"viber: unreadable answer (HTTP {response.status_code})")
        if status != 0:
            error, label = STATUS_ERRORS.get(status, (NotSentError, "generalError"))
            raise error(f"viber: status {status} {label}", code=str(status))
        token = as_id(answer.get("message_token"))
        if token is None:
            raise UnknownOutcomeError("viber: accepted without a message token", code="no_id")
        return SendResult(provider_message_id=token)

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Verify the signature, answer the ``webhook`` probe, parse receipt callbacks."""
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            raise WebhookSignatureError("viber: missing signature", status_code=401)
        expected = hmac_sha256_hex(self.config.auth_token, request.body)
        if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
            raise WebhookSignatureError("viber: wrong signature", status_code=403)
        callback = json_object(request.body)
        if callback is None:
            return WebhookReply(status_code=400, body="not a JSON object")
        event = str(callback.get("event"))
        if event == "message":
            return WebhookReply(events=self._press(callback))
        kind = _KINDS.get(event)
        token = as_id(callback.get("message_token"))
        if kind is None or token is None:
            return WebhookReply()  # webhook probe, subscriptions, inbound messages
        timestamp = callback.get("timestamp")
        receipt = ReceiptEvent(
            provider=self.name,
            event_id=f"{token}:{event}:{timestamp}",
            kind=kind,
            provider_message_id=token,
            recipient=as_id(callback.get("user_id")),
            occurred_at=from_unix(timestamp, millis=True),
        )
        return WebhookReply(events=(receipt,))

    def _press(self, callback: dict[str, Any]) -> tuple[ReceiptEvent, ...]:
        """A ``message`` from the user: a READ receipt if it is our button's payload."""
        message = callback.get("message")
        text = message.get("text") if isinstance(message, dict) else None
        signer = self._signer()
        reference = signer.reference(text) if signer else None
        token = as_id(callback.get("message_token"))
        if reference is None or token is None:
            return ()  # the customer's own words, or a payload no button of ours carried
        sender = callback.get("sender")
        press = ReceiptEvent(
            provider=self.name,
            event_id=f"{token}:press",  # the press's own message token
            kind=ReceiptKind.READ,
            reference=reference,
            recipient=as_id(sender.get("id")) if isinstance(sender, dict) else None,
            occurred_at=from_unix(callback.get("timestamp"), millis=True),
        )
        return (press,)
