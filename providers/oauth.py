"""Google service-account access tokens: the RFC 7523 JWT-bearer grant, cached.

A :class:`ServiceAccount` is the parsed JSON key file. :class:`AccessTokens`
signs an RS256 assertion with its private key, trades it at ``token_uri`` for an
OAuth2 access token through the provider's injected ``httpx.Client``, and
reuses that token until shortly before it expires. A failure here happens
before anything was sent, so every transport error is :class:`NotSentError`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from providers.errors import NotSentError, ProviderConfigError
from providers.http import retry_after_seconds

#: Google's token endpoint, used when the key file names none.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
#: RFC 7523 §2.1 grant type.
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Google accepts assertions valid for at most one hour.
ASSERTION_LIFETIME = 3600
#: Refresh this long before expiry, so a token never expires in flight.
REFRESH_MARGIN = 240.0


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a Google service-account JSON key that the grant needs."""

    client_email: str
    private_key: RSAPrivateKey = field(repr=False)
    token_uri: str = GOOGLE_TOKEN_URI
    project_id: str | None = None

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        """Parse a key file; raise :class:`ProviderConfigError` naming only the problem."""
        try:
            info = json.loads(text)
        except ValueError:
            raise ProviderConfigError("service account: not JSON", code="bad_key") from None
        if not isinstance(info, dict) or info.get("type", "service_account") != "service_account":
            raise ProviderConfigError("service account: not a service-account key", code="bad_key")
        email, pem = info.get("client_email"), info.get("private_key")
        if not isinstance(email, str) or not isinstance(pem, str):
            raise ProviderConfigError(
                "service account: client_email or private_key missing", code="bad_key"
            )
        try:
            key = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise ProviderConfigError(
                "service account: unreadable private_key", code="bad_key"
            ) from None
        if not isinstance(key, RSAPrivateKey):
            raise ProviderConfigError("service account: private_key is not RSA", code="bad_key")
        return cls(
            client_email=email,
            private_key=key,
            token_uri=str(info.get("token_uri") or GOOGLE_TOKEN_URI),
            project_id=info.get("project_id"),
        )


class AccessTokens:
    """A thread-safe cache of one access token for one service account and scope."""

    def __init__(
        self,
        account: ServiceAccount,
        client: httpx.Client,
        *,
        scope: str,
        token_uri: str,
        timeout: httpx.Timeout,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        self._client = client
        self._scope = scope
        self._token_uri = token_uri
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def get(self) -> str:
        """The cached token, or a new one if it is missing or about to expire."""
        # One lock around the fetch: concurrent senders wait for one grant
        # instead of each asking Google for a token.
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, lifetime = self._fetch()
                self._refresh_at = self._clock() + max(0.0, lifetime - REFRESH_MARGIN)
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after the API refused it (unless another thread replaced it)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _assertion(self) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._account.client_email,
            "scope": self._scope,
            "aud": self._token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        return jwt.encode(claims, self._account.private_key, algorithm="RS256")

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": JWT_BEARER, "assertion": self._assertion()}
        try:
            response = self._client.post(self._token_uri, data=form, timeout=self._timeout)
        except httpx.TransportError as exc:
            raise NotSentError(
                f"oauth: token request failed ({type(exc).__name__})", code="token_unavailable"
            ) from exc
        body = _json_object(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise NotSentError(
                f"oauth: token endpoint HTTP {response.status_code}",
                code="token_unavailable",
                retry_after=retry_after_seconds(response),
            )
        if response.status_code >= 400:
            error = str(body.get("error") or response.status_code)
            raise ProviderConfigError(f"oauth: token grant refused ({error})", code=error)
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise NotSentError("oauth: malformed token response", code="token_malformed")
        return token, float(lifetime)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
