"""Pieces every provider simulator shares: request recording, ``hang``, callbacks.

A simulator is a :class:`Simulator` (a Starlette app) whose ``requests`` list
records every request it received and whose ``sent`` list records the messages
the simulated service accepted (they differ when a provider deduplicates).
``GET /_sim/requests`` returns both as JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route


@dataclass
class Recorded:
    """One request as the simulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  #: lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
        }


@dataclass
class SimState:
    """What a simulator saw and did; shared by its routes."""

    scenarios: dict[str, str]
    hang_seconds: float = 30.0
    requests: list[Recorded] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def scenario(self, recipient: object) -> str:
        return self.scenarios.get(str(recipient), "ok")


class Simulator(Starlette):
    """A provider simulator: an ASGI app plus what it recorded."""

    def __init__(self, routes: Sequence[BaseRoute], state: SimState) -> None:
        control = [Route("/_sim/requests", self._requests, methods=["GET"])]
        super().__init__(routes=[*control, *routes])
        self.sim = state

    @property
    def requests(self) -> list[Recorded]:
        return self.sim.requests

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.sim.sent

    async def _requests(self, request: Request) -> Response:
        return JSONResponse(
            {"requests": [r.as_dict() for r in self.sim.requests], "sent": self.sim.sent}
        )


def scenarios_with(defaults: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    return {**defaults, **(extra or {})}


async def record(state: SimState, request: Request) -> Recorded:
    """Read the whole request and append it to ``state.requests``."""
    entry = Recorded(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
    )
    state.requests.append(entry)
    return entry


async def hang(state: SimState, request: Request) -> Response:
    """Never answer: wait until the client gives up (read timeout) or the limit passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.hang_seconds
    while loop.time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.01)
    return Response(status_code=504)


async def call(
    url: str, headers: Mapping[str, str], body: bytes, *, method: str = "POST"
) -> httpx.Response:
    """Send a callback the way the provider would; return the receiver's answer."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        if method == "GET":
            return await client.get(url)
        return await client.post(url, content=body, headers=dict(headers))


async def deliver(
    url: str, headers: Mapping[str, str], body: bytes, *, method: str = "POST"
) -> JSONResponse:
    """Send a callback and report ``{"status_code", "body"}`` of the receiver's answer."""
    response = await call(url, headers, body, method=method)
    return JSONResponse({"status_code": response.status_code, "body": response.text})


def compact(value: Any) -> bytes:
    """JSON as providers send it: compact, non-ASCII escaped."""
    return json.dumps(value, separators=(",", ":")).encode()
