"""WhatsApp Cloud API simulator: ``POST /v{N}/{phone_number_id}/messages`` as Graph answers it.

Requires ``Authorization: Bearer <access_token>`` (else 401, Graph code 190), the
configured ``phone_number_id`` (else 400, code 100) and a well-formed body
(``messaging_product: whatsapp``, ``to``, ``text.body`` or ``template.name`` and
``template.language.code``; else 400, code 100). Success is
``{"messaging_product", "contacts": [...], "messages": [{"id": "wamid..."}]}``.

Scenario per ``to`` (digits, no ``+``; extend with ``create_app(scenarios=...)``):

===============  =============  =============================================
to               scenario       answer
===============  =============  =============================================
``15550000403``  undeliverable  400, code 131026 "Message Undeliverable"
``15550000400``  not_allowed    400, code 131030 "Recipient phone number not in allowed list"
``15550000429``  throttled      429, code 130429 "Rate limit hit"
``15550000500``  unknown        500, code 131000 "Something went wrong"
``15550000503``  unavailable    503, code 2 "Service temporarily unavailable"
``15550000408``  hang           never answers (client read timeout)
anything         ok             200 with a new ``wamid``
===============  =============  =============================================

Control API: ``GET /_sim/requests``; ``POST /_sim/callback`` with ``{"url",
"message_id", "status": "sent|delivered|read|failed", "error_code"?,
"timestamp"?}`` POSTs a ``statuses`` webhook for a sent message (``failed``
defaults to code 131026), signed ``X-Hub-Signature-256: sha256=<hmac>`` with
the app secret, and answers ``{"status_code", "body"}``. ``POST /_sim/verify``
with ``{"url", "verify_token", "challenge"?}`` performs Meta's GET handshake.
:func:`status_callback` and :func:`sign` build the same payloads for tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import (
    SimState,
    Simulator,
    compact,
    deliver,
    hang,
    record,
    scenarios_with,
)

ACCESS_TOKEN = "wa-sim-access-token"
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "wa-sim-app-secret"
WABA_ID = "102290129340398"
DEFAULT_SCENARIOS = {
    "15550000403": "undeliverable",
    "15550000400": "not_allowed",
    "15550000429": "throttled",
    "15550000500": "unknown",
    "15550000503": "unavailable",
    "15550000408": "hang",
}
_ERRORS: dict[str, tuple[int, int, str]] = {
    "undeliverable": (400, 131026, "Message Undeliverable"),
    "not_allowed": (400, 131030, "Recipient phone number not in allowed list"),
    "throttled": (429, 130429, "Rate limit hit"),
    "unknown": (500, 131000, "Something went wrong"),
    "unavailable": (503, 2, "Service temporarily unavailable"),
}
_ERROR_TITLES = {131026: "Message undeliverable", 131047: "Re-engagement message"}


def graph_error(status: int, code: int, message: str, kind: str = "OAuthException") -> Response:
    body = {
        "error": {
            "message": f"(#{code}) {message}",
            "type": kind,
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": "AbCdEfGhIjK",
        }
    }
    return JSONResponse(body, status_code=status)


def sign(app_secret: str, body: bytes) -> dict[str, str]:
    """Headers Meta puts on a webhook POST with this exact body."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def status_callback(
    app_secret: str,
    *,
    message_id: str,
    status: str,
    recipient_id: str,
    timestamp: int,
    error_code: int | None = None,
    reference: str | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> tuple[dict[str, str], bytes]:
    """A signed ``statuses`` webhook for one message."""
    entry: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if status == "failed":
        code = error_code or 131026
        title = _ERROR_TITLES.get(code, "Error")
        entry["errors"] = [
            {"code": code, "title": title, "message": title, "error_data": {"details": title}}
        ]
    elif reference is not None:
        entry["biz_opaque_callback_data"] = reference
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "statuses": [entry],
    }
    update = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }
    body = compact(update)
    return sign(app_secret, body), body


def _invalid(body: Any) -> str | None:
    """Why a /messages body is refused (Graph code 100), or None."""
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required."
    if not body.get("to"):
        return "The parameter to is required."
    if body.get("type", "text") == "text":
        return (
            None
            if (body.get("text") or {}).get("body")
            else "The parameter text['body'] is required."
        )
    if body.get("type") == "template":
        template = body.get("template") or {}
        if template.get("name") and (template.get("language") or {}).get("code"):
            return None
        return "The parameter template['name'] and template['language'] are required."
    return "Unsupported message type."


def create_app(
    access_token: str = ACCESS_TOKEN,
    phone_number_id: str = PHONE_NUMBER_ID,
    app_secret: str = APP_SECRET,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
) -> Simulator:
    """A Cloud API simulator for one business phone number."""
    state = SimState(scenarios_with(DEFAULT_SCENARIOS, scenarios), hang_seconds)
    messages: dict[str, dict[str, Any]] = {}

    async def send(request: Request) -> Response:
        entry = await record(state, request)
        if not request.path_params["version"].startswith("v"):
            return graph_error(400, 2500, "Unknown path components", "OAuthException")
        if request.headers.get("authorization") != f"Bearer {access_token}":
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.path_params["pnid"] != phone_number_id:
            message = "Unsupported post request. Object does not exist."
            return graph_error(400, 100, message, "GraphMethodException")
        try:
            body = entry.json()
        except ValueError:
            body = None
        problem = _invalid(body)
        if problem:
            return graph_error(400, 100, problem)
        to = str(body["to"]).removeprefix("+")
        scenario = state.scenario(to)
        if scenario == "hang":
            return await hang(state, request)
        if scenario in _ERRORS:
            return graph_error(*_ERRORS[scenario])
        wamid = "wamid." + base64.b64encode(f"sim-{to}-{len(state.sent) + 1}".encode()).decode()
        sent = {"id": wamid, "to": to, "reference": body.get("biz_opaque_callback_data")}
        messages[wamid] = sent
        state.sent.append(sent)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": to}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    async def callback(request: Request) -> Response:
        spec = await request.json()
        sent = messages.get(spec["message_id"])
        if sent is None:
            return JSONResponse({"error": "no such message"}, 404)
        headers, body = status_callback(
            spec.get("app_secret", app_secret),
            message_id=sent["id"],
            status=spec.get("status", "delivered"),
            recipient_id=sent["to"],
            timestamp=int(spec.get("timestamp", time.time())),
            error_code=spec.get("error_code"),
            reference=sent["reference"],
            phone_number_id=phone_number_id,
        )
        return await deliver(spec["url"], headers, body)

    async def verify(request: Request) -> Response:
        spec = await request.json()
        query = {
            "hub.mode": "subscribe",
            "hub.verify_token": spec["verify_token"],
            "hub.challenge": spec.get("challenge", "1158201444"),
        }
        url = spec["url"] + ("&" if "?" in spec["url"] else "?") + urlencode(query)
        return await deliver(url, {}, b"", method="GET")

    routes = [
        Route("/_sim/callback", callback, methods=["POST"]),
        Route("/_sim/verify", verify, methods=["POST"]),
        Route("/{version}/{pnid}/messages", send, methods=["POST"]),
    ]
    return Simulator(routes, state)
