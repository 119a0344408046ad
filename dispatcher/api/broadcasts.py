"""``/v1/broadcasts``: one cascade to many customers, fanned out in batches by tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dispatcher.api.deps import ApiKeyDep, RuntimeDep, SessionDep
from dispatcher.api.notifications import field_problem
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem, idempotency_conflict
from dispatcher.broadcast_schemas import BroadcastAccepted, BroadcastIn, BroadcastOut
from dispatcher.broadcast_tables import Broadcast
from dispatcher.broadcasts import accept, cancel, progress
from dispatcher.customers import FieldError
from dispatcher.fanout import first_batches
from dispatcher.idempotency import find_by_key, request_hash
from dispatcher.intake import IdempotencyConflict

router = APIRouter(prefix="/v1/broadcasts", tags=["broadcasts"])


def _accepted(broadcast: Broadcast) -> BroadcastAccepted:
    return BroadcastAccepted(id=broadcast.id, state=broadcast.state, audience=broadcast.audience)


@router.post(
    "",
    status_code=202,
    response_model=BroadcastAccepted,
    responses=problems(400, 401, 409, 413, 422, 503),
)
def create_broadcast(
    body: BroadcastIn,
    runtime: RuntimeDep,
    session: SessionDep,
    key_id: ApiKeyDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> BroadcastAccepted:
    """Store a broadcast and its audience; tasks create the notifications in batches."""
    try:
        broadcast, replayed = accept(
            session,
            body,
            cascades=runtime.cascades,
            settings=runtime.settings,
            api_key_id=key_id,
            idempotency_key=idempotency_key,
            now=runtime.now(),
        )
        session.commit()
    except FieldError as exc:
        session.rollback()
        raise field_problem(exc) from None
    except IdempotencyConflict:
        session.rollback()
        raise idempotency_conflict() from None
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first.
        session.rollback()
        existing = find_by_key(session, Broadcast, key_id, idempotency_key or "")
        if existing is None or existing.request_hash != request_hash(body):
            raise idempotency_conflict() from None
        return _accepted(existing)
    if not replayed:
        for batch in first_batches(runtime, broadcast):
            runtime.publisher.fan_out(broadcast.id, batch)
    return _accepted(broadcast)


def _load(session: Session, broadcast_id: str) -> Broadcast:
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise Problem(404, "Not found", f"no broadcast {broadcast_id}")
    return broadcast


@router.get("/{broadcast_id}", response_model=BroadcastOut, responses=problems(401, 404, 422, 503))
def get_broadcast(broadcast_id: str, session: SessionDep, _: ApiKeyDep) -> BroadcastOut:
    """State and progress: audience, created, suppressed by reason, sent, confirmed, failed."""
    return progress(session, _load(session, broadcast_id))


@router.post(
    "/{broadcast_id}/cancel",
    response_model=BroadcastOut,
    responses=problems(401, 404, 409, 413, 422, 503),
)
def cancel_broadcast(
    broadcast_id: str, runtime: RuntimeDep, session: SessionDep, _: ApiKeyDep
) -> BroadcastOut:
    """Stop the fan-out and cancel everything not yet sent."""
    broadcast = _load(session, broadcast_id)
    if not cancel(session, broadcast, runtime.now()):
        state = progress(session, broadcast).state
        raise Problem(409, "Already finished", f"the broadcast is {state}")
    return progress(session, broadcast)
