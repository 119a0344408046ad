"""Broadcast fan-out: one batch of members per task, on the ``engine`` queue.

``broadcast.fan_out(broadcast_id, batch)`` (ids only) plans the next
``broadcast_batch`` members (:mod:`dispatcher.audience`) and writes their
notifications, first attempts and history events with Core ``insert()`` in one
transaction, together with a compare-and-set of the broadcast's ``batches``
counter: a batch delivered twice (redelivery, a sweep restart racing a slow task)
commits once, the other run rolls back and creates nothing. After the commit the
doorbells ring and the next batch is queued. A fan-out whose task was lost makes
no progress; the sweep queues its next batch again (:func:`restart_stalled`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from dispatcher.audience import Member, Rows, Shared, member_rows, plan_member
from dispatcher.broadcasts import FANNING_OUT, SENDING
from dispatcher.bulk import insert_rows
from dispatcher.customers import preferences_of
from dispatcher.engagement import affinities_of
from dispatcher.history import written
from dispatcher.models import (
    Attempt,
    Broadcast,
    BroadcastMember,
    ContactPoint,
    Customer,
    Event,
    Notification,
)
from dispatcher.publisher import Doorbell
from dispatcher.runtime import Runtime
from dispatcher.states import NotificationState
from dispatcher.work import Work, unit_of_work

log = logging.getLogger(__name__)


def fan_out(rt: Runtime, broadcast_id: str, batch: int, now: datetime | None = None) -> str:
    """Fan out batch number ``batch``; returns ``created``, ``done`` or ``stale``."""
    with unit_of_work(rt, now) as work:
        outcome = _batch(rt, work, broadcast_id, batch)
    if outcome == "created":
        rt.publisher.fan_out(broadcast_id, batch + 1)
    return outcome


def _batch(rt: Runtime, work: Work, broadcast_id: str, batch: int) -> str:
    session, now = work.session, work.now
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.state != FANNING_OUT or broadcast.batches != batch:
        return "stale"  # done already (a duplicate message), or cancelled
    size = rt.settings.broadcast_batch
    query = select(BroadcastMember.customer_id).where(BroadcastMember.broadcast_id == broadcast_id)
    if broadcast.cursor is not None:
        query = query.where(col(BroadcastMember.customer_id) > broadcast.cursor)
    ids = list(session.exec(query.order_by(col(BroadcastMember.customer_id)).limit(size)))
    last = len(ids) < size
    # The compare-and-set first: it takes the row lock, so a concurrent run of the
    # same batch waits here, then finds ``batches`` moved and gives up.
    values: dict[str, object] = {
        "batches": batch + 1,
        "processed": Broadcast.processed + len(ids),
        "created": Broadcast.created + len(ids),
        "progress_at": now,
    }
    if ids:
        values["cursor"] = ids[-1]
    if last:
        values["state"] = SENDING
    moved = session.execute(
        update(Broadcast)
        .where(
            col(Broadcast.id) == broadcast_id,
            col(Broadcast.state) == FANNING_OUT,
            col(Broadcast.batches) == batch,
        )
        .values(**values)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return "stale"
    rows = plan_batch(session, rt, broadcast, ids, now)
    _write(session, rows)
    for attempt_id, channel, nid in rows.bells:
        work.ring(Doorbell(attempt_id, channel, nid))
    log.info(
        "broadcast %s batch %d: %d members", broadcast_id, batch, len(ids), extra={"last": last}
    )
    return "done" if last else "created"


def plan_batch(
    session: Session, rt: Runtime, broadcast: Broadcast, ids: list[str], now: datetime
) -> Rows:
    """Load the batch's customers, contacts and cap counts in three queries (an adaptive
    cascade: their engagement rows in one more); plan each."""
    cascade = rt.cascades.get(broadcast.cascade)
    rows = Rows()
    if cascade is None or not ids:
        return rows
    customers = {c.id: c for c in session.exec(select(Customer).where(col(Customer.id).in_(ids)))}
    contacts: dict[str, list[ContactPoint]] = defaultdict(list)
    for contact in session.exec(
        select(ContactPoint)
        .where(col(ContactPoint.customer_id).in_(ids), ContactPoint.status == "active")
        .order_by(col(ContactPoint.id))
    ):
        contacts[contact.customer_id].append(contact)
    category = broadcast.category
    prefs = {cid: preferences_of(c) for cid, c in customers.items()}
    limits = {
        cid: p.max_per_day.get(category, rt.settings.max_per_day.get(category))
        for cid, p in prefs.items()
    }
    counts = _sent_today(
        session, [cid for cid, lim in limits.items() if lim is not None], category, now
    )
    variants = cascade.experiment.variants if cascade.experiment else ()
    adaptive = "adaptive" in (cascade.order, *(v.order for v in variants))
    affinities = affinities_of(session, ids, now, rt.settings) if adaptive else {}
    shared = Shared(
        broadcast_id=broadcast.id,
        api_key_id=broadcast.api_key_id,
        cascade=cascade,
        category=category,
        content=broadcast.content,
        ttl=timedelta(seconds=broadcast.ttl_seconds),
    )
    for customer_id in ids:
        member = Member(
            customer_id,
            customers.get(customer_id),
            contacts.get(customer_id, []),
            sent_today=counts.get(customer_id, 0),
            limit=limits.get(customer_id),
            preferences=prefs.get(customer_id),
            affinity=affinities.get(customer_id),
        )
        # A/B: the member's variant is planned (its steps); the broadcast's TTL stays.
        assigned = rt.experiments.for_cascade(session, cascade, customer_id, now)
        planned = plan_member(assigned.cascade, member, category, now)
        planned = replace(planned, experiment=assigned.experiment, variant=assigned.variant)
        member_rows(rows, shared, customer_id, planned, now)
    return rows


def _sent_today(session: Session, ids: list[str], category: str, now: datetime) -> dict[str, int]:
    if not ids:
        return {}
    counted = session.exec(
        select(Notification.customer_id, func.count())
        .where(
            col(Notification.customer_id).in_(ids),
            Notification.category == category,
            col(Notification.created_at) > now - timedelta(days=1),
            Notification.state != NotificationState.SUPPRESSED.value,
        )
        .group_by(col(Notification.customer_id))
    )
    return {customer_id: int(count) for customer_id, count in counted}


def _write(session: Session, rows: Rows) -> None:
    """Bulk inserts (COPY on PostgreSQL) per table, in the batch's transaction."""
    connection = session.connection()
    for table, values in (
        (Notification.__table__, rows.notifications),  # type: ignore[attr-defined]
        (Attempt.__table__, rows.attempts),  # type: ignore[attr-defined]
        (Event.__table__, rows.events),  # type: ignore[attr-defined]
    ):
        insert_rows(connection, table, values)
    written(session, rows.events)  # counted in the metrics once committed


def restart_stalled(rt: Runtime, now: datetime) -> int:
    """Sweep phase: queue again the next batch of fan-outs that made no progress lately.

    Harmless if the original task is only slow: the batch's compare-and-set lets one
    run commit. ``progress_at`` moves, so a restart is not repeated every tick.
    """
    stalled_before = now - timedelta(seconds=rt.settings.broadcast_stalled_after)
    restarts: list[tuple[str, int]] = []
    with unit_of_work(rt, now) as work:
        for broadcast in work.session.exec(
            select(Broadcast)
            .where(
                Broadcast.state == FANNING_OUT,
                col(Broadcast.progress_at) <= stalled_before,
            )
            .limit(rt.settings.sweep_batch)
        ):
            broadcast.progress_at = now
            work.session.add(broadcast)
            restarts.append((broadcast.id, broadcast.batches))
    for broadcast_id, batch in restarts:
        rt.publisher.fan_out(broadcast_id, batch)
    return len(restarts)
