"""Telegram Bot API: ``sendMessage``, and "Got it" button presses as read receipts.

The Bot API reports no delivery or read status. A message carries an inline
button whose ``callback_data`` is ``ack:<reference>:<mac>``; pressing it makes
Telegram POST a ``callback_query`` update to our webhook, which becomes a READ
receipt for that attempt. The webhook is authenticated by the ``secret_token``
given to ``setWebhook``, echoed in ``X-Telegram-Bot-Api-Secret-Token``.

A client can send any ``callback_data``, not only what is on a button, so the
payload carries a MAC of the reference (:class:`~providers._messaging.AckSigner`:
truncated HMAC-SHA256 with ``ack_key``, 96 bits, so ``ack:<uuid>:<mac>`` is 57 of
Telegram's 64 bytes). A press whose MAC is missing or wrong is answered (the client
stops spinning) and confirms nothing. Without the button (``ack_button`` unset, or no
key to sign it) Telegram reports ``sent`` only: :meth:`TelegramProvider.reports` says
so, and the cascade check names ``ack_button`` when a step waits for ``read``.

The bot token is part of the URL path, so URLs never go into exceptions, and a
log filter masks it in httpx's own request log line.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from providers._messaging import AckSigner, as_id, json_object, request_timeout, secret_matches
from providers.base import (
    Channel,
    Message,
    ProviderConfig,
    ReceiptEvent,
    ReceiptKind,
    Reports,
    SendResult,
    Signal,
    WebhookReply,
    WebhookRequest,
)
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    RejectedError,
    UnknownOutcomeError,
    WebhookSignatureError,
)
from providers.http import map_http_errors, quick_retry, raise_for_status_class

WEBHOOK_HEADER = "x-telegram-bot-api-secret-token"
#: Telegram refuses ``callback_data`` longer than this many bytes.
MAX_CALLBACK_DATA = 64
#: 400 descriptions that mean the chat id is wrong or unknown to the bot.
_UNKNOWN_CHAT = ("chat not found", "user not found", "peer_id_invalid", "chat_id is empty")
_TOKEN_IN_PATH = re.compile(r"/bot[^/\s]+/")


class TelegramConfig(ProviderConfig):
    """Bot credentials; ``webhook_secret`` is the ``secret_token`` given to setWebhook."""

    base_url: str = "https://api.telegram.org"
    token: SecretStr
    webhook_secret: SecretStr | None = None
    #: Signs the button's payload; the router derives one from the receipt secret.
    #: Without it the webhook secret signs; without both no button is sent.
    ack_key: SecretStr | None = None
    ack_button: str | None = "✅ Got it"  #: None sends no button (no read receipts)
    ack_reply: str = "Thanks!"  #: the toast shown after the button is pressed


class _RedactBotToken(logging.Filter):
    """Mask ``/bot<token>/`` in httpx's "HTTP Request: POST <url>" log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, httpx.URL | str) and "/bot" in str(arg):
        return _TOKEN_IN_PATH.sub("/bot<redacted>/", str(arg))
    return arg


def _install_log_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactBotToken) for f in logger.filters):
        logger.addFilter(_RedactBotToken())


