"""Viber REST Bot API simulator: ``/pa/send_message`` and ``/pa/set_webhook``.

Everything is HTTP 200 with a body ``status``, as chatapi.viber.com answers:
a wrong ``X-Viber-Auth-Token`` gets status 2 ``invalidAuthToken``, a body that is
not JSON status 3 ``badData``, a missing ``receiver``/``text`` status 4
``missingData``. With ``require_webhook=True`` sending before ``set_webhook``
gets status 10 ``webhookNotSet`` (the real service's rule). Success returns a
64-bit ``message_token`` (above 2**53, so a float round trip would show).

Scenario per ``receiver`` (extend with ``create_app(scenarios=...)``):

=======================  ===============  ==============================
receiver                 scenario         body status
=======================  ===============  ==============================
``not-registered``       not_registered   5 receiverNotRegistered
``not-subscribed``       not_subscribed   6 receiverNotSubscribed
``no-device``            no_device        11 receiverNoSuitableDevice
``throttled``            throttled        12 tooManyRequests
``hang``                 hang             never answers (read timeout)
anything                 ok               0 ok + message_token
=======================  ===============  ==============================

``set_webhook`` POSTs a signed ``{"event": "webhook"}`` probe to the url and
succeeds only if it gets 200 (else status 1 ``invalidUrl``).

Control API: ``GET /_sim/requests``; ``POST /_sim/callback`` with ``{"url"?,
"message_id", "status": "delivered|seen|read|failed", "desc"?, "timestamp"?}``
POSTs the callback (``read`` is Viber's ``seen``) to ``url`` (default: the
webhook set) signed ``X-Viber-Content-Signature: hex(hmac_sha256(token, body))``
and answers ``{"status_code", "body"}``. :func:`signed` and
:func:`receipt_callback` build the same ``(headers, body)`` for tests.

``POST /_sim/press`` with ``{"url"?, "message_id", "action_body"?}`` presses the
keyboard's ``reply`` button of that message: Viber POSTs a signed ``message``
callback from the user whose text is the button's ``ActionBody`` (or the given
``action_body``, to forge one); 409 if the message had no keyboard.
:func:`press_callback` builds it for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import (
    SimState,
    Simulator,
    call,
    compact,
    deliver,
    hang,
    record,
    scenarios_with,
)

AUTH_TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
FIRST_TOKEN = 5741311803571721087
CHAT_HOSTNAME = "SN-CHAT-05_"
DEFAULT_SCENARIOS = {
    "not-registered": "not_registered",
    "not-subscribed": "not_subscribed",
    "no-device": "no_device",
    "throttled": "throttled",
    "hang": "hang",
}
_STATUSES = {
    "not_registered": (5, "receiverNotRegistered"),
    "not_subscribed": (6, "receiverNotSubscribed"),
    "no_device": (11, "receiverNoSuitableDevice"),
    "throttled": (12, "tooManyRequests"),
}


def status(code: int, message: str, **extra: Any) -> Response:
    return JSONResponse({"status": code, "status_message": message, **extra})


def signed(auth_token: str, event: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """A callback body and the headers Viber signs it with."""
    body = compact(dict(event))
    signature = hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Viber-Content-Signature": signature}, body


def receipt_callback(
    auth_token: str,
    *,
    event: str,
    message_token: int,
    user_id: str,
    timestamp: int,
    desc: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A signed ``delivered``/``seen``/``failed`` callback (``timestamp`` in ms)."""
    body: dict[str, Any] = {
        "event": event,
        "timestamp": timestamp,
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": message_token,
        "user_id": user_id,
    }
    if event == "failed":
        body["desc"] = desc or "failure description"
    return signed(auth_token, body)


def press_callback(
    auth_token: str, *, action_body: str, user_id: str, message_token: int, timestamp: int
) -> tuple[dict[str, str], bytes]:
    """A signed ``message`` callback: the user pressed a ``reply`` button."""
    body = {
        "event": "message",
        "timestamp": timestamp,
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": message_token,
        "sender": {"id": user_id, "name": "Sim User", "api_version": 10},
        "message": {"type": "text", "text": action_body},
        "silent": True,
    }
    return signed(auth_token, body)


