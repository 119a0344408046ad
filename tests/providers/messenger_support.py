"""Test helpers for the messenger providers: scripted transports, webhook requests, servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from providers.base import WebhookReceiver, WebhookRequest
from tests.simulators.server import serve
from tests.simulators.sim_common import Simulator
from tests.simulators.webhook_receiver import Received, create_receiver

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
Reply = httpx.Response | Exception


@dataclass
class Script:
    """A MockTransport handler answering from a list and recording requests."""

    replies: list[Reply]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def json(self) -> Any:
        return json.loads(self.last.content)


def reply(status: int, body: Any = None, **kwargs: Any) -> httpx.Response:
    """A canned response; ``body`` is JSON unless it is ``bytes``."""
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, **kwargs)
    return httpx.Response(status, json=body, **kwargs)


@contextmanager
def scripted(*replies: Reply) -> Iterator[tuple[httpx.Client, Script]]:
    """An ``httpx.Client`` whose transport answers ``replies`` in order."""
    script = Script(list(replies))
    with httpx.Client(transport=httpx.MockTransport(script)) as client:
        yield client, script


def no_retry_wait(monkeypatch: pytest.MonkeyPatch, method: Callable[..., Any]) -> None:
    """Keep ``quick_retry``'s attempts but skip its sleeps (the decorated method's Retrying)."""
    monkeypatch.setattr(vars(method)["retry"], "sleep", lambda _seconds: None)


def webhook_request(
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    query: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """A callback as the dispatcher hands it to ``handle()``."""
    return WebhookRequest(
        method=method,
        url="https://cascade.example/v1/webhooks/test",
        headers={k.lower(): v for k, v in (headers or {}).items()},
        query=dict(query or {}),
        body=body,
        received_at=NOW,
    )


@contextmanager
def running(sim: Simulator, receiver: WebhookReceiver) -> Iterator[tuple[str, str, Received]]:
    """Serve a simulator and a webhook receiver; yield both base URLs and the record."""
    app, received = create_receiver(receiver)
    with ExitStack() as stack:
        sim_url = stack.enter_context(serve(sim))
        hook_url = stack.enter_context(serve(app))
        yield sim_url, hook_url + "/webhook", received
