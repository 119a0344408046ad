"""SMS.ru simulator: ``/sms/send``, ``/sms/status``, ``/callback/add`` and status callbacks.

Like sms.ru, every answer is HTTP 200 and the JSON ``status_code`` says what
happened (``json=1``; without it a plain-text answer, first line the code).
Parameters come from the query string or a form body (GET and POST both work).

``/sms/send`` checks, in order: ``api_id`` (else top-level 200 "Неправильный
api_id"), ``to`` (else 202), ``msg`` (else 203), ``from`` against
``create_app(senders=...)`` when given (else 204). Then each number (digits
only; the raw ``to`` is recorded) gets its scenario; extend the table with
``create_app(scenarios=...)``. Top-level failures are ``{"status": "ERROR",
"status_code", "status_text"}``; per-number ones sit inside an overall OK as
``sms[<number>] = {"status": "ERROR", "status_code", "status_text"}``.

============  ============  =====  ====================================
number        scenario      level  status_code
============  ============  =====  ====================================
79000000201   no_funds      top    201 insufficient funds
79000000202   invalid       phone  202 invalid number
79000000207   no_route      phone  207 no route to this number
79000000209   stop_list     phone  209 number in the stop-list
79000000220   unavailable   top    220 service temporarily unavailable
79000000230   number_limit  phone  230 daily limit for this number
79000000500   server_error  top    500 server error
79000000000   hang          —      never answers (read timeout)
anything      ok            phone  100 + ``sms_id`` ``000000-1000000N``
============  ============  =====  ====================================

``create_app(cost=0.5)`` adds ``cost`` to each accepted number's result.
``/sms/status`` reports the current code of each ``sms_id`` (100 after sending,
-1 for unknown ids) with ``cost`` and ``status_text``.

Control API: ``GET /_sim/requests``; ``POST /_sim/callback`` with ``{"url"?,
"message_id", "status", "time"?}`` or ``{"url"?, "records": [{"message_id",
"status", "time"?}, ...]}`` sets those statuses and POSTs them as form fields
``data[0]``, ``data[1]``, … (each ``"sms_status\\n<sms_id>\\n<code>\\n<unix time>"``)
to ``url`` (default: the first URL given to ``/callback/add``), then answers
``{"status_code", "body", "acknowledged"}`` where ``acknowledged`` means the
receiver answered ``100`` (SMS.ru re-sends otherwise). :func:`callback_request`
builds the same request for tests.
"""

# ruff: noqa: RUF001  (SMS.ru answers in Russian; the Cyrillic texts are verbatim on purpose)
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.simulators.sim_common import SimState, Simulator, call, hang, record, scenarios_with

API_ID = "00000000-0000-0000-0000-000000000001"
BALANCE = 4122.56
DEFAULT_SCENARIOS = {
    "79000000201": "no_funds",
    "79000000202": "invalid",
    "79000000207": "no_route",
    "79000000209": "stop_list",
    "79000000220": "unavailable",
    "79000000230": "number_limit",
    "79000000500": "server_error",
    "79000000000": "hang",
}
#: scenario -> (level, status_code, status_text)
FAILURES: dict[str, tuple[str, int, str]] = {
    "no_funds": ("top", 201, "Не хватает средств на лицевом счету"),
    "invalid": ("phone", 202, "Неправильно указан номер телефона получателя"),
    "no_route": ("phone", 207, "На этот номер нет маршрута для доставки сообщений"),
    "stop_list": ("phone", 209, "Вы добавили этот номер в стоп-лист"),
    "unavailable": ("top", 220, "Сервис временно недоступен, попробуйте чуть позже"),
    "number_limit": ("phone", 230, "Превышен общий лимит количества сообщений на этот номер"),
    "server_error": ("top", 500, "Ошибка на сервере. Повторите запрос."),
}
#: Delivery status code -> status_text, as ``/sms/status`` reports them.
DELIVERY_TEXTS = {
    -1: "Сообщение не найдено",
    100: "Сообщение находится в нашей очереди",
    101: "Сообщение передается оператору",
    102: "Сообщение отправлено (в пути)",
    103: "Сообщение доставлено",
    104: "Не может быть доставлено: время жизни истекло",
    105: "Не может быть доставлено: удалено оператором",
    106: "Не может быть доставлено: сбой в телефоне",
    107: "Не может быть доставлено: неизвестная причина",
    108: "Не может быть доставлено: отклонено",
    110: "Сообщение прочитано",
    150: "Не может быть доставлено: не найден маршрут на данный номер",
}


def callback_form(records: Sequence[tuple[str, int, int]]) -> dict[str, str]:
    """Form fields of one callback carrying ``(sms_id, status_code, unix_time)`` records."""
    return {
        f"data[{index}]": f"sms_status\n{sms_id}\n{code}\n{stamp}"
        for index, (sms_id, code, stamp) in enumerate(records)
    }


def callback_request(records: Sequence[tuple[str, int, int]]) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of the status callback SMS.ru POSTs."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return headers, urlencode(callback_form(records)).encode()


@dataclass
class SmsRuState(SimState):
    api_id: str = API_ID
    cost: float | None = None
    senders: frozenset[str] | None = None
    balance: float = BALANCE
    callbacks: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  #: sms_id -> delivery code


class SmsRuSimulator(Simulator):
    smsru: SmsRuState


def _top(code: int, text: str, as_json: bool) -> Response:
    if not as_json:
        return PlainTextResponse(str(code))
    return JSONResponse({"status": "ERROR", "status_code": code, "status_text": text})


