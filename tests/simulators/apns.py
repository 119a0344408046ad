"""APNs simulator: token-based provider API over HTTP/2 (serve it with ``serve_h2``).

``POST /3/device/{token}`` answers HTTP/1.1 with 505: APNs is HTTP/2 only. It
then checks, in Apple's terms (``{"reason": ...}`` bodies, ``apns-id`` header on
every answer):

* ``authorization: bearer <JWT>``: absent 403 ``MissingProviderToken``; not ES256,
  wrong ``kid``/``iss`` or bad signature 403 ``InvalidProviderToken``; ``iat``
  over 60 min before the simulator's clock 403 ``ExpiredProviderToken``;
* ``apns-topic`` required (400 ``MissingTopic``; another app's 400 ``TopicDisallowed``),
  ``apns-push-type``, ``apns-priority``, ``apns-id`` (lower-case UUID),
  ``apns-collapse-id`` (<= 64 bytes), a body of 1..4096 bytes;
* the device token: not 64+ hex 400 ``BadDeviceToken``, else a scenario.

Scenario tokens are ``token_for(name)`` for a name in :data:`FAILURES` or ``hang``
(never answers); any other hex token is accepted: 200, empty body, ``apns-id``
echoed (or a new UUID), the notification appended to ``app.sent``.
``app.apns.records`` are the requests with the HTTP version they arrived over.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import Recorded, SimState, Simulator, hang

#: scenario name -> (HTTP status, reason)
FAILURES: dict[str, tuple[int, str]] = {
    "BadDeviceToken": (400, "BadDeviceToken"),
    "DeviceTokenNotForTopic": (400, "DeviceTokenNotForTopic"),
    "Unregistered": (410, "Unregistered"),
    "TooManyRequests": (429, "TooManyRequests"),
    "InternalServerError": (500, "InternalServerError"),
    "ServiceUnavailable": (503, "ServiceUnavailable"),
}
PUSH_TYPES = {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm"}
_HEX_TOKEN = re.compile(r"[0-9a-fA-F]{64,}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def token_for(scenario: str) -> str:
    """A 64-hex device token that triggers ``scenario`` (any other name: accepted)."""
    return hashlib.sha256(scenario.encode()).hexdigest()


@dataclass(frozen=True)
class SimApnsKey:
    """A throwaway ``.p8`` signing key: the PEM for the client, the public key for the sim."""

    team_id: str
    key_id: str
    private_key_pem: str = field(repr=False)
    public_key: ec.EllipticCurvePublicKey


@functools.cache
def _ec_key(seed: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_key(team_id: str = "TEAM123456", key_id: str = "KEY1234567", seed: int = 0) -> SimApnsKey:
    """The same key for the same ``seed`` within a test session."""
    key = _ec_key(seed)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SimApnsKey(team_id, key_id, pem, key.public_key())


@dataclass
class ApnsRecorded(Recorded):
    http_version: str = ""  #: as the ASGI scope says: "1.1" or "2"

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "http_version": self.http_version}


@dataclass
class ApnsState(SimState):
    key: SimApnsKey | None = None
    topic: str | None = None  #: the only topic the key may push to, if set
    clock: Callable[[], float] = time.time

    @property
    def records(self) -> list[ApnsRecorded]:
        return [r for r in self.requests if isinstance(r, ApnsRecorded)]


class ApnsSimulator(Simulator):
    apns: ApnsState


def create_app(
    key: SimApnsKey, *, topic: str | None = None, clock: Callable[[], float] = time.time
) -> ApnsSimulator:
    scenarios = {token_for(name): name for name in [*FAILURES, "hang"]}
    state = ApnsState(scenarios=scenarios, key=key, topic=topic, clock=clock)

    async def push(request: Request) -> Response:
        entry = ApnsRecorded(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            http_version=str(request.scope.get("http_version")),
        )
        state.requests.append(entry)
        apns_id = entry.headers.get("apns-id") or str(uuid.uuid4())
        if entry.http_version != "2":
            return _reason(505, "HTTPVersionNotSupported", apns_id)
        failure = _auth_failure(state, entry.headers.get("authorization")) or _header_failure(
            state, entry
        )
        if failure:
            return _reason(*failure, apns_id)
        device = request.path_params["token"]
        scenario = state.scenario(device)
        if scenario == "hang":
            return await hang(state, request)
        if scenario in FAILURES:
            return _reason(*FAILURES[scenario], apns_id)
        state.sent.append(
            {
                "device_token": device,
                "apns_id": apns_id,
                "collapse_id": entry.headers.get("apns-collapse-id"),
                "payload": entry.json(),
                "http_version": entry.http_version,
            }
        )
        return Response(status_code=200, headers={"apns-id": apns_id})

    app = ApnsSimulator([Route("/3/device/{token}", push, methods=["POST"])], state)
    app.apns = state
    return app


def _auth_failure(state: ApnsState, authorization: str | None) -> tuple[int, str] | None:
    assert state.key is not None
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return 403, "MissingProviderToken"
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(
            token,
            state.key.public_key,
            algorithms=["ES256"],
            issuer=state.key.team_id,
            options={"require": ["iss", "iat"], "verify_iat": False},  # iat: our clock below
        )
    except jwt.PyJWTError:
        return 403, "InvalidProviderToken"
    if header.get("kid") != state.key.key_id:
        return 403, "InvalidProviderToken"
    if state.clock() - int(claims["iat"]) > 3600:
        return 403, "ExpiredProviderToken"
    return None


def _header_failure(state: ApnsState, entry: ApnsRecorded) -> tuple[int, str] | None:
    headers = entry.headers
    topic = headers.get("apns-topic")
    checks = [
        (not topic, 400, "MissingTopic"),
        (state.topic is not None and topic != state.topic, 400, "TopicDisallowed"),
        (headers.get("apns-push-type", "alert") not in PUSH_TYPES, 400, "InvalidPushType"),
        (headers.get("apns-priority", "10") not in {"1", "5", "10"}, 400, "BadPriority"),
        (not _UUID.fullmatch(headers.get("apns-id", str(uuid.uuid4()))), 400, "BadMessageId"),
        (len(headers.get("apns-collapse-id", "").encode()) > 64, 400, "BadCollapseId"),
        (not entry.body, 400, "PayloadEmpty"),
        (len(entry.body) > 4096, 413, "PayloadTooLarge"),
        (not _HEX_TOKEN.fullmatch(entry.path.rsplit("/", 1)[-1]), 400, "BadDeviceToken"),
    ]
    return next(((status, reason) for failed, status, reason in checks if failed), None)


def _reason(status: int, reason: str, apns_id: str) -> Response:
    body: dict[str, Any] = {"reason": reason}
    if status == 410:
        body["timestamp"] = int(time.time() * 1000)
    return JSONResponse(body, status_code=status, headers={"apns-id": apns_id})
