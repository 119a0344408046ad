"""Mailgun simulator: ``POST /v3/{domain}/messages`` and signed event callbacks.

Sending needs HTTP Basic ``api:<api_key>`` (else ``401 Forbidden``) and a known
domain (else 404 ``{"message": "Domain not found: ..."}``); ``from`` and ``to``
are required and one of ``text``/``html`` (else 400). Success is
``{"id": "<...@domain>", "message": "Queued. Thank you."}``. Scenario by the
``to`` address's prefix: ``invalid`` 400 "'to' parameter is not a valid
address", ``ratelimited`` 429, ``unavailable`` 503, ``error`` 500, ``hang``
never answers.

Control API: ``GET /_sim/requests``; ``POST /_sim/callback`` with ``{"url",
"event", "message_id", "reference", "severity"?, "code"?}`` (``message_id`` and
``reference`` default to the last accepted message) POSTs a correctly signed
event to ``url`` and answers ``{"status_code", "body"}`` from the receiver.
:func:`signed_event` builds the same body for tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import SimState, Simulator, compact, deliver, hang, record

#: ``to`` prefix -> (HTTP status, message)
FAILURES: dict[str, tuple[int, str]] = {
    "invalid": (400, "'to' parameter is not a valid address. please check documentation"),
    "ratelimited": (429, "Too many requests"),
    "unavailable": (503, "Service Unavailable"),
    "error": (500, "Internal Server Error"),
}
#: What a permanent / temporary failure event carries.
BOUNCES = {
    "permanent": (550, "5.1.1 The email account that you tried to reach does not exist."),
    "temporary": (452, "4.2.2 The email account that you tried to reach is over quota."),
}


def signed_event(
    signing_key: str,
    *,
    event: str,
    message_id: str,
    reference: str | None,
    timestamp: int | None = None,
    token: str | None = None,
    severity: str | None = None,
    code: int | None = None,
    recipient: str = "user@example.test",
) -> dict[str, Any]:
    """An events-webhook body exactly as Mailgun signs it."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = token or secrets.token_hex(25)
    signature = hmac.new(
        signing_key.encode(), f"{stamp}{nonce}".encode(), hashlib.sha256
    ).hexdigest()
    data: dict[str, Any] = {
        "event": event,
        "id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
        "timestamp": float(stamp) + 0.25,
        "recipient": recipient,
        "message": {"headers": {"message-id": message_id.strip("<>")}},
        "user-variables": {"cascade_reference": reference} if reference else {},
    }
    if event == "failed":
        data["severity"] = severity or "permanent"
        bounce_code, text = BOUNCES[data["severity"]]
        data["reason"] = "bounce" if data["severity"] == "permanent" else "generic"
        data["delivery-status"] = {
            "code": code or bounce_code,
            "message": text,
            "description": "",
            "attempt-no": 1,
        }
    return {
        "signature": {"timestamp": stamp, "token": nonce, "signature": signature},
        "event-data": data,
    }


@dataclass
class MailgunState(SimState):
    domain: str = "mg.example.test"
    api_key: str = "key-sim"
    signing_key: str = "signing-key-sim"


class MailgunSimulator(Simulator):
    mailgun: MailgunState


def create_app(
    *,
    domain: str = "mg.example.test",
    api_key: str = "key-sim",
    signing_key: str = "signing-key-sim",
) -> MailgunSimulator:
    state = MailgunState(scenarios={}, domain=domain, api_key=api_key, signing_key=signing_key)
    expected_auth = "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode()

    async def messages(request: Request) -> Response:
        entry = await record(state, request)
        if not hmac.compare_digest(entry.headers.get("authorization", ""), expected_auth):
            return PlainTextResponse("Forbidden", status_code=401)
        if request.path_params["domain"] != state.domain:
            return _message(404, f"Domain not found: {request.path_params['domain']}")
        form = entry.form()
        for name in ("from", "to"):
            if not form.get(name):
                return _message(400, f"'{name}' parameter is missing")
        if not form.get("text") and not form.get("html"):
            return _message(400, "Need at least one of 'text', 'html' or 'template' parameters")
        recipient = form["to"]
        if recipient.startswith("hang"):
            return await hang(state, request)
        failure = next((v for p, v in FAILURES.items() if recipient.startswith(p)), None)
        if failure:
            return _message(*failure)
        stamp, serial, nonce = (
            time.strftime("%Y%m%d%H%M%S"),
            len(state.sent) + 1,
            secrets.token_hex(4),
        )
        message_id = f"<{stamp}.{serial}.{nonce.upper()}@{state.domain}>"
        state.sent.append({"id": message_id, "form": form})
        return JSONResponse({"id": message_id, "message": "Queued. Thank you."})

    async def callback(request: Request) -> Response:
        spec = json.loads(await request.body())
        last: dict[str, Any] = state.sent[-1] if state.sent else {"id": "", "form": {}}
        body = signed_event(
            state.signing_key,
            event=spec["event"],
            message_id=spec.get("message_id") or last["id"],
            reference=spec.get("reference") or last["form"].get("v:cascade_reference"),
            severity=spec.get("severity"),
            code=spec.get("code"),
        )
        return await deliver(spec["url"], {"Content-Type": "application/json"}, compact(body))

    app = MailgunSimulator(
        [
            Route("/v3/{domain}/messages", messages, methods=["POST"]),
            Route("/_sim/callback", callback, methods=["POST"]),
        ],
        state,
    )
    app.mailgun = state
    return app


def _message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)
