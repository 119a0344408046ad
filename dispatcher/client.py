"""A small typed client for the Cascade REST API.

Answers are the API's own response models (:mod:`dispatcher.schemas`), so a field
the API renames is a type error here too. Every send carries an ``Idempotency-Key``
(a new UUID unless one is given), so retrying it can never send twice; a 503 (the
database is away) is retried after its ``Retry-After``, as is a refused connection
(nothing reached the API). Errors are :class:`ApiError` with the problem JSON.

Usage::

    with CascadeClient("http://127.0.0.1:8000", "dev-key") as client:
        client.put_customer("alice", {"contacts": [{"channel": "sms", "address": "+14155552671"}]})
        accepted = client.send("alice", "demo", content={"text": "Your order has shipped"})
        print(client.get(accepted.id).state)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from dispatcher.customer_schemas import CustomerOut
from dispatcher.schemas import (
    CascadeOut,
    EventOut,
    NotificationAccepted,
    NotificationOut,
    ReceiptOut,
)

Model = TypeVar("Model", bound=BaseModel)
Body = Mapping[str, Any] | BaseModel

#: Longest wait for one ``Retry-After``, seconds: a client never hangs on a wild header.
MAX_RETRY_AFTER = 30.0


class ApiError(Exception):
    """The API answered with an error: ``status`` and the RFC 9457 ``problem`` body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", "") or "")
        self.errors: list[dict[str, str]] = list(problem.get("errors", []))
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))


def _json(body: Body) -> Any:
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", exclude_none=True)
    return dict(body)


def _ttl(value: float | str | timedelta | None) -> float | str | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


class CascadeClient:
    """Talk to one Cascade API with one API key. Thread-safe as ``httpx.Client`` is."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        retries: int = 3,
        retry_connect: bool = True,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "cascade-client"},
            timeout=timeout,
            transport=transport,
        )
        self._retries = retries
        self._retry_connect = retry_connect
        self._sleep = sleep

    def __enter__(self) -> CascadeClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # notifications

    def send(
        self,
        customer_id: str,
        cascade: str,
        *,
        content: Body | None = None,
        template: str | None = None,
        data: Mapping[str, Any] | None = None,
        category: str | None = None,
        ttl: float | str | timedelta | None = None,
        contacts: list[Body] | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        """Send a notification; retried safely under one Idempotency-Key (new unless given)."""
        body: dict[str, Any] = {"customer_id": customer_id, "cascade": cascade}
        optional = {
            "content": _json(content) if content is not None else None,
            "template": template,
            "data": dict(data) if data is not None else None,
            "category": category,
            "ttl": _ttl(ttl),
            "contacts": [_json(c) for c in contacts] if contacts is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self.send_body(body, idempotency_key=idempotency_key)

    def send_body(self, body: Body, *, idempotency_key: str | None = None) -> NotificationAccepted:
        """Send a notification given as the API's JSON body (e.g. read from a file)."""
        key = idempotency_key or str(uuid.uuid4())
        answer = self._call(
            "POST", "/v1/notifications", json=_json(body), headers={"Idempotency-Key": key}
        )
        return NotificationAccepted.model_validate(answer)

    def get(self, notification_id: str) -> NotificationOut:
        """State, steps, attempts, events and cost of one notification."""
        return NotificationOut.model_validate(
            self._call("GET", f"/v1/notifications/{notification_id}")
        )

    def cancel(self, notification_id: str) -> NotificationAccepted:
        """Stop a notification: nothing not yet sent will be sent (409 once finished)."""
        answer = self._call("POST", f"/v1/notifications/{notification_id}/cancel")
        return NotificationAccepted.model_validate(answer)

    # customers

    def put_customer(self, customer_id: str, body: Body) -> CustomerOut:
        """Create or replace a customer: ``contacts``, ``preferences``, ``timezone``, ``locale``."""
        answer = self._call("PUT", f"/v1/customers/{customer_id}", json=_json(body))
        return CustomerOut.model_validate(answer)

    def get_customer(self, customer_id: str) -> CustomerOut:
        return CustomerOut.model_validate(self._call("GET", f"/v1/customers/{customer_id}"))

    def update_preferences(self, customer_id: str, body: Body) -> CustomerOut:
        """Change only the preferences given."""
        answer = self._call("PATCH", f"/v1/customers/{customer_id}/preferences", json=_json(body))
        return CustomerOut.model_validate(answer)

    def history(self, customer_id: str, limit: int = 200) -> list[EventOut]:
        """The customer's timeline across channels, newest last."""
        answer = self._call("GET", f"/v1/customers/{customer_id}/history", params={"limit": limit})
        return TypeAdapter(list[EventOut]).validate_python(answer)

    # receipts, cascades, stats

    def receipt(
        self,
        status: str,
        *,
        attempt_id: str | None = None,
        notification_id: str | None = None,
        token: str | None = None,
        event_id: str | None = None,
    ) -> ReceiptOut:
        """Confirm ``delivered``, ``read`` or ``clicked`` for an attempt (or a push)."""
        fields = {
            "status": status,
            "attempt_id": attempt_id,
            "notification_id": notification_id,
            "token": token,
            "event_id": event_id,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        return ReceiptOut.model_validate(self._call("POST", "/v1/receipts", json=body))

    def cascades(self) -> list[CascadeOut]:
        return TypeAdapter(list[CascadeOut]).validate_python(self._call("GET", "/v1/cascades"))

    def stats(
        self, since: str | None = None, until: datetime | None = None, cascade: str | None = None
    ) -> dict[str, Any]:
        """``GET /v1/stats``: per channel counts, rates, cost and money saved."""
        params = {"since": since, "until": until.isoformat() if until else None, "cascade": cascade}
        answer = self._call("GET", "/v1/stats", params={k: v for k, v in params.items() if v})
        return dict(answer)

    def experiment(self, name: str) -> dict[str, Any]:
        """``GET /v1/experiments/{name}``: variants, weights, channels and statuses."""
        return dict(self._call("GET", f"/v1/experiments/{quote(name, safe='')}"))

    def change_variant(self, name: str, variant: str, action: str) -> dict[str, Any]:
        """``stop``, ``promote`` or ``resume`` one variant of an A/B experiment."""
        path = f"/v1/experiments/{quote(name, safe='')}/variants/{quote(variant, safe='')}"
        return dict(self._call("POST", f"{path}/{quote(action, safe='')}"))

    # transport

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; 503 and refused connections retried (sends keep their key)."""
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.ConnectError:
                if last or not self._retry_connect:
                    raise
                self._sleep(min(2.0**attempt, MAX_RETRY_AFTER))
                continue
            if response.status_code == 503 and not last:
                self._sleep(_retry_after(response, attempt))
                continue
            if response.is_error:
                raise ApiError(response.status_code, _problem(response))
            return response.json()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        seconds = 2.0**attempt
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": response.reason_phrase, "status": response.status_code}
