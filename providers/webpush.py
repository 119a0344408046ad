"""Web Push: RFC 8030 delivery, RFC 8291 (aes128gcm) encryption, RFC 8292 VAPID.

The recipient is the browser's ``PushSubscription`` as JSON. The endpoint is an
opaque capability URL on the browser's push service, so there is no base URL.
The payload is ``{"title", "body", "data"}`` for the service worker, which calls
our receipts endpoint itself: Web Push has no webhook.

``Topic`` is derived from the attempt's idempotency key, so a resend after an
unknown outcome replaces an undelivered copy instead of stacking a second one.

The endpoint comes from API input, so before each send its host is resolved and
every address checked: a private, loopback, link-local, shared, multicast or
reserved target is refused as an invalid address, and no request is made
(SSRF). ``allow_private_endpoints`` or ``allowed_networks`` admit a self-hosted
push service. The request may resolve the name again (DNS rebinding is not pinned).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import http_ece
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)
from pydantic import SecretStr, field_validator

from providers.base import Channel, Message, ProviderConfig, SendResult
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    RejectedError,
)
from providers.http import (
    DEFAULT_TIMEOUT,
    map_http_errors,
    quick_retry,
    raise_for_status_class,
    retry_after_seconds,
)

#: RFC 8030 §7.2 and RFC 8291 §4: push services must accept 4096-byte bodies;
#: minus the 86-byte header, the 16-byte tag and the 1-byte delimiter.
MAX_PLAINTEXT = 4096 - 86 - 16 - 1
#: VAPID tokens live 12 h (RFC 8292 allows up to 24 h), as pywebpush does.
VAPID_LIFETIME = 12 * 3600


class WebPushConfig(ProviderConfig):
    """VAPID identity and delivery options."""

    vapid_private_key: SecretStr  #: P-256 key: PEM, or base64url of DER or the raw 32 bytes
    vapid_subject: str  #: ``mailto:ops@example.org`` (or an https URL)
    ttl: int = 86400  #: seconds the push service keeps an undelivered message
    urgency: Literal["very-low", "low", "normal", "high"] = "high"
    allow_insecure_endpoints: bool = False  #: accept http:// endpoints (local tests only)
    allow_private_endpoints: bool = False  #: skip the public-address check (local tests only)
    allowed_networks: tuple[str, ...] = ()  #: CIDRs admitted though not public (own push service)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @field_validator("vapid_subject")
    @classmethod
    def _contact(cls, value: str) -> str:
        if not value.startswith(("mailto:", "https:")):
            raise ValueError("must be a mailto: or https: URI")
        return value


class WebPushProvider:
    """Sends encrypted Web Push messages to browser subscriptions."""

    name: ClassVar[str] = "webpush"
    channel: ClassVar[Channel] = Channel.PUSH
    config_model: ClassVar[type[ProviderConfig]] = WebPushConfig

    def __init__(
        self,
        config: WebPushConfig,
        client: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
        resolver: Resolver | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock
        self._resolve = resolver or resolve
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in config.allowed_networks]
        self._key = load_vapid_key(config.vapid_private_key.get_secret_value())
        self._public = b64url(
            self._key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        self._timeout = httpx.Timeout(
            config.timeout, connect=min(DEFAULT_TIMEOUT.connect or 3.0, config.timeout)
        )

    def accepts(self, recipient: str) -> bool:
        """Subscriptions are JSON objects; FCM tokens are not."""
        return recipient.lstrip().startswith("{")

    def send(self, message: Message) -> SendResult:
        endpoint, p256dh, auth = self._subscription(message.recipient)
        self._check_target(endpoint)
        plaintext = json.dumps(_payload(message), separators=(",", ":")).encode()
        if len(plaintext) > MAX_PLAINTEXT:
            raise RejectedError("webpush: payload too large", code="payload_too_large")
        try:
            body = http_ece.encrypt(
                plaintext,
                private_key=ec.generate_private_key(ec.SECP256R1()),
                dh=p256dh,
                auth_secret=auth,
                version="aes128gcm",
            )
        except (ValueError, http_ece.ECEException):
            raise InvalidAddressError(
                "webpush: unusable subscription keys", code="bad_keys"
            ) from None
        headers = {
            "Authorization": self._vapid(endpoint),
            "TTL": str(self.config.ttl),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Urgency": self.config.urgency,
            "Topic": topic(message.idempotency_key),
        }
        return self._post(endpoint, body, headers)

    @quick_retry()
    def _post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> SendResult:
        with map_http_errors(self.name):
            response = self._client.post(
                endpoint, content=body, headers=headers, timeout=self._timeout
            )
        status = response.status_code
        if status in (404, 410):
            raise InvalidAddressError(f"webpush: HTTP {status}", code=str(status))
        if status in (400, 401, 403, 413):
            raise ProviderConfigError(f"webpush: HTTP {status}", code=str(status))
        if status == 429:
            raise NotSentError(
                "webpush: HTTP 429", code="429", retry_after=retry_after_seconds(response)
            )
        raise_for_status_class(self.name, response)  # 503 not sent, other 5xx unknown
        if not response.is_success:  # a redirect: endpoints are capability URLs, never moved
            raise ProviderConfigError(f"webpush: HTTP {status}", code=str(status))
        location = response.headers.get("location")
        return SendResult(provider_message_id=location or f"webpush-{uuid.uuid4().hex}")

    def _subscription(self, recipient: str) -> tuple[str, bytes, bytes]:
        try:
            sub = json.loads(recipient)
            endpoint, keys = sub["endpoint"], sub["keys"]
            p256dh, auth = b64url_decode(keys["p256dh"]), b64url_decode(keys["auth"])
        except (ValueError, KeyError, TypeError):
            raise InvalidAddressError(
                "webpush: malformed subscription", code="bad_subscription"
            ) from None
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        schemes = ("https", "http") if self.config.allow_insecure_endpoints else ("https",)
        try:
            port_ok = parts is not None and (parts.port or 1) > 0
        except ValueError:
            port_ok = False
        if parts is None or parts.scheme not in schemes or not parts.hostname or not port_ok:
            raise InvalidAddressError("webpush: unusable endpoint", code="bad_endpoint")
        if len(p256dh) != 65 or len(auth) != 16:
            raise InvalidAddressError("webpush: unusable subscription keys", code="bad_keys")
        return endpoint, p256dh, auth

    def _check_target(self, endpoint: str) -> None:
        """Refuse endpoints that resolve to any non-public address (no request is made)."""
        if self.config.allow_private_endpoints:
            return
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = self._resolve(host, parts.port or 443)
            except (OSError, UnicodeError):
                raise NotSentError("webpush: endpoint host did not resolve", code="dns") from None
        if not addresses or any(not self._permitted(a) for a in addresses):
            raise InvalidAddressError(
                "webpush: endpoint is not a public address", code="forbidden_endpoint"
            )

    def _permitted(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 zone id
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self._allowed):
            return True
        return ip.is_global and not ip.is_multicast

    def _vapid(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        host = parts.netloc.rpartition("@")[2]  # the origin never carries credentials
        claims = {
            "aud": f"{parts.scheme}://{host}",
            "exp": int(self._clock()) + VAPID_LIFETIME,
            "sub": self.config.vapid_subject,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256")
        return f"vapid t={token}, k={self._public}"


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _payload(message: Message) -> dict[str, Any]:
    payload: dict[str, Any] = {"title": message.title} if message.title else {}
    payload["body"] = message.text
    payload["data"] = dict(message.data)
    return payload


def topic(idempotency_key: str) -> str:
    """A ``Topic`` for one attempt: 32 base64url characters, stable across resends."""
    return b64url(hashlib.sha256(idempotency_key.encode()).digest())[:32]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected a string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """Load a VAPID key as PEM, base64url DER (py-vapid) or base64url raw scalar."""
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key: Any = load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text.strip())
            key = (
                ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
                if len(raw) == 32
                else load_der_private_key(raw, password=None)
            )
    except (ValueError, TypeError):
        raise ProviderConfigError("webpush: unreadable vapid_private_key", code="bad_key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ProviderConfigError("webpush: vapid_private_key is not P-256", code="bad_key")
    return key
