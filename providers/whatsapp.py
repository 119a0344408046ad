"""WhatsApp Business Cloud API: send text or template messages, receive statuses.

A 200 from ``/messages`` only means Meta accepted the request; delivery, read
and most recipient failures arrive later as ``statuses`` webhooks signed with
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``. Errors
are classified on Graph's ``error.code`` (:mod:`providers.whatsapp_errors`), as Meta
recommends, and only then on the HTTP status. Our attempt reference travels as
``biz_opaque_callback_data``, which Meta echoes in the status webhooks.

Free-form text is delivered only within 24 hours of the customer's last message to
us (the service window); outside it Meta refuses it with 131047 ("re-engagement
message"), synchronously or in a ``failed`` status. So: with the window open
(``Message.window_open``, from the inbound messages this module reports) the text
goes, and a 131047 for it sends the approved template instead (the text was not
sent); with the window closed the template goes; with neither a template nor an
open window nothing is sent (:class:`TemplateRequiredError`). Inbound messages are
reported with their sender and time only, never their content.

With ``ack_button`` set, text inside the window goes as an interactive ``button``
message with one reply button whose ``id`` is ``ack:<reference>:<mac>``
(:class:`~providers._messaging.AckSigner`); the press comes back as an inbound
``interactive.button_reply`` and becomes a READ receipt for the attempt. Meta allows
interactive messages only inside the window (and bodies up to 1024 characters), so a
longer text goes without the button. Off by default: WhatsApp already reports ``read``.

An approved template can carry the button too: Meta fixes a template's quick-reply
buttons (their labels) at approval, and the sender sets each one's ``payload`` per
message. A template whose ``ack_button`` names the index of such a button
(:class:`~providers.base.TemplateRef`) gets ``ack:<reference>:<mac>`` as that button's
payload; the press comes back as an inbound message of type ``button`` with
``button.payload`` and is a READ receipt like the interactive one.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
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
    secret_matches,
)
from providers.base import (
    Channel,
    InboundMessage,
    Message,
    ProviderConfig,
    ReceiptEvent,
    ReceiptKind,
    SendResult,
    WebhookReply,
    WebhookRequest,
)
from providers.errors import (
    TEMPLATE_REQUIRED,
    TemplateRequiredError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.http import map_http_errors, quick_retry, raise_for_status_class
from providers.whatsapp_errors import INVALID_ADDRESS_CODES, TEMPLATE_REQUIRED_CODE, graph_error
from providers.whatsapp_messages import payload, pressed

SIGNATURE_HEADER = "x-hub-signature-256"

_KINDS = {
    "sent": ReceiptKind.SENT,
    "delivered": ReceiptKind.DELIVERED,
    "read": ReceiptKind.READ,
    "failed": ReceiptKind.FAILED,
}


class WhatsAppConfig(ProviderConfig):
    """Cloud API credentials and webhook secrets."""

    base_url: str = "https://graph.facebook.com"
    api_version: str = "21.0"  #: Graph version, the path is ``/v{api_version}/...``
    phone_number_id: str
    access_token: SecretStr
    app_secret: SecretStr | None = None  #: signs the webhooks
    verify_token: SecretStr | None = None  #: our ``hub.verify_token`` for the GET handshake
    #: The reply button's title; None (the default) sends plain text.
    ack_button: str | None = Field(default=None, min_length=1, max_length=20)
    #: Signs the button's id; the router derives one from the receipt secret.
    ack_key: SecretStr | None = None


class WhatsAppProvider:
    """Sends WhatsApp messages through Meta's Cloud API."""

    name: ClassVar[str] = "whatsapp"
    channel: ClassVar[Channel] = Channel.WHATSAPP
    config_model: ClassVar[type[ProviderConfig]] = WhatsAppConfig

    def __init__(self, config: WhatsAppConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._timeout = request_timeout(config.timeout)

    def send(self, message: Message) -> SendResult:
        """Text inside the service window, else the approved template (see the module doc)."""
        if message.window_open and message.text:
            try:
                return self._post(payload(message, as_template=False, button=self._button(message)))
            except TemplateRequiredError:
                if message.template is None:
                    raise
                # Meta says the window is closed: the text was refused, not sent.
        if message.template is None:
            raise TemplateRequiredError(
                "whatsapp: not sent: the customer has not written within 24 hours "
                "and the step has no approved template"
            )
        return self._post(payload(message, as_template=True, button=self._template_button(message)))

    def _template_button(self, message: Message) -> tuple[str, str] | None:
        """(payload, index) for the approved template's acknowledging quick-reply button."""
        signer = self._signer()
        template = message.template
        if template is None or template.ack_button is None or signer is None:
            return None
        return signer.payload(message.reference), str(template.ack_button)

    def _button(self, message: Message) -> tuple[str, str] | None:
        """(id, title) of the reply button for ``message``, when it is on."""
        signer = self._signer()
        if not self.config.ack_button or signer is None:
            return None
        return signer.payload(message.reference), self.config.ack_button

    def _signer(self) -> AckSigner | None:
        return AckSigner.first("whatsapp-ack", self.config.ack_key, self.config.app_secret)

    @quick_retry()
    def _post(self, body: dict[str, Any]) -> SendResult:
        config = self.config
        url = (
            f"{config.base_url.rstrip('/')}/v{config.api_version}/{config.phone_number_id}/messages"
        )
        headers = {"Authorization": f"Bearer {config.access_token.get_secret_value()}"}
        with map_http_errors(self.name):
            response = self._client.post(url, json=body, headers=headers, timeout=self._timeout)
        answer = json_object(response.content)
        error = answer.get("error") if answer else None
        if isinstance(error, dict):
            raise graph_error(error, response, template="template" in body)
        raise_for_status_class(self.name, response)
        messages = answer.get("messages") if answer else None
        first = messages[0] if isinstance(messages, list) and messages else None
        message_id = as_id(first.get("id")) if isinstance(first, dict) else None
        if message_id is None:
            raise UnknownOutcomeError(f"whatsapp: no message id (HTTP {response.status_code})")
        return SendResult(provider_message_id=message_id)

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Answer the ``hub.challenge`` handshake, or verify and parse ``statuses``."""
        if request.method.upper() == "GET":
            return self._handshake(request)
        self._verify(request)
        update = json_object(request.body)
        if update is None:
            return WebhookReply(status_code=400, body="not a JSON object")
        events = (*self._events(update), *self._presses(update))
        return WebhookReply(events=events, inbound=tuple(self._inbound(update)))

    def _presses(self, update: dict[str, Any]) -> Iterator[ReceiptEvent]:
        """Presses of our buttons, as READ receipts: an interactive ``button_reply`` (its
        ``id``) or a template's quick reply (type ``button``, its ``payload``)."""
        signer = self._signer()
        if signer is None:
            return
        for message in _values(update, "messages"):
            reference = signer.reference(pressed(message))
            press_id = as_id(message.get("id"))
            if reference is None or press_id is None:
                continue  # the customer's own message, or an id no button of ours carried
            context = message.get("context")
            yield ReceiptEvent(
                provider=self.name,
                event_id=f"{press_id}:press",
                kind=ReceiptKind.READ,
                provider_message_id=as_id(context.get("id")) if isinstance(context, dict) else None,
                reference=reference,
                recipient=as_id(message.get("from")),
                occurred_at=from_unix(message.get("timestamp")),
            )

    def _inbound(self, update: dict[str, Any]) -> Iterator[InboundMessage]:
        """Customers' messages to us: sender and time only (the text is never read)."""
        for message in _values(update, "messages"):
            sender, at = as_id(message.get("from")), from_unix(message.get("timestamp"))
            if sender is not None and at is not None:
                yield InboundMessage(provider=self.name, sender=sender, at=at)

    def _handshake(self, request: WebhookRequest) -> WebhookReply:
        mode = request.query.get("hub.mode")
        token = request.query.get("hub.verify_token")
        if mode != "subscribe" or not secret_matches(token, self.config.verify_token):
            raise WebhookSignatureError("whatsapp: wrong verify token", status_code=403)
        return WebhookReply(body=request.query.get("hub.challenge", ""))

    def _verify(self, request: WebhookRequest) -> None:
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            raise WebhookSignatureError("whatsapp: missing signature", status_code=401)
        secret = self.config.app_secret
        if secret is None:
            raise WebhookSignatureError("whatsapp: no app secret configured", status_code=403)
        expected = "sha256=" + hmac_sha256_hex(secret, request.body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookSignatureError("whatsapp: wrong signature", status_code=403)

    def _events(self, update: dict[str, Any]) -> Iterator[ReceiptEvent]:
        for status in _values(update, "statuses"):
            kind = _KINDS.get(str(status.get("status")))
            message_id = as_id(status.get("id"))
            if kind is None or message_id is None:
                continue
            timestamp = status.get("timestamp")
            errors = status.get("errors")
            first = errors[0] if isinstance(errors, list) and errors else {}
            code = first.get("code") if isinstance(first, dict) else None
            if code == TEMPLATE_REQUIRED_CODE:
                code = TEMPLATE_REQUIRED  # the text was not delivered: use a template
            reference = status.get("biz_opaque_callback_data")
            yield ReceiptEvent(
                provider=self.name,
                event_id=f"{message_id}:{kind.value}:{timestamp}",
                kind=kind,
                provider_message_id=message_id,
                reference=reference if isinstance(reference, str) and reference else None,
                recipient=as_id(status.get("recipient_id")),
                occurred_at=from_unix(timestamp),
                error_code=str(code) if kind is ReceiptKind.FAILED and code is not None else None,
                invalid_address=kind is ReceiptKind.FAILED and code in INVALID_ADDRESS_CODES,
            )


def _values(update: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
    """The objects under ``entry[].changes[].value.<key>[]`` (``statuses`` or ``messages``)."""
    entries = update.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            items = value.get(key) if isinstance(value, dict) else None
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    yield item
