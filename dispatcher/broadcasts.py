"""Broadcasts: one cascade to many customers.

Accepting one stores only the broadcast row and its audience (``broadcast_member``,
Core bulk inserts, or one ``INSERT ... SELECT`` for a filter) and cuts the audience
into batches (``broadcast.bounds``); the fan-out tasks (:mod:`dispatcher.fanout`)
create the notifications, several batches at once. Progress is counted
with aggregate SQL over the broadcast's notifications; cancelling stops the fan-out
and cancels, by state, everything not yet sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, update
from sqlmodel import Session, col, select

from config.cascades import Cascade
from config.settings import Settings
from dispatcher.broadcast_schemas import BroadcastIn, BroadcastOut
from dispatcher.broadcast_tables import Broadcast, BroadcastMember
from dispatcher.content import render_variants
from dispatcher.customer_tables import Customer
from dispatcher.customers import FieldError
from dispatcher.history import record
from dispatcher.idempotency import find_by_key, request_hash
from dispatcher.intake import IdempotencyConflict
from dispatcher.models import Attempt, Event, Notification
from dispatcher.schemas import NotificationIn
from dispatcher.states import (
    CONFIRMED_STATES,
    OPEN_STATES,
    WAITING_STATES,
    AttemptState,
    NotificationState,
)

FANNING_OUT, SENDING, DONE, CANCELLED = "fanning_out", "sending", "done", "cancelled"
_MEMBER_CHUNK = 10_000
_OPEN = [s.value for s in OPEN_STATES]


def _rendered(cascade: Cascade, body: BroadcastIn, base: str | None) -> dict[str, Any]:
    """Content for every channel the cascade may use in every locale, rendered once: a
    missing variable is a 422 now, not a million broken messages later. Each member
    gets the variant of its locale when its batch is fanned out."""
    channels = cascade.every_channel()  # A/B: each member may get another variant's steps
    as_single = NotificationIn(
        customer_id="broadcast",
        cascade=body.cascade,
        category=body.category,
        content=body.content,
        template=body.template,
        data=body.data,
    )
    return render_variants(cascade, as_single, channels, base)


def accept(
    session: Session,
    body: BroadcastIn,
    *,
    cascades: Mapping[str, Cascade],
    settings: Settings,
    api_key_id: str,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Broadcast, bool]:
    """Store the broadcast and its audience; returns it and whether it was replayed."""
    digest = request_hash(body)
    if idempotency_key:
        existing = find_by_key(session, Broadcast, api_key_id, idempotency_key)
        if existing is not None:
            if existing.request_hash != digest:
                raise IdempotencyConflict(idempotency_key)
            return existing, True
    cascade = cascades.get(body.cascade)
    if cascade is None:
        known = ", ".join(sorted(cascades)) or "none"
        raise FieldError("cascade", f"unknown cascade {body.cascade!r} (known: {known})")
    audience = body.audience
    broadcast = Broadcast(
        cascade=cascade.name,
        category=body.category or cascade.category,
        content=_rendered(cascade, body, settings.public_url if settings.link_tracking else None),
        ttl_seconds=(body.ttl or cascade.ttl).total_seconds(),
        audience_kind="ids" if audience.customer_ids is not None else (audience.filter or "locale"),
        audience_filter=audience.locale,
        idempotency_key=idempotency_key,
        request_hash=digest,
        api_key_id=api_key_id,
        created_at=now,
        progress_at=now,
    )
    session.add(broadcast)
    session.flush()
    broadcast.audience = _store_members(session, broadcast.id, body)
    broadcast.bounds = bounds(session, broadcast.id, settings.broadcast_batch)
    session.add(broadcast)
    return broadcast, False


def _store_members(session: Session, broadcast_id: str, body: BroadcastIn) -> int:
    table = BroadcastMember.__table__  # type: ignore[attr-defined]
    ids = body.audience.customer_ids
    if ids is not None:
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _MEMBER_CHUNK):
            chunk = unique[start : start + _MEMBER_CHUNK]
            session.execute(
                insert(table), [{"broadcast_id": broadcast_id, "customer_id": c} for c in chunk]
            )
        return len(unique)
    chosen = select(literal(broadcast_id), col(Customer.id))
    if body.audience.locale is not None:
        chosen = chosen.where(Customer.locale == body.audience.locale)
    session.execute(insert(table).from_select(["broadcast_id", "customer_id"], chosen))
    count = session.exec(
        select(func.count())
        .select_from(BroadcastMember)
        .where(BroadcastMember.broadcast_id == broadcast_id)
    ).one()
    return int(count)


def bounds(session: Session, broadcast_id: str, size: int) -> list[str]:
    """The first member of every ``size`` members, in the database's order of ids: the
    batches, each the members from its bound up to the next (the last: up to the end)."""
    numbered = (
        select(
            col(BroadcastMember.customer_id).label("customer_id"),
            func.row_number().over(order_by=col(BroadcastMember.customer_id)).label("n"),
        )
        .where(BroadcastMember.broadcast_id == broadcast_id)
        .subquery()
    )
    firsts = select(numbered.c.customer_id).where((numbered.c.n - 1) % size == 0)
    return [str(c) for c in session.execute(firsts.order_by(numbered.c.customer_id)).scalars()]


def cancel(session: Session, broadcast: Broadcast, now: datetime, chunk: int = 5_000) -> bool:
    """Stop the fan-out and cancel every open notification; False if already finished.

    Works in chunks, each committed: pending attempts are cancelled by state (a worker
    that claims one afterwards finds its notification closed and sends nothing).
    """
    moved = session.execute(
        update(Broadcast)
        .where(
            col(Broadcast.id) == broadcast.id,
            col(Broadcast.state).in_([FANNING_OUT, SENDING]),
        )
        .values(state=CANCELLED, finished_at=now)
    )
    session.commit()
    if not moved.rowcount:  # type: ignore[attr-defined]
        return False
    while _cancel_chunk(session, broadcast.id, now, chunk):
        session.commit()
    session.commit()
    session.refresh(broadcast)
    record(session, "broadcast_cancelled", at=now, source="api", broadcast_id=broadcast.id)
    session.commit()
    return True


def _cancel_chunk(session: Session, broadcast_id: str, now: datetime, chunk: int) -> int:
    ids = list(
        session.exec(
            select(Notification.id)
            .where(Notification.broadcast_id == broadcast_id, col(Notification.state).in_(_OPEN))
            .limit(chunk)
            .with_for_update()
        )
    )
    if not ids:
        return 0
    session.execute(
        update(Notification)
        .where(col(Notification.id).in_(ids), col(Notification.state).in_(_OPEN))
        .values(state=NotificationState.CANCELLED.value, finished_at=now, reason="cancelled")
    )
    in_chunk = col(Attempt.notification_id).in_(ids)
    session.execute(
        update(Attempt)
        .where(in_chunk, col(Attempt.state) == AttemptState.PENDING.value)
        .values(state=AttemptState.CANCELLED.value, finished_at=now)
    )
    session.execute(
        update(Attempt)
        .where(in_chunk, col(Attempt.state).in_([s.value for s in WAITING_STATES]))
        .values(escalate_at=None)
    )
    rows = session.exec(
        select(Notification.id, Notification.customer_id).where(col(Notification.id).in_(ids))
    ).all()
    event = {"attempt_id": None, "channel": None, "type": "finished", "at": now, "source": "api"}
    detail = {"state": NotificationState.CANCELLED.value, "reason": "cancelled"}
    session.execute(
        insert(Event.__table__),  # type: ignore[attr-defined]
        [{**event, "notification_id": n, "customer_id": c, "detail": detail} for n, c in rows],
    )
    return len(ids)


def progress(session: Session, broadcast: Broadcast) -> BroadcastOut:
    """Counts by aggregate SQL over the broadcast's notifications and attempts."""
    mine = col(Notification.broadcast_id) == broadcast.id
    by_state: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for state, reason, count in session.exec(
        select(Notification.state, Notification.reason, func.count())
        .where(mine)
        .group_by(col(Notification.state), col(Notification.reason))
    ):
        by_state[state] = by_state.get(state, 0) + int(count)
        if state == NotificationState.SUPPRESSED:
            suppressed[reason or "unknown"] = int(count)
    joined = select(func.count(func.distinct(Attempt.notification_id))).join(
        Notification, col(Notification.id) == col(Attempt.notification_id)
    )
    sent = session.exec(joined.where(mine, col(Attempt.sent_at).is_not(None))).one()
    scheduled = session.exec(
        joined.where(
            mine,
            col(Attempt.state) == AttemptState.PENDING.value,
            col(Attempt.published_at).is_(None),
        )
    ).one()
    open_ = sum(by_state.get(s, 0) for s in _OPEN)
    state = broadcast.state
    if state == SENDING and open_ == 0:
        state = DONE
    return BroadcastOut(
        id=broadcast.id,
        state=state,
        audience=broadcast.audience,
        cascade=broadcast.cascade,
        category=broadcast.category,
        processed=broadcast.processed,
        created=sum(by_state.values()),
        suppressed=suppressed,
        opted_out=sum(n for r, n in suppressed.items() if r.startswith("opted_out")),
        scheduled=int(scheduled),
        sent=int(sent),
        confirmed=sum(by_state.get(s, 0) for s in CONFIRMED_STATES),
        delivered=by_state.get(NotificationState.DELIVERED, 0),
        read=by_state.get(NotificationState.READ, 0),
        failed=by_state.get(NotificationState.EXHAUSTED, 0),
        expired=by_state.get(NotificationState.EXPIRED, 0),
        cancelled=by_state.get(NotificationState.CANCELLED, 0),
        in_progress=open_,
        created_at=broadcast.created_at,
        finished_at=broadcast.finished_at,
    )