class _Bot:
    """The simulated service's state and routes for one bot."""

    def __init__(self, auth_token: str, state: SimState, require_webhook: bool) -> None:
        self.auth_token = auth_token
        self.state = state
        self.require_webhook = require_webhook
        self.webhook: dict[str, str] = {}
        self.receivers: dict[int, str] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/_sim/callback", self.callback, methods=["POST"]),
            Route("/_sim/press", self.press, methods=["POST"]),
            Route("/pa/send_message", self.send_message, methods=["POST"]),
            Route("/pa/set_webhook", self.set_webhook, methods=["POST"]),
        ]

    async def send_message(self, request: Request) -> Response:
        entry = await record(self.state, request)
        if request.headers.get("x-viber-auth-token") != self.auth_token:
            return status(2, "invalidAuthToken")
        try:
            body = entry.json()
        except ValueError:
            return status(3, "badData")
        if not isinstance(body, dict) or not body.get("receiver") or not body.get("text"):
            return status(4, "missingData")
        if self.require_webhook and not self.webhook.get("url"):
            return status(10, "webhookNotSet")
        scenario = self.state.scenario(body["receiver"])
        if scenario == "hang":
            return await hang(self.state, request)
        if scenario in _STATUSES:
            return status(*_STATUSES[scenario])
        token = FIRST_TOKEN + len(self.state.sent)
        self.receivers[token] = body["receiver"]
        self.state.sent.append({"message_token": token, **body})
        return status(0, "ok", message_token=token, chat_hostname=CHAT_HOSTNAME, billing_status=1)

    async def set_webhook(self, request: Request) -> Response:
        entry = await record(self.state, request)
        if request.headers.get("x-viber-auth-token") != self.auth_token:
            return status(2, "invalidAuthToken")
        url = entry.json().get("url", "")
        if not url:
            self.webhook.clear()
            return status(0, "ok")
        probe = {
            "event": "webhook",
            "timestamp": int(time.time() * 1000),
            "chat_hostname": CHAT_HOSTNAME,
            "message_token": FIRST_TOKEN - 1,
        }
        answer = await call(url, *signed(self.auth_token, probe))
        if answer.status_code != 200:
            return status(1, "invalidUrl")
        self.webhook["url"] = url
        event_types = ["delivered", "seen", "failed", "subscribed", "unsubscribed"]
        return status(0, "ok", chat_hostname=CHAT_HOSTNAME, event_types=event_types)

    async def callback(self, request: Request) -> Response:
        spec = await request.json()
        token = int(spec["message_id"])
        if token not in self.receivers:
            return JSONResponse({"error": "no such message"}, 404)
        requested = str(spec.get("status", "delivered"))
        event = {"read": "seen"}.get(requested, requested)
        headers, body = receipt_callback(
            spec.get("auth_token", self.auth_token),
            event=event,
            message_token=token,
            user_id=self.receivers[token],
            timestamp=int(spec.get("timestamp", time.time() * 1000)),
            desc=spec.get("desc"),
        )
        return await deliver(spec.get("url") or self.webhook["url"], headers, body)

    async def press(self, request: Request) -> Response:
        spec = await request.json()
        token = int(spec["message_id"])
        sent = next((m for m in self.state.sent if m["message_token"] == token), None)
        if sent is None:
            return JSONResponse({"error": "no such message"}, 404)
        buttons = (sent.get("keyboard") or {}).get("Buttons") or [{}]
        action_body = spec.get("action_body", buttons[0].get("ActionBody"))
        if action_body is None:
            return JSONResponse({"error": "that message has no keyboard"}, 409)
        headers, body = press_callback(
            spec.get("auth_token", self.auth_token),
            action_body=action_body,
            user_id=sent["receiver"],
            message_token=token + 10**6 + len(self.state.requests),  # the press's own
            timestamp=int(spec.get("timestamp", time.time() * 1000)),
        )
        return await deliver(spec.get("url") or self.webhook["url"], headers, body)


def create_app(
    auth_token: str = AUTH_TOKEN,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
    require_webhook: bool = False,
) -> Simulator:
    """A Viber bot API simulator for one bot ``auth_token``."""
    state = SimState(scenarios_with(DEFAULT_SCENARIOS, scenarios), hang_seconds)
    return Simulator(_Bot(auth_token, state, require_webhook).routes(), state)
