"""Twilio Programmable Messaging simulator: ``Messages.json`` and signed StatusCallbacks.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` takes a form body with
HTTP Basic ``AccountSid:AuthToken``, as api.twilio.com does:

* wrong or missing credentials -> 401 ``{"code": 20003, "message": "Authenticate", ...}``;
* credentials fine but another AccountSid in the path -> 404 code 20404;
* no ``To`` -> 400 code 21604; no ``From``/``MessagingServiceSid`` -> 400 21603;
  no ``Body`` -> 400 21602;
* success -> 201 with a full message resource (``sid`` ``SM`` + 32 hex,
  ``status`` ``queued``, or ``accepted`` with a Messaging Service; ``price`` null
  unless ``create_app(price=...)``).

Error bodies are ``{"code", "message", "more_info", "status"}``. Scenario by the
``To`` number (the first five are Twilio's own magic test numbers; extend with
``create_app(scenarios=...)``):

================  ============  ==========================================
To                scenario      answer
================  ============  ==========================================
+15005550001      invalid       400 code 21211 (invalid 'To' number)
+15005550002      no_route      400 code 21612 (cannot route)
+15005550003      no_region     400 code 21408 (region not enabled)
+15005550004      stopped       400 code 21610 (recipient replied STOP)
+15005550009      not_mobile    400 code 21614 ('To' not a mobile number)
+15005550429      throttled     429 code 20429 (no ``Retry-After``, like Twilio)
+15005550500      error         500 code 20500
+15005550503      unavailable   503 code 20503
+15005559999      hang          never answers (read timeout)
anything else     ok            201 message resource
================  ============  ==========================================

Control API:

* ``GET /_sim/requests`` — everything received, and the messages accepted.
* ``POST /_sim/mode`` ``{"mode": "outage" | "normal"}`` — in ``outage`` every
  send gets 503 code 20503 (before any check), until switched back.
* ``POST /_sim/callback`` ``{"message_id", "status", "error_code"?, "url"?}`` —
  POSTs a form-encoded StatusCallback for that message to ``url`` (default: the
  ``StatusCallback`` given at send time), signed ``X-Twilio-Signature`` with
  ``twilio.request_validator.RequestValidator(auth_token).compute_signature``,
  and answers ``{"status_code", "body"}`` of the receiver's reply.

:func:`status_callback` builds the same signed ``(headers, body)`` for tests.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from tests.simulators.sim_common import SimState, Simulator, deliver, hang, record, scenarios_with

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "simulated-twilio-auth-token-0001"


def provider_settings(base_url: str, **extra: Any) -> dict[str, Any]:
    """Cascade's ``twilio`` provider settings for this simulator at ``base_url``."""
    return {
        "base_url": base_url,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": "+15005550006",
        **extra,
    }


API_VERSION = "2010-04-01"
DEFAULT_SCENARIOS = {
    "+15005550001": "invalid",
    "+15005550002": "no_route",
    "+15005550003": "no_region",
    "+15005550004": "stopped",
    "+15005550009": "not_mobile",
    "+15005550429": "throttled",
    "+15005550500": "error",
    "+15005550503": "unavailable",
    "+15005559999": "hang",
}
#: scenario -> (HTTP status, Twilio error code, message)
FAILURES: dict[str, tuple[int, int, str]] = {
    "invalid": (400, 21211, "The 'To' number is not a valid phone number."),
    "no_route": (400, 21612, "The 'To' phone number is not currently reachable via SMS."),
    "no_region": (400, 21408, "Permission to send an SMS has not been enabled for the region"),
    "stopped": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "not_mobile": (400, 21614, "'To' number is not a valid mobile number"),
    "throttled": (429, 20429, "Too Many Requests"),
    "error": (500, 20500, "Internal Server Error"),
    "unavailable": (503, 20503, "Service unavailable"),
}
#: Callback ``ErrorMessage`` for the delivery error codes tests use.
DELIVERY_ERRORS = {
    "30003": "Unreachable destination handset",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30008": "Unknown error",
}


