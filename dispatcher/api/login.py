"""Logging in to the stats pages with an API key: a signed, HttpOnly session cookie.

A browser cannot add ``Authorization: Bearer`` to a link it follows, so the pages also
accept a cookie set by the login form. The cookie holds no key: it is
``<key id>.<expiry>.<signature>``, signed with HMAC-SHA256 keyed by that API key's
SHA-256 digest, which only the server holds. Removing a key from ``CASCADE_API_KEYS``
ends its sessions; a session lasts :data:`LIFETIME`. The cookie is ``HttpOnly``
(scripts cannot read it), ``SameSite=Lax`` (other sites' forms do not carry it),
limited to ``/stats``, and ``Secure`` when the page was requested over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from fastapi import Request, Response

from dispatcher.api.deps import KeyRing, authenticate
from dispatcher.runtime import Runtime

COOKIE = "cascade_stats"
PATH = "/stats"
LIFETIME = timedelta(hours=12)
#: Where a login may send the browser back to: the stats pages only (no open redirect).
HOME = "/stats"


def _signature(digest: str, key_id: str, expires: int) -> str:
    message = f"{key_id}.{expires}".encode()
    return hmac.new(digest.encode(), message, hashlib.sha256).hexdigest()


def session_token(ring: KeyRing, key_id: str, now: datetime) -> str:
    digest = ring.digest_of(key_id)
    if digest is None:
        raise ValueError("unknown key id")
    expires = int((now + LIFETIME).timestamp())
    return f"{key_id}.{expires}.{_signature(digest, key_id, expires)}"


def session_key(ring: KeyRing, token: str, now: datetime) -> str | None:
    """The key id of a valid, unexpired session token, else None."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    key_id, expires, signature = parts[0], int(parts[1]), parts[2]
    digest = ring.digest_of(key_id)
    if digest is None or expires <= now.timestamp():
        return None
    if not hmac.compare_digest(_signature(digest, key_id, expires), signature):
        return None
    return key_id


def viewer(request: Request, runtime: Runtime) -> str | None:
    """Who is looking: the API key id from ``Authorization: Bearer`` or the session cookie."""
    key_id = authenticate(request)
    if key_id is not None:
        return key_id
    token = request.cookies.get(COOKIE)
    ring: KeyRing = request.app.state.keyring
    return session_key(ring, token, runtime.now()) if token else None


def safe_next(value: str | None) -> str:
    """A path on the stats pages to go back to after logging in; anything else is HOME."""
    if value and value.startswith(PATH) and not value.startswith("//") and "\\" not in value:
        return value
    return HOME


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body).items()}


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(LIFETIME.total_seconds()),
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="lax")
