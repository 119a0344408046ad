"""WhatsApp Cloud API simulator: ``POST /v{N}/{phone_number_id}/messages`` as Graph answers it.

Requires ``Authorization: Bearer <access_token>`` (else 401, Graph code 190), the
configured ``phone_number_id`` (else 400, code 100) and a well-formed body
(``messaging_product: whatsapp``, ``to``, ``text.body``; else 400, code 100). Success is
``{"messaging_product", "contacts": [...], "messages": [{"id": "wamid..."}]}``.

Template messages are checked against the Cloud API reference (messages → template
object): ``template.name`` (lower-case letters, digits, ``_``), ``template.language``
an object with ``code`` (and ``policy`` only ``deterministic``), ``components`` a list
of ``{"type": "header|body|button", "parameters": [...]}`` whose text parameters are
``{"type": "text", "text": <non-empty string>}`` without new lines, tabs or more
than four spaces in a row (else 400, code 100 or 132018). The (name, language) must be
one of the approved ``templates`` (else 132001) and the body parameters must number
what that template expects (else 132000).

The 24-hour window: ``POST /_sim/inbound`` with ``{"url", "from", "timestamp"?}``
records that the customer wrote to the business (and POSTs the signed ``messages``
webhook to ``url``, as Meta does). Free text to someone without an inbound message
in the last 24 hours (by the simulator's ``clock``) is accepted with a ``wamid``, but
never delivered: its status callbacks are all ``failed`` with 131047, as in
production; with ``window_errors="sync"`` it is refused at once (400, 131047).
Templates need no window. Interactive ``button`` messages (``interactive.body.text``
up to 1024 characters, 1-3 ``reply`` buttons with an ``id`` up to 256 and a
``title`` up to 20 characters; else 400, code 100) follow the window rule of text.

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

``POST /_sim/press`` with ``{"url", "message_id", "reply_id"?}`` presses the first
reply button of a sent interactive message: Meta POSTs a signed ``messages`` webhook
with an ``interactive.button_reply`` (the button's ``id``, or the given
``reply_id`` to forge one) and a ``context`` naming the message; 409 if it had no
button. For a template whose quick-reply button got a payload (a ``button``
component, ``sub_type: quick_reply``, ``index`` of one of the template's
``QUICK_REPLIES``, else 400 code 131009) the press is a message of type ``button``
with that ``payload`` and the button's label. :func:`button_reply_callback` builds both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import (
    Recorded,
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
#: Approved templates: name → language code → number of body parameters.
APPROVED: dict[str, dict[str, int]] = {
    "order_update": {"en": 2, "en_US": 2, "ru": 2, "pt": 2, "pt_BR": 2},
}
#: The labels of each approved template's quick-reply buttons, by index.
QUICK_REPLIES: dict[str, tuple[str, ...]] = {"order_update": ("Got it",)}
WINDOW_SECONDS = 24 * 3600
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_PARAMETER_TYPES = {"text", "currency", "date_time", "image", "document", "video", "payload"}


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


def inbound_callback(
    app_secret: str,
    *,
    sender: str,
    timestamp: int,
    text: str = "hi",
    phone_number_id: str = PHONE_NUMBER_ID,
) -> tuple[dict[str, str], bytes]:
    """A signed ``messages`` webhook: the customer ``sender`` wrote to the business."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Customer"}, "wa_id": sender}],
        "messages": [
            {
                "from": sender,
                "id": f"wamid.in-{sender}-{timestamp}",
                "timestamp": str(timestamp),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    update = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }
    body = compact(update)
    return sign(app_secret, body), body


def button_reply_callback(
    app_secret: str,
    *,
    sender: str,
    reply_id: str,
    title: str,
    context_id: str,
    timestamp: int,
    phone_number_id: str = PHONE_NUMBER_ID,
    quick_reply: bool = False,
) -> tuple[dict[str, str], bytes]:
    """A signed ``messages`` webhook: ``sender`` pressed a reply button of ``context_id``:
    an interactive message's (``interactive.button_reply``), or with ``quick_reply`` a
    template's quick-reply button (type ``button``: its ``payload`` and ``text``)."""
    message: dict[str, Any] = {
        "context": {"from": "15550001111", "id": context_id},
        "from": sender,
        "id": f"wamid.press-{sender}-{timestamp}-{reply_id[-6:]}",
        "timestamp": str(timestamp),
    }
    if quick_reply:
        message |= {"type": "button", "button": {"payload": reply_id, "text": title}}
    else:
        reply = {"id": reply_id, "title": title}
        message |= {
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": reply},
        }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Customer"}, "wa_id": sender}],
        "messages": [message],
    }
    update = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }
    body = compact(update)
    return sign(app_secret, body), body


