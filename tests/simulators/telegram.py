"""Telegram Bot API simulator: ``/bot<token>/<method>`` as api.telegram.org answers it.

Methods: ``sendMessage`` (JSON, form or query parameters), ``setWebhook`` (stores
``url`` and ``secret_token``), ``answerCallbackQuery``. A wrong token gets
``401 Unauthorized``, an unknown method or path ``404 Not Found``, text over 4096
characters ``400 Bad Request: message is too long``.

Scenario per ``chat_id`` (override or extend with ``create_app(scenarios=...)``):

==========  ==============  =====================================================
chat_id     scenario        answer
==========  ==============  =====================================================
``403``     blocked         403 "Forbidden: bot was blocked by the user"
``400``     chat_not_found  400 "Bad Request: chat not found"
``429``     flood           429 "Too Many Requests: retry after 7", retry_after 7
``502``     bad_gateway     502 HTML page from the front proxy
``-100200`` migrated        400 with ``parameters.migrate_to_chat_id``
``408``     hang            never answers (client read timeout)
anything    ok              200 with ``result.message_id`` 1, 2, 3, ...
==========  ==============  =====================================================

Control API: ``GET /_sim/requests``; ``POST /_sim/callback`` with
``{"message_id": 3, "status": "read", "url": ..., "secret": ...}`` presses the
"Got it" button of sent message 3 (``message_id`` may also be ``"<chat>:<id>"``)
and POSTs the ``callback_query`` update to ``url`` (default: the ``setWebhook``
url) with the ``X-Telegram-Bot-Api-Secret-Token`` header (default: the
``setWebhook`` secret); it answers ``{"status_code", "body"}`` from the receiver.
:func:`callback_update` builds the same ``(headers, body)`` for tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
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

TOKEN = "123456:TEST-sim-token"
DEFAULT_SCENARIOS = {
    "403": "blocked",
    "400": "chat_not_found",
    "429": "flood",
    "502": "bad_gateway",
    "-100200": "migrated",
    "408": "hang",
}
_ERRORS: dict[str, tuple[int, str, dict[str, Any] | None]] = {
    "blocked": (403, "Forbidden: bot was blocked by the user", None),
    "chat_not_found": (400, "Bad Request: chat not found", None),
    "flood": (429, "Too Many Requests: retry after 7", {"retry_after": 7}),
    "migrated": (
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        {"migrate_to_chat_id": -1001234567890},
    ),
}


def error(status: int, description: str, parameters: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)


def callback_update(
    *,
    secret: str,
    chat_id: int,
    message_id: int,
    data: str,
    update_id: int = 1,
    query_id: str = "4382bfdwdsb323b2d9",
) -> tuple[dict[str, str], bytes]:
    """A ``callback_query`` update for a pressed button, with Telegram's secret header."""
    user = {"id": chat_id, "is_bot": False, "first_name": "Sim"}
    update = {
        "update_id": update_id,
        "callback_query": {
            "id": query_id,
            "from": user,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "text": "...",
            },
            "chat_instance": "-1234567890123456789",
            "data": data,
        },
    }
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": secret,
    }
    return headers, compact(update)


class _Bot:
    """The simulated service's state and routes for one bot token."""

    def __init__(self, token: str, state: SimState) -> None:
        self.token = token
        self.state = state
        self.webhook: dict[str, str] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/_sim/callback", self.callback, methods=["POST"]),
            Route("/bot{token}/{method}", self.method, methods=["GET", "POST"]),
            Route("/{path:path}", self.not_found, methods=["GET", "POST"]),
        ]

    async def method(self, request: Request) -> Response:
        await record(self.state, request)
        if request.path_params["token"] != self.token:
            return error(401, "Unauthorized")
        name = request.path_params["method"]
        values = await _params(request)
        if name == "sendMessage":
            return await self.send_message(request, values)
        if name == "setWebhook":
            self.webhook.update(url=values.get("url", ""), secret=values.get("secret_token", ""))
            return JSONResponse({"ok": True, "result": True, "description": "Webhook was set"})
        if name == "answerCallbackQuery":
            return JSONResponse({"ok": True, "result": True})
        return error(404, "Not Found")

    async def send_message(self, request: Request, values: dict[str, Any]) -> Response:
        chat_id, text = values.get("chat_id"), values.get("text")
        if chat_id in (None, ""):
            return error(400, "Bad Request: chat_id is empty")
        if not text:
            return error(400, "Bad Request: message text is empty")
        scenario = self.state.scenario(chat_id)
        if scenario == "hang":
            return await hang(self.state, request)
        if scenario == "bad_gateway":
            return HTMLResponse("<html><h1>502 Bad Gateway</h1></html>", status_code=502)
        if scenario in _ERRORS:
            return error(*_ERRORS[scenario])
        if len(str(text)) > 4096:
            return error(400, "Bad Request: message is too long")
        chat = int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id
        result = {
            "message_id": len(self.state.sent) + 1,
            "from": {"id": 123456, "is_bot": True, "first_name": "Sim", "username": "sim_bot"},
            "chat": {"id": chat, "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        if values.get("reply_markup"):
            result["reply_markup"] = values["reply_markup"]
        self.state.sent.append(result)
        return JSONResponse({"ok": True, "result": result})

    async def callback(self, request: Request) -> Response:
        spec = await request.json()
        if spec.get("status", "read") != "read":
            return JSONResponse({"error": "Telegram can only report a button press"}, 400)
        message_id = int(str(spec["message_id"]).rsplit(":", 1)[-1])
        if not 0 < message_id <= len(self.state.sent):
            return JSONResponse({"error": "no such message"}, 404)
        sent = self.state.sent[message_id - 1]
        markup = sent.get("reply_markup")
        if isinstance(markup, str):  # form-encoded sendMessage carries it as a JSON string
            markup = json.loads(markup)
        buttons = (markup or {}).get("inline_keyboard") or [[{}]]
        data = buttons[0][0].get("callback_data")
        if data is None:
            return JSONResponse({"error": "that message has no button"}, 409)
        serial = len(self.state.requests)
        headers, body = callback_update(
            secret=spec.get("secret", self.webhook.get("secret", "")),
            chat_id=sent["chat"]["id"],
            message_id=message_id,
            data=data,
            update_id=serial,
            query_id=f"cbq-{message_id}-{serial}",
        )
        return await deliver(spec.get("url") or self.webhook["url"], headers, body)

    async def not_found(self, request: Request) -> Response:
        await record(self.state, request)
        return error(404, "Not Found")


async def _params(request: Request) -> dict[str, Any]:
    """Bot API parameters from the query string and a JSON or form body."""
    values: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json") and body:
        values.update(await request.json())
    elif body:
        values.update(parse_qsl(body.decode(), keep_blank_values=True))
    return values


def create_app(
    token: str = TOKEN,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
) -> Simulator:
    """A Telegram Bot API simulator for one bot ``token``."""
    state = SimState(scenarios_with(DEFAULT_SCENARIOS, scenarios), hang_seconds)
    return Simulator(_Bot(token, state).routes(), state)
