"""Receipts from apps (``/v1/receipts``) and signed provider webhooks (``/v1/webhooks``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from dispatcher.api.deps import RuntimeDep, SessionDep, authenticate
from dispatcher.api.problems import Problem
from dispatcher.models import Attempt, Notification
from dispatcher.publisher import Doorbell
from dispatcher.receipts import ingest
from dispatcher.schemas import ReceiptIn, ReceiptOut
from dispatcher.tokens import check_receipt_token
from providers.base import ReceiptEvent, ReceiptKind, WebhookRequest
from providers.errors import WebhookSignatureError

router = APIRouter(prefix="/v1", tags=["receipts"])


@router.post("/receipts", response_model=ReceiptOut)
def app_receipt(
    body: ReceiptIn, request: Request, runtime: RuntimeDep, session: SessionDep
) -> ReceiptOut:
    """An app confirms a push was delivered or read (API key or the attempt's receipt token)."""
    attempt = _find_attempt(session, body)
    secret = runtime.settings.effective_receipt_secret
    token_ok = bool(body.token) and check_receipt_token(secret, attempt.id, body.token or "")
    if not token_ok and authenticate(request) is None:
        raise Problem(
            401,
            "Unauthorized",
            "send an API key or the push's receipt_token",
            headers={"WWW-Authenticate": 'Bearer realm="cascade"'},
        )
    kind = ReceiptKind.READ if body.status in ("read", "clicked") else ReceiptKind.DELIVERED
    event = ReceiptEvent(
        provider="app",
        event_id=body.event_id or f"{attempt.id}:{kind.value}",
        kind=kind,
        reference=attempt.id,
    )
    now = runtime.now()
    bells: list[Doorbell] = []
    outcomes = ingest(session, [event], now, bells)
    session.commit()
    runtime.publisher.publish(bells)
    notification = session.get(Notification, attempt.notification_id)
    return ReceiptOut(
        outcome=outcomes[0], notification_state=notification.state if notification else None
    )


def _find_attempt(session: SessionDep, body: ReceiptIn) -> Attempt:
    if body.attempt_id:
        attempt = session.get(Attempt, body.attempt_id)
    else:
        attempt = session.exec(
            select(Attempt)
            .where(Attempt.notification_id == body.notification_id, Attempt.channel == "push")
            .order_by(col(Attempt.step))
        ).first()
    if attempt is None:
        field = "attempt_id" if body.attempt_id else "notification_id"
        raise Problem(
            404,
            "Not found",
            "no such attempt",
            errors=[{"field": field, "message": "no matching attempt"}],
        )
    return attempt


async def _webhook_request(request: Request, runtime: RuntimeDep) -> WebhookRequest:
    body = await request.body()
    public = runtime.settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        public += "?" + request.url.query
    form: dict[str, list[str]] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return WebhookRequest(
        method=request.method,
        url=public,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        body=body,
        form=form,
        received_at=runtime.now(),
    )


@router.get("/webhooks/{provider}", operation_id="webhook_handshake")
@router.post("/webhooks/{provider}", operation_id="webhook")
async def webhook(provider: str, request: Request, runtime: RuntimeDep) -> Response:
    """Provider callbacks and verification handshakes, authenticated by signature."""
    receiver = runtime.router.receiver(provider)
    if receiver is None:
        raise Problem(404, "Not found", f"no webhook for provider {provider!r}")
    incoming = await _webhook_request(request, runtime)
    try:
        reply = receiver.handle(incoming)
    except WebhookSignatureError as exc:
        raise Problem(exc.status_code, "Invalid signature", str(exc)) from None
    if reply.events:
        await run_in_threadpool(_ingest_events, runtime, list(reply.events))
    return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)


def _ingest_events(runtime: RuntimeDep, events: list[ReceiptEvent]) -> None:
    bells: list[Doorbell] = []
    with Session(runtime.engine, expire_on_commit=False) as session:
        ingest(session, events, runtime.now(), bells)
        session.commit()
    runtime.publisher.publish(bells)
