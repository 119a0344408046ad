"""A Web Push service (RFC 8030) that checks VAPID (RFC 8292) and decrypts (RFC 8291).

``app.webpush.subscribe(base_url, sub_id)`` plays the browser: it makes a P-256
key pair and an auth secret and returns a :class:`SimSubscription` whose
``as_json()`` is the ``PushSubscription`` a page would post to our API, with the
endpoint ``{base_url}/push/{sub_id}``.

``POST /push/{sub_id}`` requires ``TTL``, ``Content-Encoding: aes128gcm`` and
``Authorization: vapid t=<ES256 JWT>, k=<key>`` whose ``aud`` is this origin,
``exp`` at most 24 h ahead and ``sub`` a mailto:/https: contact (else 401; a
``k`` other than the one the subscription was made with: 403). It decrypts the
body with the subscription's private key and stores the plaintext in
``app.sent``; a message with the same ``Topic`` as an undelivered one replaces
it. Answers 201 with ``Location: {origin}/msg/<n>``. Other answers: unknown
subscription 404, body over 4096 bytes 413, undecryptable body 400, and by
``sub_id`` prefix: ``gone`` 410 (autopush body), ``ratelimited`` 429 with
``Retry-After``, ``unavailable`` 503, ``hang`` never answers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import SimState, Simulator, hang, record

_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_URGENCIES = {"very-low", "low", "normal", "high"}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SimSubscription:
    """A browser's push subscription, with the private half the browser keeps."""

    sub_id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth: bytes = field(repr=False)
    application_server_key: str | None = None  #: b64url VAPID public key it is bound to

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        return b64url(point)

    def as_json(self) -> str:
        keys = {"p256dh": self.p256dh, "auth": b64url(self.auth)}
        return json.dumps({"endpoint": self.endpoint, "expirationTime": None, "keys": keys})


@dataclass
class WebPushState(SimState):
    subscriptions: dict[str, SimSubscription] = field(default_factory=dict)
    retry_after: int = 30

    def subscribe(
        self, base_url: str, sub_id: str, *, application_server_key: str | None = None
    ) -> SimSubscription:
        sub = SimSubscription(
            sub_id=sub_id,
            endpoint=f"{base_url}/push/{sub_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=os.urandom(16),
            application_server_key=application_server_key,
        )
        self.subscriptions[sub_id] = sub
        return sub


class WebPushSimulator(Simulator):
    webpush: WebPushState


def create_app(*, retry_after: int = 30) -> WebPushSimulator:
    state = WebPushState(scenarios={}, retry_after=retry_after)

    async def push(request: Request) -> Response:
        entry = await record(state, request)
        sub = state.subscriptions.get(request.path_params["sub_id"])
        if sub is None:
            return _autopush(404, 102, "Not Found", "Request did not validate invalid token")
        origin = f"{request.url.scheme}://{request.url.netloc}"
        problem = _check_headers(entry.headers, origin, sub)
        if problem:
            return problem
        if len(entry.body) > 4096:
            return _autopush(413, 104, "Payload Too Large", "Body is too large")
        if sub.sub_id.startswith("hang"):
            return await hang(state, request)
        if sub.sub_id.startswith("gone"):
            return _autopush(410, 106, "Gone", "Request did not validate expired subscription")
        if sub.sub_id.startswith(("ratelimited", "unavailable")):
            status = 429 if sub.sub_id.startswith("ratelimited") else 503
            response = _autopush(status, 201 if status == 429 else 202, "Try later", "")
            response.headers["Retry-After"] = str(state.retry_after)
            return response
        try:
            plaintext = http_ece.decrypt(
                entry.body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
            )
        except (http_ece.ECEException, ValueError):
            return _autopush(400, 110, "Bad Request", "Could not decrypt the body")
        return _store(state, sub, entry.headers, plaintext, origin)

    app = WebPushSimulator([Route("/push/{sub_id}", push, methods=["POST"])], state)
    app.webpush = state
    return app


def _store(
    state: WebPushState, sub: SimSubscription, headers: dict[str, str], plain: bytes, origin: str
) -> Response:
    topic = headers.get("topic")
    message = {
        "id": f"{len(state.requests)}",
        "sub_id": sub.sub_id,
        "payload": json.loads(plain),
        "ttl": int(headers["ttl"]),
        "urgency": headers.get("urgency", "normal"),
        "topic": topic,
    }
    same = [
        i
        for i, m in enumerate(state.sent)
        if topic and (m["sub_id"], m["topic"]) == (sub.sub_id, topic)
    ]
    if same:
        state.sent[same[0]] = message  # RFC 8030 §5.4: the newer message replaces it
    else:
        state.sent.append(message)
    return Response(status_code=201, headers={"Location": f"{origin}/msg/{message['id']}"})


def _check_headers(headers: dict[str, str], origin: str, sub: SimSubscription) -> Response | None:
    if not headers.get("ttl", "").isdigit():
        return _autopush(400, 111, "Bad Request", "Missing TTL header")
    if headers.get("content-encoding") != "aes128gcm":
        return _autopush(400, 110, "Bad Request", "Unknown Content-Encoding")
    if "urgency" in headers and headers["urgency"] not in _URGENCIES:
        return _autopush(400, 110, "Bad Request", "Invalid Urgency")
    if "topic" in headers and not _TOPIC.match(headers["topic"]):
        return _autopush(400, 110, "Bad Request", "Invalid Topic")
    vapid = _vapid_params(headers.get("authorization", ""))
    if vapid is None:
        return _autopush(401, 109, "Unauthorized", "Missing or malformed VAPID header")
    token, key = vapid
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        claims = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            audience=origin,
            options={"require": ["aud", "exp", "sub"]},
        )
    except (ValueError, jwt.PyJWTError):
        return _autopush(401, 109, "Unauthorized", "Invalid VAPID token")
    if int(claims["exp"]) > time.time() + 24 * 3600:
        return _autopush(401, 109, "Unauthorized", "VAPID exp too far in the future")
    if not str(claims["sub"]).startswith(("mailto:", "https:")):
        return _autopush(401, 109, "Unauthorized", "VAPID sub must be mailto: or https:")
    if sub.application_server_key and key != sub.application_server_key:
        return _autopush(403, 109, "Forbidden", "VAPID key does not match the subscription")
    return None


def _vapid_params(header: str) -> tuple[str, str] | None:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "vapid":
        return None
    params: dict[str, Any] = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        params[name] = value
    if not params.get("t") or not params.get("k"):
        return None
    return str(params["t"]), str(params["k"])


def _autopush(status: int, errno: int, error: str, message: str) -> JSONResponse:
    """Mozilla autopush's error body."""
    body = {"code": status, "errno": errno, "error": error, "message": message}
    return JSONResponse(body, status_code=status)
