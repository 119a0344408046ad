"""Canned provider answers over ``httpx.MockTransport``, recording what was sent."""

from __future__ import annotations

from collections.abc import Callable

import httpx

Answer = httpx.Response | Exception | None


class CannedClients:
    """Makes clients that answer one canned response (or raise); closes them all at the end."""

    def __init__(self) -> None:
        self._clients: list[httpx.Client] = []

    def answering(
        self, answer: Answer, default: Callable[[], httpx.Response]
    ) -> tuple[httpx.Client, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if isinstance(answer, Exception):
                raise answer
            return answer or default()

        client = httpx.Client(transport=httpx.MockTransport(handler))
        self._clients.append(client)
        return client, seen

    def close(self) -> None:
        for client in self._clients:
            client.close()