def _invalid_interactive(interactive: Any) -> str | None:
    """An interactive ``button`` message's shape (Cloud API reference), or why it is refused."""
    if not isinstance(interactive, dict) or interactive.get("type") != "button":
        return "The parameter interactive['type'] must be button."
    text = (interactive.get("body") or {}).get("text")
    if not isinstance(text, str) or not 0 < len(text) <= 1024:
        return "The parameter interactive['body']['text'] must be 1-1024 characters."
    buttons = (interactive.get("action") or {}).get("buttons")
    if not isinstance(buttons, list) or not 0 < len(buttons) <= 3:
        return "interactive['action']['buttons'] must hold 1-3 buttons."
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if not isinstance(reply, dict) or button.get("type") != "reply":
            return "Each button must be {type: reply, reply: {id, title}}."
        if not 0 < len(str(reply.get("id") or "")) <= 256:
            return "A reply button's id must be 1-256 characters."
        if not 0 < len(str(reply.get("title") or "")) <= 20:
            return "A reply button's title must be 1-20 characters."
    return None


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
        return _invalid_template(body.get("template"))
    if body.get("type") == "interactive":
        return _invalid_interactive(body.get("interactive"))
    return "Unsupported message type."


def _invalid_template(template: Any) -> str | None:
    """The template object's shape (Cloud API reference), or why it is refused."""
    if not isinstance(template, dict):
        return "The parameter template is required."
    if not isinstance(template.get("name"), str) or not _TEMPLATE_NAME.match(template["name"]):
        return "The parameter template['name'] must be lower-case letters, digits and _."
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        return "The parameter template['language']['code'] is required."
    if language.get("policy", "deterministic") != "deterministic":
        return "template['language']['policy'] must be 'deterministic'."
    components = template.get("components", [])
    if not isinstance(components, list):
        return "template['components'] must be a list."
    for component in components:
        if not isinstance(component, dict) or component.get("type") not in (
            "header",
            "body",
            "button",
        ):
            return "Each component needs a type: header, body or button."
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            return "A component's parameters must be a list."
        for parameter in parameters:
            if not isinstance(parameter, dict) or parameter.get("type") not in _PARAMETER_TYPES:
                return "Each parameter needs a known type."
            if parameter["type"] == "text" and not (
                isinstance(parameter.get("text"), str) and parameter["text"]
            ):
                return "A text parameter needs a non-empty 'text'."
    return None


def _window_open(inbound: Mapping[str, float], to: str, now: float) -> bool:
    """The customer wrote to us within the last 24 hours."""
    return to in inbound and now - inbound[to] < WINDOW_SECONDS


def _json(entry: Recorded) -> Any:
    try:
        return entry.json()
    except ValueError:
        return None


def _content_error(
    body: dict[str, Any], approved: Mapping[str, Mapping[str, int]], refuse_text: bool
) -> Response | None:
    """A refused template, or text refused at once outside the window (sync mode)."""
    if body.get("type") == "template":
        return _template_error(body["template"], approved)
    if refuse_text:
        return graph_error(400, 131047, "Re-engagement message")
    return None


def _template_error(
    template: dict[str, Any], approved: Mapping[str, Mapping[str, int]]
) -> Response | None:
    """Graph's answer to a well-formed template that is not approved or not filled right."""
    languages = approved.get(template["name"], {})
    code = template["language"]["code"]
    if code not in languages:
        return graph_error(404, 132001, f"Template name does not exist in the translation ({code})")
    body = [c for c in template.get("components", []) if c["type"] == "body"]
    texts = [p for c in body for p in c.get("parameters", [])]
    if len(texts) != languages[code]:
        return graph_error(
            400, 132000, "Number of parameters does not match the expected number of params"
        )
    labels = QUICK_REPLIES.get(template["name"], ())
    for component in template.get("components", []):
        if component["type"] == "button" and _quick_reply(component, labels) is None:
            return graph_error(400, 131009, "Parameter value is not valid: button component")
    for parameter in texts:
        text = parameter.get("text", "")
        if parameter["type"] == "text" and ("\n" in text or "\t" in text or " " * 5 in text):
            return graph_error(
                400, 132018, "Param text cannot have new-line/tab characters or 4+ spaces"
            )
    return None


def _quick_reply(component: dict[str, Any], labels: tuple[str, ...]) -> dict[str, Any] | None:
    """A template's ``button`` component as a sent button (``reply``: id and title), if it
    sets the payload of one of the template's quick-reply buttons (by its ``index``)."""
    index, parameters = str(component.get("index")), component.get("parameters")
    if component.get("sub_type") != "quick_reply" or not index.isdigit():
        return None
    if int(index) >= len(labels) or not isinstance(parameters, list) or len(parameters) != 1:
        return None
    payload = parameters[0].get("payload")
    if parameters[0].get("type") != "payload" or not isinstance(payload, str) or not payload:
        return None
    return {"type": "quick_reply", "reply": {"id": payload, "title": labels[int(index)]}}


