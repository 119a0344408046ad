"""Dependencies: the runtime, a database session, and API-key authentication."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from dispatcher.api.problems import Problem
from dispatcher.runtime import Runtime


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency
# in its thread pool, a thread hop per request each (measured: ~10% of the API's CPU).
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with Session(runtime.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """API keys held only as SHA-256 digests; compared in constant time."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [key_digest(k) for k in keys]

    def identify(self, presented: str) -> str | None:
        """The key's id (first 12 hex of its digest) if valid, else None."""
        digest = key_digest(presented)
        match = None
        for known in self._digests:  # no early exit: timing does not reveal which key
            if hmac.compare_digest(known, digest):
                match = known
        return match[:12] if match else None

    def digest_of(self, key_id: str) -> str | None:
        """The full digest of the key with this id: the secret that signs its page logins."""
        found = [known for known in self._digests if hmac.compare_digest(known[:12], key_id)]
        return found[0] if len(found) == 1 else None


def authenticate(request: Request) -> str | None:
    """The API key id from ``Authorization: Bearer``, or None if absent/invalid."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    ring: KeyRing = request.app.state.keyring
    return ring.identify(token.strip())


#: Documents the scheme in OpenAPI (Swagger's "Authorize"); the check is :func:`require_key`,
#: which answers problem JSON rather than FastAPI's own 403.
bearer = HTTPBearer(auto_error=False, description="An API key from CASCADE_API_KEYS")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


async def require_key(request: Request, _: BearerDep) -> str:
    key_id = authenticate(request)
    if key_id is None:
        raise Problem(
            401,
            "Unauthorized",
            "send Authorization: Bearer <api key>",
            headers={"WWW-Authenticate": 'Bearer realm="cascade"'},
        )
    return key_id


ApiKeyDep = Annotated[str, Depends(require_key)]
