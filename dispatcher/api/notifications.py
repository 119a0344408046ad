"""``/v1/notifications``: send, inspect, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dispatcher.api.deps import ApiKeyDep, RuntimeDep, SessionDep
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem, busy, idempotency_conflict
from dispatcher.customers import FieldError
from dispatcher.idempotency import find_by_key, request_hash
from dispatcher.intake import Accepted, IdempotencyConflict, Request, accept_round
from dispatcher.lifecycle import finish
from dispatcher.models import Notification
from dispatcher.schemas import (
    AttemptOut,
    EventOut,
    NotificationAccepted,
    NotificationIn,
    NotificationOut,
    StepOut,
)
from dispatcher.states import OPEN_STATES, NotificationState
from dispatcher.timeline import rows_of

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

#: Our notification ids are UUIDs; anything else is refused before the database sees it.
NotificationId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9\-]+$")]

#: How often a request that lost a unique-row race to a concurrent one is tried again.
RETRIES = 3


def field_problem(exc: FieldError) -> Problem:
    return Problem(
        422, "Invalid request", str(exc), errors=[{"field": exc.field, "message": exc.message}]
    )


def accepted_out(notification: Notification) -> NotificationAccepted:
    return NotificationAccepted(
        id=notification.id,
        state=notification.state,
        reason=notification.reason,
        steps=[
            StepOut(step=i, channel=s["channel"], wait_for=s["wait_for"], timeout=s["timeout"])
            for i, s in enumerate(notification.steps)
        ],
    )


@router.post(
    "",
    status_code=202,
    response_model=NotificationAccepted,
    responses=problems(400, 401, 409, 413, 422, 503),
)
def send_notification(
    body: NotificationIn,
    runtime: RuntimeDep,
    key_id: ApiKeyDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> NotificationAccepted:
    """Accept a notification and start its cascade."""
    intake = runtime.batch("intake", lambda requests: accept_round(runtime, requests))
    request = Request(body, key_id, idempotency_key, runtime.now())
    for _try in range(RETRIES):
        try:
            result: Accepted = intake.submit(request)
        except FieldError as exc:
            raise field_problem(exc) from None
        except IdempotencyConflict:
            raise idempotency_conflict() from None
        except IntegrityError:
            # A concurrent request committed first: the same Idempotency-Key (replay it,
            # or 409 if the body differs), or some other unique row (try again).
            if idempotency_key:
                with Session(runtime.engine, expire_on_commit=False) as session:
                    existing = find_by_key(session, Notification, key_id, idempotency_key)
                if existing is not None:
                    if existing.request_hash != request_hash(body):
                        raise idempotency_conflict() from None
                    return accepted_out(existing)
            continue
        return accepted_out(result.notification)
    raise busy()


def _load(session: Session, notification_id: str) -> Notification:
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise Problem(404, "Not found", f"no notification {notification_id}")
    return notification


@router.get(
    "/{notification_id}", response_model=NotificationOut, responses=problems(401, 404, 422, 503)
)
def get_notification(
    notification_id: NotificationId, session: SessionDep, _: ApiKeyDep
) -> NotificationOut:
    """State, resolved steps, attempts, events and cost of one notification."""
    notification = _load(session, notification_id)
    attempts, events = rows_of(session, notification.id)
    base = accepted_out(notification)
    return NotificationOut(
        **base.model_dump(),
        customer_id=notification.customer_id,
        cascade=notification.cascade,
        category=notification.category,
        created_at=notification.created_at,
        expires_at=notification.expires_at,
        finished_at=notification.finished_at,
        cost=round(notification.cost, 6),
        attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        events=[EventOut.model_validate(e, from_attributes=True) for e in events],
        experiment=notification.experiment,
        variant=notification.variant,
    )


@router.post(
    "/{notification_id}/cancel",
    response_model=NotificationAccepted,
    responses=problems(401, 404, 409, 413, 422, 503),
)
def cancel_notification(
    notification_id: NotificationId, runtime: RuntimeDep, session: SessionDep, _: ApiKeyDep
) -> NotificationAccepted:
    """Stop a notification: nothing not yet sent will be sent."""
    notification = _load(session, notification_id)
    if notification.state not in OPEN_STATES:
        raise Problem(409, "Already finished", f"the notification is {notification.state}")
    now = runtime.now()
    if not finish(
        session, notification, NotificationState.CANCELLED, now, source="api", reason="cancelled"
    ):
        raise Problem(409, "Already finished", "the notification finished meanwhile")
    session.commit()
    return accepted_out(notification)