class _Service:
    """The simulated SMS.ru account's routes."""

    def __init__(self, state: SmsRuState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        both = ["GET", "POST"]
        return [
            Route("/sms/send", self.send, methods=both),
            Route("/sms/status", self.status, methods=both),
            Route("/callback/add", self.callback_add, methods=both),
            Route("/_sim/callback", self.callback, methods=["POST"]),
        ]

    async def _params(self, request: Request) -> dict[str, str]:
        entry = await record(self.state, request)
        return {**entry.query, **(entry.form() if request.method == "POST" else {})}

    async def send(self, request: Request) -> Response:
        params = await self._params(request)
        as_json = params.get("json") == "1"
        if params.get("api_id") != self.state.api_id:
            return _top(200, "Неправильный api_id", as_json)
        phones = [
            "".join(ch for ch in raw if ch.isdigit()) for raw in params.get("to", "").split(",")
        ]
        if not all(phones):
            return _top(202, "Неправильно указан номер телефона получателя", as_json)
        if not params.get("msg"):
            return _top(203, "Нет текста сообщения", as_json)
        senders = self.state.senders
        if senders is not None and params.get("from") and params["from"] not in senders:
            return _top(204, "Имя отправителя не согласовано с администрацией", as_json)
        scenarios = [self.state.scenario(phone) for phone in phones]
        if "hang" in scenarios:
            return await hang(self.state, request)
        for scenario in scenarios:
            level, code, text = FAILURES.get(scenario, ("", 0, ""))
            if level == "top":
                return _top(code, text, as_json)
        results = {
            phone: self._accept(phone, params, scenario)
            for phone, scenario in zip(phones, scenarios, strict=True)
        }
        if not as_json:
            ids = [str(r.get("sms_id", r["status_code"])) for r in results.values()]
            return PlainTextResponse("\n".join(["100", *ids, f"balance={self.state.balance}"]))
        body = {"status": "OK", "status_code": 100, "sms": results, "balance": self.state.balance}
        return JSONResponse(body)

    def _accept(self, phone: str, params: dict[str, str], scenario: str) -> dict[str, Any]:
        if scenario in FAILURES:
            _, code, text = FAILURES[scenario]
            return {"status": "ERROR", "status_code": code, "status_text": text}
        sms_id = f"000000-{10000001 + len(self.state.sent)}"
        self.state.statuses[sms_id] = 100
        self.state.sent.append({"sms_id": sms_id, "phone": phone, **params})
        result: dict[str, Any] = {"status": "OK", "status_code": 100, "sms_id": sms_id}
        if self.state.cost is not None:
            result["cost"] = self.state.cost
            self.state.balance = round(self.state.balance - self.state.cost, 2)
        return result

    async def status(self, request: Request) -> Response:
        params = await self._params(request)
        if params.get("api_id") != self.state.api_id:
            return _top(200, "Неправильный api_id", True)
        report: dict[str, Any] = {}
        for sms_id in filter(None, params.get("sms_id", "").split(",")):
            code = self.state.statuses.get(sms_id, -1)
            entry: dict[str, Any] = {
                "status": "OK" if code != -1 else "ERROR",
                "status_code": code,
                "status_text": DELIVERY_TEXTS.get(code, ""),
            }
            if code != -1:
                entry["cost"] = self.state.cost or 0.0
            report[sms_id] = entry
        return JSONResponse(
            {"status": "OK", "status_code": 100, "sms": report, "balance": self.state.balance}
        )

    async def callback_add(self, request: Request) -> Response:
        params = await self._params(request)
        if params.get("api_id") != self.state.api_id:
            return _top(200, "Неправильный api_id", True)
        url = params.get("url", "")
        if not url.startswith(("http://", "https://")):
            return _top(901, "Callback: URL неверный (не начинается на http://)", True)
        if url not in self.state.callbacks:
            self.state.callbacks.append(url)
        return JSONResponse({"status": "OK", "status_code": 100, "callback": self.state.callbacks})

    async def callback(self, request: Request) -> Response:
        spec = await request.json()
        specs = spec.get("records") or [spec]
        now = int(time.time())
        records = [
            (str(s["message_id"]), int(s.get("status", 103)), int(s.get("time", now)))
            for s in specs
        ]
        for sms_id, code, _ in records:
            if sms_id in self.state.statuses:
                self.state.statuses[sms_id] = code
        url = spec.get("url") or (self.state.callbacks[0] if self.state.callbacks else None)
        if not url:
            return JSONResponse({"error": "no url and no /callback/add"}, status_code=409)
        answer = await call(url, *callback_request(records))
        return JSONResponse(
            {
                "status_code": answer.status_code,
                "body": answer.text,
                "acknowledged": answer.text.strip() == "100",
            }
        )


def create_app(
    *,
    api_id: str = API_ID,
    scenarios: Mapping[str, str] | None = None,
    hang_seconds: float = 30.0,
    cost: float | None = None,
    senders: Sequence[str] | None = None,
) -> SmsRuSimulator:
    """An SMS.ru simulator for one account (``api_id``)."""
    state = SmsRuState(
        scenarios_with(DEFAULT_SCENARIOS, scenarios),
        hang_seconds,
        api_id=api_id,
        cost=cost,
        senders=frozenset(senders) if senders is not None else None,
    )
    app = SmsRuSimulator(_Service(state).routes(), state)
    app.smsru = state
    return app
