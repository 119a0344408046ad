"""Small helpers shared by the messenger providers (Telegram, WhatsApp, Viber, VK).

Everything here is about the boundaries those providers share: the request
timeout of one send, reading a callback safely (JSON bodies, secrets compared
in constant time, provider timestamps), and the MAC'd payload of a "Got it"
button (:class:`AckSigner`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

#: A confirmation button's payload: ``ack:<reference>:<mac>``.
ACK_PREFIX = "ack:"
#: base64url characters of the HMAC-SHA256 kept in a button payload (96 bits): short
#: enough for Telegram's 64-byte ``callback_data`` with a UUID reference.
ACK_MAC_CHARS = 16

#: Connecting is quick or the host is down (then nothing was sent): never wait long.
CONNECT_TIMEOUT = 3.0


def request_timeout(read: float) -> httpx.Timeout:
    """Per-request timeout: ``read`` from the provider config, a short connect timeout."""
    return httpx.Timeout(read, connect=min(CONNECT_TIMEOUT, read))


def json_object(content: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one.

    Python parses JSON integers exactly (no float detour), so 64-bit ids such as
    Viber's ``message_token`` survive intact. Deep nesting (``[[[...`` from anyone
    who can reach the webhook) raises RecursionError inside the parser: also None.
    """
    try:
        value = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def secret_matches(given: str | None, expected: SecretStr | None) -> bool:
    """Constant-time equality of a presented secret with the configured one."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def hmac_sha256_hex(key: SecretStr, body: bytes) -> str:
    """``hex(HMAC-SHA256(key, body))``, the signature Meta and Viber put on callbacks."""
    return hmac.new(key.get_secret_value().encode(), body, hashlib.sha256).hexdigest()


def from_unix(value: object, *, millis: bool = False) -> datetime | None:
    """A provider timestamp (seconds or milliseconds, number or digit string) as UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value) / (1000 if millis else 1)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def as_id(value: object) -> str | None:
    """A provider id (int or string, never bool/float) as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


@dataclass(frozen=True, slots=True)
class AckSigner:
    """MACs an attempt reference into a button payload, and verifies one coming back.

    A messenger client can send any payload, not only what a button carried, so a
    press confirms an attempt only if the payload's MAC is right for its reference:
    a forged payload, or one attempt's MAC on another reference, confirms nothing.
    ``purpose`` (``"<provider>-ack"``) keeps one provider's MACs from verifying on another.
    """

    key: bytes
    purpose: str

    @classmethod
    def first(cls, purpose: str, *secrets: SecretStr | None) -> AckSigner | None:
        """A signer with the first configured secret, None when there is none."""
        for secret in secrets:
            if secret is not None and secret.get_secret_value():
                return cls(secret.get_secret_value().encode(), purpose)
        return None

    def payload(self, reference: str) -> str:
        """``ack:<reference>:<mac>``."""
        return f"{ACK_PREFIX}{reference}:{self._mac(reference)}"

    def reference(self, payload: object) -> str | None:
        """The reference in ``payload`` if its MAC is right, else None."""
        if not isinstance(payload, str) or not payload.startswith(ACK_PREFIX):
            return None
        reference, _, mac = payload[len(ACK_PREFIX) :].rpartition(":")
        if not reference or not hmac.compare_digest(mac.encode(), self._mac(reference).encode()):
            return None
        return reference

    def _mac(self, reference: str) -> str:
        message = f"{self.purpose}:{reference}".encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:ACK_MAC_CHARS]
