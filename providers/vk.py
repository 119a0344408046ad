"""VK community bot: ``messages.send`` and ``message_read`` callbacks.

VK answers HTTP 200 for errors too; ``error.error_code`` decides (PROVIDERS.md §7).
VK is the one messenger that deduplicates: ``random_id`` is derived from the
attempt's idempotency key, so resending after an unknown outcome cannot produce
a second message. Callback API events carry our ``secret`` in the body (plain
equality, compared in constant time); the ``confirmation`` event is answered with
the configured confirmation code, every other valid event with ``ok``.

With ``ack_button`` set, each message carries an inline keyboard with one text
button whose ``payload`` is ``{"ack": "ack:<reference>:<mac>"}``
(:class:`~providers._messaging.AckSigner`); pressing it sends the label as the user's
message, and VK's ``message_new`` callback echoes the payload: a READ receipt for the
attempt. Off by default: VK already reports ``message_read``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from providers._messaging import AckSigner, as_id, json_object, request_timeout, secret_matches
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

#: ``error_code`` -> error class, and seconds to wait for the throttling ones.
ERRORS: dict[int, type[ProviderError]] = {
    1: NotSentError,  # unknown error
    6: NotSentError,  # too many requests per second
    9: NotSentError,  # flood control
    10: UnknownOutcomeError,  # internal error: may have been sent; random_id makes a retry safe
    5: ProviderConfigError,  # user authorization failed
    7: ProviderConfigError,  # permission denied
    14: ProviderConfigError,  # captcha needed
    15: ProviderConfigError,  # access denied
    27: ProviderConfigError,  # group authorization failed
    100: ProviderConfigError,  # invalid parameter
    914: ProviderConfigError,  # message too long
    18: InvalidAddressError,  # user deleted or banned
    113: InvalidAddressError,  # invalid user id
    900: InvalidAddressError,  # user blacklisted the community
    901: InvalidAddressError,  # user did not allow messages from the community
    902: InvalidAddressError,  # user's privacy settings
    917: InvalidAddressError,  # no access to the conversation
    936: InvalidAddressError,  # contact not found
}
RETRY_AFTER = {6: 1.0, 9: 3600.0}
#: VK refuses a button ``payload`` longer than this many characters.
MAX_PAYLOAD = 255


def random_id(idempotency_key: str) -> int:
    """A stable positive int32 for ``random_id`` (0 would switch VK's dedup off)."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1


class VkConfig(ProviderConfig):
    """Community token and Callback API settings."""

    base_url: str = "https://api.vk.com"
    access_token: SecretStr
    api_version: str = "5.199"
    confirmation_code: str | None = None  #: the string VK expects back on ``confirmation``
    secret: SecretStr | None = None  #: the Callback API "secret key"
    group_id: int | None = None  #: if set, callbacks for other communities are refused
    #: The confirmation button's label; None (the default) sends no keyboard.
    ack_button: str | None = Field(default=None, min_length=1, max_length=40)
    #: Signs the button's payload; the router derives one from the receipt secret.
    ack_key: SecretStr | None = None


class VkProvider:
    """Sends messages from a VK community to users who allowed it."""

    name: ClassVar[str] = "vk"
    channel: ClassVar[Channel] = Channel.VK
    config_model: ClassVar[type[ProviderConfig]] = VkConfig

    def __init__(self, config: VkConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._timeout = request_timeout(config.timeout)

    def send(self, message: Message) -> SendResult:
        """Send one message; a retry with the same idempotency key is deduplicated by VK."""
        form = {
            "access_token": self.config.access_token.get_secret_value(),
            "v": self.config.api_version,
            "user_id": message.recipient,
            "message": message.text,
            "random_id": str(random_id(message.idempotency_key)),
        }
        keyboard = self._keyboard(message.reference)
        if keyboard:
            form["keyboard"] = keyboard
        return self._post(form)

    def _keyboard(self, reference: str) -> str | None:
        """The inline keyboard with the confirmation button, as the JSON string VK takes."""
        signer = self._signer()
        if not self.config.ack_button or signer is None:
            return None
        payload = json.dumps({"ack": signer.payload(reference)}, separators=(",", ":"))
        if len(payload) > MAX_PAYLOAD:
            return None
        action = {"type": "text", "label": self.config.ack_button, "payload": payload}
        keyboard = {"inline": True, "buttons": [[{"action": action, "color": "positive"}]]}
        return json.dumps(keyboard, ensure_ascii=False, separators=(",", ":"))

    def _signer(self) -> AckSigner | None:
        return AckSigner.first("vk-ack", self.config.ack_key, self.config.secret)

    @quick_retry()
    def _post(self, form: dict[str, str]) -> SendResult:
        url = f"{self.config.base_url.rstrip('/')}/method/messages.send"
        with map_http_errors(self.name):
            response = self._client.post(url, data=form, timeout=self._timeout)
        raise_for_status_class(self.name, response)
        answer = json_object(response.content)
        if answer is None:
            raise UnknownOutcomeError(f"vk: unreadable answer (HTTP {response.status_code})")
        error = answer.get("error")
        if isinstance(error, dict):
            raise _api_error(error)
        message_id = as_id(answer.get("response"))
        if message_id is None:
            raise UnknownOutcomeError("vk: answer without a message id", code="no_id")
        return SendResult(provider_message_id=message_id)

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Answer ``confirmation``; verify the secret and parse ``message_read`` events."""
        event = json_object(request.body)
        if event is None:
            return WebhookReply(status_code=400, body="not a JSON object")
        given = event.get("secret")
        given = given if isinstance(given, str) else None
        group = self.config.group_id
        if group is not None and event.get("group_id") != group:
            raise WebhookSignatureError("vk: callback for another community", status_code=403)
        if event.get("type") == "confirmation" and given is None:
            return self._confirm()
        if given is None:
            raise WebhookSignatureError("vk: missing secret", status_code=401)
        if not secret_matches(given, self.config.secret):
            raise WebhookSignatureError("vk: wrong secret", status_code=403)
        if event.get("type") == "confirmation":
            return self._confirm()
        if event.get("type") == "message_new":
            return WebhookReply(body="ok", events=self._press(event, request))
        if event.get("type") != "message_read":
            return WebhookReply(body="ok")
        read = event.get("object")
        read = read if isinstance(read, dict) else {}
        read_up_to = as_id(read.get("read_message_id"))
        peer = as_id(read.get("peer_id")) or as_id(read.get("from_id"))
        if read_up_to is None or peer is None:
            return WebhookReply(body="ok")
        receipt = ReceiptEvent(
            provider=self.name,
            event_id=as_id(event.get("event_id")) or f"{peer}:read:{read_up_to}",
            kind=ReceiptKind.READ,
            provider_message_id=read_up_to,
            recipient=peer,
            occurred_at=request.received_at,
            read_up_to=True,
        )
        return WebhookReply(body="ok", events=(receipt,))

    def _press(self, event: dict[str, Any], request: WebhookRequest) -> tuple[ReceiptEvent, ...]:
        """A ``message_new`` echoing our button's payload: a READ receipt for its attempt."""
        body = event.get("object")
        message = body.get("message") if isinstance(body, dict) else None
        raw = message.get("payload") if isinstance(message, dict) else None
        payload = json_object(raw.encode()) if isinstance(raw, str) else None
        signer = self._signer()
        reference = signer.reference(payload.get("ack")) if signer and payload else None
        if reference is None or not isinstance(message, dict):
            return ()  # the customer's own message, or a payload no button of ours carried
        sender = as_id(message.get("from_id"))
        press_id = as_id(message.get("id")) or as_id(message.get("conversation_message_id"))
        press = ReceiptEvent(
            provider=self.name,
            event_id=as_id(event.get("event_id")) or f"{sender}:press:{press_id}",
            kind=ReceiptKind.READ,
            reference=reference,
            recipient=sender,
            occurred_at=request.received_at,
        )
        return (press,)

    def _confirm(self) -> WebhookReply:
        code = self.config.confirmation_code
        if not code:
            return WebhookReply(status_code=404, body="no confirmation code configured")
        return WebhookReply(body=code)


def _api_error(error: dict[str, Any]) -> ProviderError:
    raw = error.get("error_code")
    code = raw if isinstance(raw, int) and not isinstance(raw, bool) else -1
    cls = ERRORS.get(code, RejectedError)
    text = f"vk: API error {code}"
    if cls is NotSentError:
        return NotSentError(text, code=str(code), retry_after=RETRY_AFTER.get(code))
    return cls(text, code=str(code))