class TelegramProvider:
    """Sends text messages through a Telegram bot."""

    name: ClassVar[str] = "telegram"
    channel: ClassVar[Channel] = Channel.TELEGRAM
    config_model: ClassVar[type[ProviderConfig]] = TelegramConfig

    def __init__(self, config: TelegramConfig, client: httpx.Client) -> None:
        self.config = config
        self._client = client
        self._timeout = request_timeout(config.timeout)
        _install_log_redaction()

    def reports(self) -> Reports:
        """``read`` when messages carry the button (it is on and a key signs it)."""
        if self.config.ack_button and self._signer() is not None:
            return Reports(frozenset({Signal.SENT, Signal.READ}))
        return Reports(frozenset({Signal.SENT}), {Signal.READ: "ack_button"})

    def send(self, message: Message) -> SendResult:
        """Send one text message (with the "Got it" button) or raise."""
        return self._post(self._payload(message))

    def _payload(self, message: Message) -> dict[str, Any]:
        chat: int | str = message.recipient
        if re.fullmatch(r"-?\d{1,20}", message.recipient):
            chat = int(message.recipient)
        payload: dict[str, Any] = {"chat_id": chat, "text": message.text}
        signer = self._signer()
        data = signer.payload(message.reference) if signer else ""
        if self.config.ack_button and data and len(data.encode()) <= MAX_CALLBACK_DATA:
            button = {"text": self.config.ack_button, "callback_data": data}
            payload["reply_markup"] = {"inline_keyboard": [[button]]}
        return payload

    @quick_retry()
    def _post(self, payload: dict[str, Any]) -> SendResult:
        base = self.config.base_url.rstrip("/")
        url = f"{base}/bot{self.config.token.get_secret_value()}/sendMessage"
        with map_http_errors(self.name):
            response = self._client.post(url, json=payload, timeout=self._timeout)
        body = self._check(response)
        result = body.get("result")
        message_id = as_id(result.get("message_id")) if isinstance(result, dict) else None
        if message_id is None:
            raise UnknownOutcomeError("telegram: accepted without a message id", code="no_id")
        chat = result.get("chat") if isinstance(result, dict) else None
        chat_id = as_id(chat.get("id")) if isinstance(chat, dict) else None
        # message_id is unique per chat only, so the provider id names both.
        return SendResult(provider_message_id=f"{chat_id or payload['chat_id']}:{message_id}")

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        """Return the body of a successful answer, or raise the matching error."""
        status = response.status_code
        body = json_object(response.content)
        if body is None:
            raise_for_status_class(self.name, response)
            raise UnknownOutcomeError(f"telegram: unreadable answer (HTTP {status})")
        if body.get("ok") is True and status < 400:
            return body
        code = str(body.get("error_code") or status)
        # Only the category ("Bad Request: message is too long"), never details that
        # could quote the message (e.g. "can't parse entities: ... tag <x> at byte 9").
        description = ": ".join(str(body.get("description") or "").split(": ")[:2])[:80]
        params = body.get("parameters")
        params = params if isinstance(params, dict) else {}
        if isinstance(params.get("retry_after"), int | float):
            raise NotSentError(
                "telegram: flood control", code=code, retry_after=float(params["retry_after"])
            )
        if "migrate_to_chat_id" in params:
            raise InvalidAddressError("telegram: group migrated to a supergroup", code="migrated")
        if status == 403:
            raise InvalidAddressError("telegram: bot blocked or cannot reach the chat", code=code)
        if status == 400 and any(p in description.lower() for p in _UNKNOWN_CHAT):
            raise InvalidAddressError("telegram: chat not found", code=code)
        if status in (401, 404, 409):
            raise ProviderConfigError(f"telegram: bad bot token or setup: {description}", code=code)
        if status == 400:
            raise RejectedError(f"telegram: message refused: {description}", code=code)
        raise_for_status_class(self.name, response, code=code)
        raise UnknownOutcomeError(f"telegram: not ok (HTTP {status})", code=code)

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Verify the secret token, turn an ``ack:`` button press into a READ receipt."""
        given = request.headers.get(WEBHOOK_HEADER)
        if given is None:
            raise WebhookSignatureError("telegram: missing secret token", status_code=401)
        if not secret_matches(given, self.config.webhook_secret):
            raise WebhookSignatureError("telegram: wrong secret token", status_code=403)
        if request.method.upper() != "POST":
            return WebhookReply(status_code=405)
        update = json_object(request.body)
        if update is None:
            return WebhookReply(status_code=400, body="not a JSON object")
        query = update.get("callback_query")
        if not isinstance(query, dict) or as_id(query.get("id")) is None:
            return WebhookReply()  # other updates are not receipts
        query_id = str(as_id(query.get("id")))
        # Answering in the webhook reply stops the button's spinner without a second call.
        answer = {"method": "answerCallbackQuery", "callback_query_id": query_id}
        signer = self._signer()
        reference = signer.reference(query.get("data")) if signer else None
        if reference is None:  # not our button, or a payload no button of ours carried
            return WebhookReply(body=json.dumps(answer), media_type="application/json")
        answer["text"] = self.config.ack_reply
        event = ReceiptEvent(
            provider=self.name,
            event_id=f"callback_query:{query_id}",
            kind=ReceiptKind.READ,
            provider_message_id=_message_id(query.get("message")),
            reference=reference,
            recipient=_user_id(query.get("from")),
            occurred_at=request.received_at,
        )
        return WebhookReply(body=json.dumps(answer), media_type="application/json", events=(event,))

    def _signer(self) -> AckSigner | None:
        return AckSigner.first("telegram-ack", self.config.ack_key, self.config.webhook_secret)


def _message_id(message: object) -> str | None:
    if not isinstance(message, dict):
        return None
    chat = message.get("chat")
    chat_id = as_id(chat.get("id")) if isinstance(chat, dict) else None
    message_id = as_id(message.get("message_id"))
    return f"{chat_id}:{message_id}" if chat_id and message_id else None


def _user_id(user: object) -> str | None:
    return as_id(user.get("id")) if isinstance(user, dict) else None
