"""A tiny web app that hands real HTTP callbacks to a provider's ``handle()``.

Simulators POST signed callbacks to ``<base>/webhook`` of this app over real
HTTP; it converts each request into a :class:`WebhookRequest` (exact raw body,
lower-case headers, parsed form fields) the way the dispatcher's webhook route
does, and records the replies, so tests see exactly what production code would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.base import (
    InboundMessage,
    ReceiptEvent,
    WebhookReceiver,
    WebhookReply,
    WebhookRequest,
)
from providers.errors import WebhookSignatureError


@dataclass
class Received:
    """What the receiver app saw: replies given and signature failures."""

    replies: list[WebhookReply] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    @property
    def events(self) -> list[ReceiptEvent]:
        return [event for reply in self.replies for event in reply.events]

    @property
    def inbound(self) -> list[InboundMessage]:
        return [message for reply in self.replies for message in reply.inbound]


def create_receiver(receiver: WebhookReceiver) -> tuple[Starlette, Received]:
    """An app serving ``receiver.handle`` at ``/webhook``, and its record."""
    received = Received()

    async def webhook(request: Request) -> Response:
        body = await request.body()
        form: dict[str, list[str]] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        incoming = WebhookRequest(
            method=request.method,
            url=str(request.url),
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            body=body,
            form=form,
            received_at=datetime.now(UTC),
        )
        try:
            reply = receiver.handle(incoming)
        except WebhookSignatureError as exc:
            received.refused.append(exc.status_code)
            return Response(str(exc), status_code=exc.status_code)
        received.replies.append(reply)
        return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)

    app = Starlette(routes=[Route("/webhook", webhook, methods=["GET", "POST"])])
    return app, received
