"""Receipts from apps (``/v1/receipts``) and signed provider webhooks (``/v1/webhooks``)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response, Security
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from dispatcher.api.deps import RuntimeDep, SessionDep, authenticate, bearer
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem
from dispatcher.inbound import record_inbound
from dispatcher.models import Attempt, Notification
from dispatcher.nonces import Claim, claim
from dispatcher.publisher import Doorbell
from dispatcher.receipts import ingest
from dispatcher.schemas import ReceiptIn, ReceiptOut
from dispatcher.tokens import check_receipt_token
from providers.base import Channel, ReceiptEvent, ReceiptKind, WebhookReply, WebhookRequest
from providers.errors import WebhookSignatureError

router = APIRouter(prefix="/v1", tags=["receipts"])
log = logging.getLogger("dispatcher.api.webhooks")


@router.post(
    "/receipts",
    response_model=ReceiptOut,
    responses=problems(400, 401, 404, 413, 422, 503),
    dependencies=[Security(bearer)],
    openapi_extra={"security": [{}]},  # or no key at all: the push's receipt_token
)
def app_receipt(
    body: ReceiptIn, request: Request, runtime: RuntimeDep, session: SessionDep
) -> ReceiptOut:
    """An app confirms a push was delivered or read (API key or the attempt's receipt token).

    Authentication comes before any lookup, so the answer to a caller without a valid key
    or token is the same 401 whether the attempt exists or not.
    """
    attempt = _authorized_attempt(session, body, request, runtime)
    kind = ReceiptKind(body.status)  # clicked: a tap on the message, applied as a click
    # Dedupe ids live under the attempt: a client's event id can never equal (and so
    # pre-claim) the id of another attempt's receipt.
    suffix = f"client:{body.event_id}" if body.event_id else kind.value
    event = ReceiptEvent(
        # The push's token confirms push attempts only; an API key (the operator) any attempt.
        provider="operator" if authenticate(request) is not None else "app",
        event_id=f"{attempt.id}:{suffix}",
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


def _unauthorized() -> Problem:
    return Problem(
        401,
        "Unauthorized",
        "send an API key or the push's receipt_token",
        headers={"WWW-Authenticate": 'Bearer realm="cascade"'},
    )


def _authorized_attempt(
    session: Session, body: ReceiptIn, request: Request, runtime: RuntimeDep
) -> Attempt:
    """The attempt, for a caller with the API key or the attempt's token; else a 401."""
    secret = runtime.settings.effective_receipt_secret
    if authenticate(request) is not None:
        return _find_attempt(session, body)
    if not body.token:
        raise _unauthorized()
    if body.attempt_id:
        # The token is an HMAC of the attempt id: checked without touching the database.
        if not check_receipt_token(secret, body.attempt_id, body.token):
            raise _unauthorized()
        return _find_attempt(session, body)
    attempt = _push_attempt_of(session, body.notification_id or "")
    if attempt is None or not check_receipt_token(secret, attempt.id, body.token):
        raise _unauthorized()  # the same answer whether or not the notification exists
    return attempt


def _push_attempt_of(session: Session, notification_id: str) -> Attempt | None:
    return session.exec(
        select(Attempt)
        .where(Attempt.notification_id == notification_id, Attempt.channel == "push")
        .order_by(col(Attempt.step))
    ).first()


def _find_attempt(session: Session, body: ReceiptIn) -> Attempt:
    if body.attempt_id:
        attempt = session.get(Attempt, body.attempt_id)
    else:
        attempt = _push_attempt_of(session, body.notification_id or "")
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


@router.get(
    "/webhooks/{provider}",
    operation_id="webhook_handshake",
    responses=problems(400, 401, 403, 404, 405, 422),
)
@router.post(
    "/webhooks/{provider}",
    operation_id="receive_webhook",
    responses=problems(400, 401, 403, 404, 405, 413, 422, 503),
)
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
    except _UNREADABLE as exc:
        # A receiver tripped over a body it could not read: the sender's fault, not ours.
        log.warning("unreadable %s callback (%s)", provider, type(exc).__name__)
        raise _refused(400, "the body could not be read") from None
    if reply.status_code >= 400:
        raise _refused(reply.status_code, reply.body)
    if reply.events or reply.nonce or reply.inbound:
        channel = getattr(receiver, "channel", None)
        claimed = await run_in_threadpool(_ingest_events, runtime, provider, reply, channel)
        if claimed is Claim.REPLAY:
            raise Problem(403, "Replayed callback", f"{provider}: this signature was used before")
    return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)


#: What parsing a hostile body can raise (UnicodeDecodeError is a ValueError); a 400, never a 500.
_UNREADABLE = (RecursionError, ValueError, TypeError, LookupError, AttributeError)
_TITLES = {400: "Malformed callback", 404: "Not found", 405: "Method not allowed"}


def _refused(status: int, detail: str) -> Problem:
    """A receiver's refusal as problem JSON; a 400 names the body as the field at fault."""
    errors = [{"field": "(body)", "message": detail or "malformed"}] if status == 400 else None
    return Problem(status, _TITLES.get(status, "Refused"), detail or None, errors=errors)


def _ingest_events(
    runtime: RuntimeDep, provider: str, reply: WebhookReply, channel: Channel | None
) -> Claim:
    """Store the callback's nonce (if any), its receipts and inbound times in one transaction."""
    bells: list[Doorbell] = []
    now = runtime.now()
    with Session(runtime.engine, expire_on_commit=False) as session:
        if reply.nonce is not None:
            claimed = claim(session, provider, reply.nonce, now)
            if claimed is not Claim.NEW:
                return claimed  # nothing applied: a redelivery, or a forgery
        ingest(session, list(reply.events), now, bells)
        if reply.inbound and channel is not None:
            record_inbound(session, channel, reply.inbound)
        session.commit()
    runtime.publisher.publish(bells)
    return Claim.NEW
