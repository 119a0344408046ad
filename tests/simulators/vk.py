"""VK API simulator: ``/method/messages.send`` and Callback API events.

HTTP 200 always; errors are ``{"error": {"error_code", "error_msg",
"request_params"}}`` as api.vk.com answers. A wrong ``access_token`` is error 5,
a missing ``v`` error 8, a missing ``random_id``, ``user_id``/``peer_id`` or
``message`` error 100. VK's dedup is simulated: a ``random_id`` seen before
returns the first message's id and sends nothing new (``sent`` does not grow).

Scenario per ``user_id`` (extend with ``create_app(scenarios=...)``):

=========  ============  ==================================================
user_id    scenario      answer
=========  ============  ==================================================
``900``    blacklisted   error 900 (user blacklisted the community)
``901``    no_permission error 901 (messages not allowed by the user)
``902``    privacy       error 902 (privacy settings)
``6``      too_many      error 6 (too many requests per second)
``9``      flood         error 9 (flood control)
``10``     internal      the message IS sent, then error 10 (internal error)
``408``    hang          never answers (read timeout)
``409``    hang_once     the message IS sent, first request never answers;
                         a retry with the same random_id gets its id
anything   ok            ``{"response": <message id>}``
=========  ============  ==================================================

Control API: ``GET /_sim/requests``; ``POST /_sim/callback`` with ``{"url",
"message_id", "status": "read", "secret"?}`` POSTs a ``message_read`` event
(``secret`` defaults to the simulator's) and answers ``{"status_code", "body"}``;
``POST /_sim/confirm`` with ``{"url"}`` POSTs the ``confirmation`` event.
:func:`message_read` and :func:`confirmation` build the same bodies for tests.

``POST /_sim/press`` with ``{"url", "message_id", "payload"?, "secret"?}`` presses
the inline keyboard's text button of that message: VK posts a ``message_new`` event
(the button's label as the user's text, its ``payload`` echoed, or the given
``payload`` to forge one); 409 if the message had no keyboard. :func:`message_new`
builds it for tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

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

ACCESS_TOKEN = "vk1.a.sim-community-token"
SECRET = "vk-sim-secret"
GROUP_ID = 217000001
API_VERSION = "5.199"
FIRST_MESSAGE_ID = 1001
DEFAULT_SCENARIOS = {
    "900": "blacklisted",
    "901": "no_permission",
    "902": "privacy",
    "6": "too_many",
    "9": "flood",
    "10": "internal",
    "408": "hang",
    "409": "hang_once",
}
_ERRORS = {
    "blacklisted": (900, "Can't send messages for users from blacklist"),
    "no_permission": (901, "Can't send messages for users without permission"),
    "privacy": (902, "Can't send messages to this user due to their privacy settings"),
    "too_many": (6, "Too many requests per second"),
    "flood": (9, "Flood control"),
    "internal": (10, "Internal server error"),
}
_HEADERS = {"Content-Type": "application/json"}


def error(code: int, message: str, params: Mapping[str, str]) -> Response:
    shown = [{"key": k, "value": v} for k, v in params.items() if k != "access_token"]
    shown.append({"key": "method", "value": "messages.send"})
    return JSONResponse(
        {"error": {"error_code": code, "error_msg": message, "request_params": shown}}
    )


def message_read(
    *, secret: str | None, peer_id: int, read_message_id: int, group_id: int = GROUP_ID
) -> tuple[dict[str, str], bytes]:
    """A Callback API ``message_read`` event (VK authenticates it by ``secret``)."""
    event: dict[str, Any] = {
        "group_id": group_id,
        "type": "message_read",
        "event_id": hashlib.sha1(
            f"{peer_id}:{read_message_id}".encode(), usedforsecurity=False
        ).hexdigest(),
        "v": API_VERSION,
        "object": {"from_id": peer_id, "peer_id": peer_id, "read_message_id": read_message_id},
    }
    if secret is not None:
        event["secret"] = secret
    return dict(_HEADERS), compact(event)


def message_new(
    *,
    secret: str | None,
    peer_id: int,
    message_id: int,
    text: str,
    payload: str,
    group_id: int = GROUP_ID,
) -> tuple[dict[str, str], bytes]:
    """A ``message_new`` event: the user pressed a text button (``payload`` echoed)."""
    message = {
        "id": message_id,
        "date": int(time.time()),
        "peer_id": peer_id,
        "from_id": peer_id,
        "text": text,
        "payload": payload,
        "conversation_message_id": message_id,
    }
    event: dict[str, Any] = {
        "group_id": group_id,
        "type": "message_new",
        "event_id": hashlib.sha1(f"new:{message_id}".encode(), usedforsecurity=False).hexdigest(),
        "v": API_VERSION,
        "object": {"message": message, "client_info": {"inline_keyboard": True}},
    }
    if secret is not None:
        event["secret"] = secret
    return dict(_HEADERS), compact(event)


def confirmation(
    *, group_id: int = GROUP_ID, secret: str | None = None
) -> tuple[dict[str, str], bytes]:
    """The ``confirmation`` event VK sends when a callback server is added."""
    event: dict[str, Any] = {"type": "confirmation", "group_id": group_id}
    if secret is not None:
        event["secret"] = secret
    return dict(_HEADERS), compact(event)


def _sent(message_id: int, user: str, params: Mapping[str, str]) -> dict[str, Any]:
    """What the simulator keeps of an accepted message (its keyboard, if it had one)."""
    sent: dict[str, Any] = {"id": message_id, "user_id": user, "message": params["message"]}
    if params.get("keyboard"):
        sent["keyboard"] = json.loads(params["keyboard"])
    return sent


def _button(keyboard: dict[str, Any] | None) -> tuple[str, str | None]:
    """The first button's (label, payload) of a sent keyboard."""
    buttons = (keyboard or {}).get("buttons") or [[{"action": {}}]]
    action = buttons[0][0]["action"]
    return action.get("label", "?"), action.get("payload")


