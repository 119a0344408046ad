"""Per-attempt receipt tokens: an app confirms a push without holding an API key."""

from __future__ import annotations

import hashlib
import hmac


def receipt_token(secret: str, attempt_id: str) -> str:
    return hmac.new(secret.encode(), f"receipt:{attempt_id}".encode(), hashlib.sha256).hexdigest()[
        :32
    ]


def check_receipt_token(secret: str, attempt_id: str, token: str) -> bool:
    return hmac.compare_digest(receipt_token(secret, attempt_id), token)
