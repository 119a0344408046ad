"""FCM HTTP v1 simulator, with the Google OAuth2 token endpoint it needs.

``POST /token`` implements the RFC 7523 JWT-bearer grant: it verifies the RS256
assertion with the test service account's public key (``iss``, ``aud`` = this
URL, ``scope``, lifetime <= 1 h) and issues ``{"access_token", "expires_in",
"token_type": "Bearer"}``; errors as Google's ``{"error", "error_description"}``.

``POST /v1/projects/{project}/messages:send`` requires a live Bearer token (else
401 ``UNAUTHENTICATED``), the right project (else 403 ``PERMISSION_DENIED``),
string ``data`` values (else 400 with a ``google.rpc.BadRequest`` detail) and
answers ``{"name": "projects/<p>/messages/0:<n>%<hex>"}``. Errors are google.rpc
``Status`` objects with an ``FcmError`` detail. Scenario by token prefix:

=================  ====  =========================  ==================================
token starts with  HTTP  errorCode                  notes
=================  ====  =========================  ==================================
``unregistered``   404   ``UNREGISTERED``
``invalid``        400   ``INVALID_ARGUMENT``       "registration token is not valid"
``mismatch``       403   ``SENDER_ID_MISMATCH``
``quota``          429   ``QUOTA_EXCEEDED``         ``Retry-After: <retry_after>``
``unavailable``    503   ``UNAVAILABLE``            ``Retry-After: <retry_after>``
``internal``       500   ``INTERNAL``
``thirdparty``     401   ``THIRD_PARTY_AUTH_ERROR``
``hang``           --    --                         never answers
=================  ====  =========================  ==================================

Control: ``GET /_sim/requests``; ``app.fcm.revoke_tokens()`` makes every issued
token invalid (as if it expired early).
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import Recorded, SimState, Simulator, hang, record

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

#: token prefix -> (HTTP status, canonical status, FCM errorCode, message)
FAILURES: dict[str, tuple[int, str, str, str]] = {
    "unregistered": (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    "invalid": (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "mismatch": (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
    "quota": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded."),
    "unavailable": (503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
    "internal": (500, "INTERNAL", "INTERNAL", "Internal error encountered."),
    "thirdparty": (
        401,
        "UNAUTHENTICATED",
        "THIRD_PARTY_AUTH_ERROR",
        "Auth error from APNS or Web Push Service",
    ),
}


@dataclass(frozen=True)
class SimServiceAccount:
    """A throwaway service account: its key file for the client, its public key for the sim."""

    project_id: str
    client_email: str
    private_key_pem: str = field(repr=False)
    public_key: rsa.RSAPublicKey

    def key_json(self, token_uri: str) -> str:
        """The JSON key file, as downloaded from the Google Cloud console."""
        return json.dumps(
            {
                "type": "service_account",
                "project_id": self.project_id,
                "private_key_id": "0123456789abcdef",
                "private_key": self.private_key_pem,
                "client_email": self.client_email,
                "client_id": "100000000000000000000",
                "token_uri": token_uri,
            }
        )


@functools.cache
def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_service_account(project_id: str = "cascade-sim") -> SimServiceAccount:
    key = _rsa_key()  # one key per test session: generating RSA keys is slow
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SimServiceAccount(
        project_id=project_id,
        client_email=f"cascade@{project_id}.iam.gserviceaccount.com",
        private_key_pem=pem,
        public_key=key.public_key(),
    )


@dataclass
class FcmState(SimState):
    account: SimServiceAccount | None = None
    token_lifetime: int = 3599
    retry_after: int = 30
    tokens: set[str] = field(default_factory=set)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    @property
    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/token"]

    @property
    def sends(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/messages:send")]


class FcmSimulator(Simulator):
    fcm: FcmState


def create_app(
    account: SimServiceAccount, *, token_lifetime: int = 3599, retry_after: int = 30
) -> FcmSimulator:
    state = FcmState(
        scenarios={}, account=account, token_lifetime=token_lifetime, retry_after=retry_after
    )

    async def token(request: Request) -> Response:
        entry = await record(state, request)
        form = entry.form()
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                account.public_key,
                algorithms=["RS256"],
                audience=str(request.url),
                issuer=account.client_email,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        if SCOPE not in str(claims["scope"]).split():
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience.")
        access = f"ya29.sim-{secrets.token_urlsafe(12)}"
        state.tokens.add(access)
        return JSONResponse(
            {"access_token": access, "expires_in": state.token_lifetime, "token_type": "Bearer"}
        )

    async def send(request: Request) -> Response:
        entry = await record(state, request)
        bearer = entry.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in state.tokens:
            return _rpc_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        project = request.path_params["project"]
        if project != account.project_id:
            return _rpc_error(403, "PERMISSION_DENIED", "Permission denied on resource project.")
        try:
            message = entry.json()["message"]
            device = str(message["token"])
        except (ValueError, KeyError, TypeError):
            return _rpc_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        violation = _data_violation(message.get("data", {}))
        if violation:
            return _rpc_error(
                400,
                "INVALID_ARGUMENT",
                violation,
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "message.data", "description": violation}],
                    }
                ],
            )
        prefix = next((p for p in FAILURES if device.startswith(p)), None)
        if device.startswith("hang"):
            return await hang(state, request)
        if prefix is not None:
            return _scripted(prefix, state.retry_after)
        state.sent.append(message)
        name = f"projects/{project}/messages/0:{len(state.sent)}%{secrets.token_hex(8)}"
        return JSONResponse({"name": name})

    app = FcmSimulator(
        [
            Route("/token", token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", send, methods=["POST"]),
        ],
        state,
    )
    app.fcm = state
    return app


def _data_violation(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "Invalid value at 'message.data' (type.googleapis.com/google.protobuf.Map)"
    for index, value in enumerate(data.values()):
        if not isinstance(value, str):
            return f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {value}"
    return None


def _scripted(prefix: str, retry_after: int) -> Response:
    status, canonical, code, text = FAILURES[prefix]
    response = _rpc_error(status, canonical, text, [{"@type": FCM_ERROR, "errorCode": code}])
    if status in (429, 503):
        response.headers["Retry-After"] = str(retry_after)
    return response


def _rpc_error(
    status: int, canonical: str, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message, "status": canonical}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)