def error(status: int, code: int, message: str) -> JSONResponse:
    """An error body exactly as the REST API shapes it."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` computed by Twilio's own reference code."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def status_callback(
    auth_token: str,
    url: str,
    *,
    message_sid: str,
    status: str,
    to: str = "+14155552671",
    sender: str = "+15005550006",
    account_sid: str = ACCOUNT_SID,
    error_code: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A signed StatusCallback form POST to ``url``: headers and raw body."""
    params = {
        "ApiVersion": API_VERSION,
        "AccountSid": account_sid,
        "SmsSid": message_sid,
        "MessageSid": message_sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": to,
        "From": sender,
    }
    if error_code:
        params["ErrorCode"] = error_code
        params["ErrorMessage"] = DELIVERY_ERRORS.get(error_code, "Delivery failed")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(auth_token, url, params),
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        "User-Agent": "TwilioProxy/1.1",
    }
    return headers, urlencode(params).encode()


@dataclass
class TwilioState(SimState):
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    mode: str = "normal"  #: ``outage``: every send answers 503
    price: str | None = None


class TwilioSimulator(Simulator):
    twilio: TwilioState


class _Account:
    """The simulated account's routes."""

    def __init__(self, state: TwilioState) -> None:
        self.state = state
        credentials = f"{state.account_sid}:{state.auth_token}".encode()
        self.expected_auth = "Basic " + base64.b64encode(credentials).decode()

    def routes(self) -> list[Route]:
        return [
            Route(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self.create, methods=["POST"]),
            Route("/_sim/mode", self.mode, methods=["POST"]),
            Route("/_sim/callback", self.callback, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        entry = await record(self.state, request)
        if self.state.mode == "outage":
            return error(*FAILURES["unavailable"])
        if not hmac.compare_digest(entry.headers.get("authorization", ""), self.expected_auth):
            return error(401, 20003, "Authenticate")
        sid = request.path_params["sid"]
        if sid != self.state.account_sid:
            path = f"/{API_VERSION}/Accounts/{sid}/Messages.json"
            return error(404, 20404, f"The requested resource {path} was not found")
        form = entry.form()
        missing = _missing(form)
        if missing:
            return error(400, *missing)
        scenario = self.state.scenario(form["To"])
        if scenario == "hang":
            return await hang(self.state, request)
        if scenario in FAILURES:
            return error(*FAILURES[scenario])
        resource = self._resource(form)
        self.state.sent.append({**resource, "status_callback": form.get("StatusCallback")})
        return JSONResponse(resource, status_code=201)

    def _resource(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        service = form.get("MessagingServiceSid")
        uri = f"/{API_VERSION}/Accounts/{self.state.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.state.account_sid,
            "api_version": API_VERSION,
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(max(1, -(-len(form["Body"]) // 160))),
            "price": self.state.price,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }

    async def mode(self, request: Request) -> Response:
        mode = (await request.json()).get("mode")
        if mode not in ("normal", "outage"):
            return JSONResponse({"error": "mode is normal or outage"}, status_code=400)
        self.state.mode = mode
        return JSONResponse({"mode": mode})

    async def callback(self, request: Request) -> Response:
        spec = await request.json()
        message = next((m for m in self.state.sent if m["sid"] == spec.get("message_id")), None)
        if message is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        url = spec.get("url") or message["status_callback"]
        if not url:
            return JSONResponse({"error": "no StatusCallback for this message"}, status_code=409)
        headers, body = status_callback(
            self.state.auth_token,
            url,
            message_sid=message["sid"],
            status=str(spec.get("status", "delivered")),
            to=message["to"],
            sender=message["from"] or "+15005550006",
            account_sid=self.state.account_sid,
            error_code=str(spec["error_code"]) if spec.get("error_code") else None,
        )
        return await deliver(url, headers, body)


def _missing(form: dict[str, str]) -> tuple[int, str] | None:
    if not form.get("To"):
        return 21604, "A 'To' phone number is required."
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return 21603, "A 'From' phone number is required."
    if not form.get("Body"):
        return 21602, "Message body is required."
    return None


def create_app(
    *,
    account_sid: str = ACCOUNT_SID,
    auth_token: str = AUTH_TOKEN,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
    price: str | None = None,
) -> TwilioSimulator:
    """A Twilio Messaging simulator for one account."""
    state = TwilioState(
        scenarios_with(DEFAULT_SCENARIOS, scenarios),
        hang_seconds,
        account_sid=account_sid,
        auth_token=auth_token,
        price=price,
    )
    app = TwilioSimulator(_Account(state).routes(), state)
    app.twilio = state
    return app
