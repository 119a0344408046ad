"""Apple Push Notification service (APNs), token-based auth over HTTP/2.

``POST {base_url}/3/device/{token}`` with ``authorization: bearer <JWT>``: an
ES256 provider token (``kid`` = key id, ``iss`` = team id, ``iat``) signed with
the ``.p8`` key, reused for 50 minutes and never replaced within 20 (Apple
answers 429 ``TooManyProviderTokenUpdates`` to churn and 403
``ExpiredProviderToken`` after 60). ``apns-id`` is a UUID derived from the
attempt's idempotency key and ``apns-collapse-id`` is that key (or its digest),
so a resend of the same attempt replaces the first notification instead of
stacking. A 200 has an empty body; its ``apns-id`` header is the message id.

HTTP/2 client. APNs refuses HTTP/1.1, and the process-wide client from
:func:`providers.http.make_client` speaks HTTP/1.1 only; it is accepted for the
``cls(config, client)`` contract and not used. Instead the provider builds its
own long-lived ``httpx.Client(http2=True)`` in ``__init__``: ALPN over TLS for
``https://`` (Apple), HTTP/2 prior knowledge (h2c, ``http1=False``) for a plain
``http://`` simulator. :meth:`ApnsProvider.close` closes it. Tests may pass
``http2_client=`` (e.g. over ``httpx.MockTransport``); the caller owns and
closes a client passed that way.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from providers.base import Channel, Message, ProviderConfig, SendResult
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
)
from providers.http import (
    DEFAULT_TIMEOUT,
    map_http_errors,
    quick_retry,
    retry_after_seconds,
    server_error,
)

#: A provider token is replaced after this many seconds (Apple: at least hourly) ...
TOKEN_REFRESH_AFTER = 50 * 60
#: ... and never sooner than this, not even when Apple calls it expired.
TOKEN_MIN_AGE = 20 * 60
#: Device tokens are hex; today 64 characters, documented as possibly longer.
_DEVICE_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
#: A collapse id is at most 64 bytes; printable ASCII keys that fit are used as they are.
_COLLAPSE_ID = re.compile(r"[\x21-\x7e]{1,64}")
_APNS_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cascade/apns-id")
#: Reasons that mean this device token will never work (for this app).
_BAD_ADDRESS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})


class ApnsConfig(ProviderConfig):
    """APNs token-auth settings: the signing key from the developer account and the app."""

    base_url: str = "https://api.push.apple.com"
    team_id: str  #: 10-character Team ID (the JWT ``iss``)
    key_id: str  #: 10-character Key ID of the ``.p8`` key (the JWT ``kid``)
    private_key: SecretStr  #: the ``.p8`` file's PEM text
    topic: str  #: the app's bundle id
    push_type: str = "alert"
    priority: Literal[1, 5, 10] = 10


class _ProviderTokens:
    """One cached ES256 provider token, shared by all threads of a process."""

    def __init__(self, config: ApnsConfig, clock: Callable[[], float]) -> None:
        self._team_id = config.team_id
        self._key_id = config.key_id
        self._key = _signing_key(config.private_key)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._issued_at = 0.0

    def get(self) -> str:
        """The cached token, or a new one once it is 50 minutes old."""
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._issued_at >= TOKEN_REFRESH_AFTER:
                self._issue(now)
            assert self._token is not None
            return self._token

    def replace_expired(self, token: str) -> bool:
        """Apple called ``token`` expired: replace it unless it is under 20 minutes old.

        Returns whether a newer token is available. A token that young can only
        look expired to Apple if our clock is far behind; signing new ones would
        not help and would earn ``TooManyProviderTokenUpdates``.
        """
        with self._lock:
            if self._token != token:
                return True  # another thread has replaced it already
            now = self._clock()
            if now - self._issued_at < TOKEN_MIN_AGE:
                return False
            self._issue(now)
            return True

    def _issue(self, now: float) -> None:
        self._token = jwt.encode(
            {"iss": self._team_id, "iat": int(now)},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id, "typ": None},  # exactly {"alg", "kid"}
        )
        self._issued_at = now


class ApnsProvider:
    """Sends alert pushes to APNs device tokens."""

    name: ClassVar[str] = "apns"
    channel: ClassVar[Channel] = Channel.PUSH
    config_model: ClassVar[type[ProviderConfig]] = ApnsConfig

    def __init__(
        self,
        config: ApnsConfig,
        client: httpx.Client,
        *,
        clock: Callable[[], float] | None = None,
        http2_client: httpx.Client | None = None,
    ) -> None:
        del client  # HTTP/1.1 only; see the module docstring
        self.config = config
        self._tokens = _ProviderTokens(config, clock or time.time)
        self._base = config.base_url.rstrip("/")
        self._timeout = httpx.Timeout(
            config.timeout, connect=min(DEFAULT_TIMEOUT.connect or 3.0, config.timeout)
        )
        self._owns_client = http2_client is None
        self._client = http2_client or httpx.Client(
            http2=True, http1=not self._base.startswith("http://"), timeout=self._timeout
        )

    def accepts(self, recipient: str) -> bool:
        """APNs device tokens only: 64 to 200 hex characters."""
        return is_device_token(recipient)

    def close(self) -> None:
        """Close the HTTP/2 connection this provider opened (not one passed in)."""
        if self._owns_client:
            self._client.close()

    def send(self, message: Message) -> SendResult:
        if not self.accepts(message.recipient):
            # Also keeps anything but hex out of the URL path.
            raise InvalidAddressError("apns: not a device token", code="BadDeviceToken")
        apns_id = str(uuid.uuid5(_APNS_ID_NAMESPACE, message.idempotency_key))
        headers = {
            "apns-topic": self.config.topic,
            "apns-push-type": self.config.push_type,
            "apns-priority": str(self.config.priority),
            "apns-expiration": "0",
            "apns-id": apns_id,
            "apns-collapse-id": _collapse_id(message.idempotency_key),
        }
        url = f"{self._base}/3/device/{message.recipient}"
        return self._send(url, headers, _payload(message))

    @quick_retry()
    def _send(self, url: str, headers: dict[str, str], payload: dict[str, Any]) -> SendResult:
        token = self._tokens.get()
        response = self._post(url, headers, payload, token)
        if _reason(response) == "ExpiredProviderToken" and self._tokens.replace_expired(token):
            # A refused token means nothing was delivered: one resend cannot duplicate.
            response = self._post(url, headers, payload, self._tokens.get())
        if response.is_success:
            # Apple echoes our apns-id; a 200 without it was still accepted.
            apns_id = response.headers.get("apns-id") or headers["apns-id"]
            return SendResult(provider_message_id=apns_id)
        raise _error(response)

    def _post(
        self, url: str, headers: dict[str, str], payload: dict[str, Any], token: str
    ) -> httpx.Response:
        with map_http_errors(self.name):
            return self._client.post(
                url,
                json=payload,
                headers={"authorization": f"bearer {token}", **headers},
                timeout=self._timeout,
            )


def is_device_token(recipient: str) -> bool:
    """Whether ``recipient`` looks like an APNs device token (hex, 64 to 200 characters).

    FCM registration tokens always hold a ``:`` and base64url text, so the two never overlap.
    """
    return _DEVICE_TOKEN.fullmatch(recipient) is not None


def _signing_key(secret: SecretStr) -> ec.EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(secret.get_secret_value().encode(), password=None)
    except (ValueError, TypeError):
        raise ProviderConfigError("apns: unreadable private_key", code="bad_key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProviderConfigError("apns: private_key is not a P-256 key", code="bad_key")
    return key


def _collapse_id(key: str) -> str:
    if _COLLAPSE_ID.fullmatch(key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _payload(message: Message) -> dict[str, Any]:
    alert = {"title": message.title} if message.title else {}
    alert["body"] = message.text
    payload: dict[str, Any] = {"aps": {"alert": alert, "sound": "default"}}
    payload.update((str(k), str(v)) for k, v in message.data.items() if k != "aps")
    return payload


def _reason(response: httpx.Response) -> str | None:
    if response.is_success or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None


def _error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    reason = _reason(response)
    code = reason or str(status)
    detail = f"apns: HTTP {status} {code}"
    kind: type[ProviderError]
    if status == 410 or (status == 400 and reason in _BAD_ADDRESS):
        kind = InvalidAddressError
    elif status == 400 and reason == "IdleTimeout":
        kind = NotSentError  # refused before processing: reconnect and send again
    elif status == 429:
        kind = ProviderConfigError if reason == "TooManyProviderTokenUpdates" else NotSentError
    elif (error := server_error("apns", response, code=code)) is not None:
        return error  # 503 ServiceUnavailable/Shutdown not sent; 500 may have been taken
    else:  # 400 on our headers or payload, 403 credentials, 404/405 path, 413 size
        kind = ProviderConfigError
    if kind is NotSentError:
        return NotSentError(detail, code=code, retry_after=retry_after_seconds(response))
    return kind(detail, code=code)