def _press_route(state: SimState, peers: dict[int, int], secret: str, group_id: int) -> Route:
    """``POST /_sim/press``: the user presses the first button of a sent message."""

    async def press(request: Request) -> Response:
        spec = await request.json()
        message_id = int(spec["message_id"])
        sent = next((m for m in state.sent if m["id"] == message_id), None)
        if sent is None:
            return JSONResponse({"error": "no such message"}, 404)
        label, payload = _button(sent.get("keyboard"))
        payload = spec.get("payload", payload)
        if payload is None:
            return JSONResponse({"error": "that message has no keyboard"}, 409)
        headers, body = message_new(
            secret=spec.get("secret", secret),
            peer_id=peers[message_id],
            message_id=FIRST_MESSAGE_ID + 10**6 + len(state.requests),  # the user's message
            text=label,
            payload=payload,
            group_id=group_id,
        )
        return await deliver(spec["url"], headers, body)

    return Route("/_sim/press", press, methods=["POST"])


def create_app(
    access_token: str = ACCESS_TOKEN,
    secret: str = SECRET,
    group_id: int = GROUP_ID,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
) -> Simulator:
    """A VK API simulator for one community."""
    state = SimState(scenarios_with(DEFAULT_SCENARIOS, scenarios), hang_seconds)
    by_random_id: dict[str, int] = {}
    peers: dict[int, int] = {}

    async def send(request: Request) -> Response:
        entry = await record(state, request)
        params = {**entry.query, **entry.form()}
        if params.get("access_token") != access_token:
            return error(5, "User authorization failed: invalid access_token (4).", params)
        if not params.get("v"):
            return error(8, "Invalid request: v (version) is required", params)
        user = params.get("user_id") or params.get("peer_id")
        if not user or not params.get("random_id") or not params.get("message"):
            missing = "user_id, random_id and message are required"
            return error(
                100, f"One of the parameters specified was missing or invalid: {missing}", params
            )
        if params["random_id"] in by_random_id:  # VK's dedup: nothing new is sent
            return JSONResponse({"response": by_random_id[params["random_id"]]})
        scenario = state.scenario(user)
        if scenario == "hang":
            return await hang(state, request)
        if scenario in _ERRORS and scenario != "internal":
            return error(*_ERRORS[scenario], params)
        message_id = FIRST_MESSAGE_ID + len(state.sent)
        by_random_id[params["random_id"]] = message_id
        peers[message_id] = int(user)
        state.sent.append(_sent(message_id, user, params))
        if scenario == "internal":
            return error(*_ERRORS[scenario], params)
        if scenario == "hang_once":
            return await hang(state, request)
        return JSONResponse({"response": message_id})

    async def callback(request: Request) -> Response:
        spec = await request.json()
        message_id = int(spec["message_id"])
        if message_id not in peers or spec.get("status", "read") != "read":
            return JSONResponse({"error": "no such message, or not a read event"}, 404)
        headers, body = message_read(
            secret=spec.get("secret", secret),
            peer_id=peers[message_id],
            read_message_id=message_id,
            group_id=group_id,
        )
        return await deliver(spec["url"], headers, body)

    async def confirm(request: Request) -> Response:
        spec = await request.json()
        headers, body = confirmation(group_id=group_id, secret=spec.get("secret"))
        return await deliver(spec["url"], headers, body)

    routes = [
        Route("/_sim/callback", callback, methods=["POST"]),
        Route("/_sim/confirm", confirm, methods=["POST"]),
        _press_route(state, peers, secret, group_id),
        Route("/method/messages.send", send, methods=["GET", "POST"]),
    ]
    return Simulator(routes, state)
