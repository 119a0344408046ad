"""Small helpers shared by the messenger providers (Telegram, WhatsApp, Viber, VK).

Everything here is about the two boundaries those providers share: the request
timeout of one send, and reading a callback safely (JSON bodies, secrets compared
in constant time, provider timestamps).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

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