def _sent_buttons(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The buttons a sent message shows with our ids: an interactive message's reply
    buttons, or the quick replies of a template whose payloads we set."""
    if body.get("type") == "template":
        labels = QUICK_REPLIES.get(body["template"]["name"], ())
        components = body["template"].get("components", [])
        pressed = (_quick_reply(c, labels) for c in components if c["type"] == "button")
        return [button for button in pressed if button is not None]
    return list((body.get("interactive") or {}).get("action", {}).get("buttons", []))


def _press_route(
    messages: Mapping[str, dict[str, Any]],
    app_secret: str,
    phone_number_id: str,
    clock: Callable[[], float],
) -> Route:
    """``POST /_sim/press``: the customer presses the first reply button of a message."""

    async def press(request: Request) -> Response:
        spec = await request.json()
        sent = messages.get(spec["message_id"])
        if sent is None:
            return JSONResponse({"error": "no such message"}, 404)
        button = (sent["buttons"] or [{}])[0]
        reply = button.get("reply") or {}
        reply_id = spec.get("reply_id", reply.get("id"))
        if reply_id is None:
            return JSONResponse({"error": "that message has no button"}, 409)
        headers, body = button_reply_callback(
            spec.get("app_secret", app_secret),
            sender=sent["to"],
            reply_id=reply_id,
            title=reply.get("title", "?"),
            context_id=sent["id"],
            timestamp=int(spec.get("timestamp", clock())),
            phone_number_id=phone_number_id,
            quick_reply=button.get("type") == "quick_reply",
        )
        return await deliver(spec["url"], headers, body)

    return Route("/_sim/press", press, methods=["POST"])


def create_app(
    access_token: str = ACCESS_TOKEN,
    phone_number_id: str = PHONE_NUMBER_ID,
    app_secret: str = APP_SECRET,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
    templates: Mapping[str, Mapping[str, int]] | None = None,
    clock: Callable[[], float] = time.time,
    window_errors: str = "async",
) -> Simulator:
    """A Cloud API simulator for one business phone number."""
    state = SimState(scenarios_with(DEFAULT_SCENARIOS, scenarios), hang_seconds)
    messages: dict[str, dict[str, Any]] = {}
    approved = APPROVED if templates is None else templates
    inbound: dict[str, float] = {}  #: wa_id → when the customer last wrote to us

    async def send(request: Request) -> Response:
        entry = await record(state, request)
        if not request.path_params["version"].startswith("v"):
            return graph_error(400, 2500, "Unknown path components", "OAuthException")
        if request.headers.get("authorization") != f"Bearer {access_token}":
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.path_params["pnid"] != phone_number_id:
            message = "Unsupported post request. Object does not exist."
            return graph_error(400, 100, message, "GraphMethodException")
        body = _json(entry)
        problem = _invalid(body)
        if problem:
            return graph_error(400, 100, problem)
        to = str(body["to"]).removeprefix("+")
        scenario = state.scenario(to)
        if scenario == "hang":
            return await hang(state, request)
        if scenario in _ERRORS:
            return graph_error(*_ERRORS[scenario])
        kind = body.get("type", "text")
        closed = kind != "template" and not _window_open(inbound, to, clock())
        refused = _content_error(body, approved, closed and window_errors == "sync")
        if refused is not None:
            return refused
        wamid = "wamid." + base64.b64encode(f"sim-{to}-{len(state.sent) + 1}".encode()).decode()
        sent = {
            "id": wamid,
            "to": to,
            "reference": body.get("biz_opaque_callback_data"),
            "type": kind,
            "window_closed": closed,
            "buttons": _sent_buttons(body),
        }
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
        closed = sent["window_closed"]  # never delivered: every status says 131047
        headers, body = status_callback(
            spec.get("app_secret", app_secret),
            message_id=sent["id"],
            status="failed" if closed else spec.get("status", "delivered"),
            recipient_id=sent["to"],
            timestamp=int(spec.get("timestamp", clock())),
            error_code=131047 if closed else spec.get("error_code"),
            reference=sent["reference"],
            phone_number_id=phone_number_id,
        )
        return await deliver(spec["url"], headers, body)

    async def customer_writes(request: Request) -> Response:
        spec = await request.json()
        sender = str(spec["from"]).removeprefix("+")
        timestamp = int(spec.get("timestamp", clock()))
        inbound[sender] = max(inbound.get(sender, 0), timestamp)
        headers, body = inbound_callback(
            spec.get("app_secret", app_secret),
            sender=sender,
            timestamp=timestamp,
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
        Route("/_sim/inbound", customer_writes, methods=["POST"]),
        Route("/_sim/verify", verify, methods=["POST"]),
        _press_route(messages, app_secret, phone_number_id, clock),
        Route("/{version}/{pnid}/messages", send, methods=["POST"]),
    ]
    return Simulator(routes, state)
