"""Broadcast fan-out: batches of members, several at once, on the ``engine`` queue.

``broadcast.fan_out(broadcast_id, batch)`` (ids only) plans the members of batch
``batch`` (those from ``broadcast.bounds[batch]`` up to the next bound, see
:func:`dispatcher.broadcasts.bounds`) with :func:`dispatcher.members.plan_batch`
and writes their notifications, first attempts and history events in one
transaction (COPY on PostgreSQL, one executemany per table on SQLite).

Batches run in parallel: the API queues the first ``broadcast_lanes`` batches and
each committed batch queues the one ``broadcast_lanes`` further on. Each run first
claims its batch by inserting ``(broadcast_id, batch)`` into ``broadcast_batch``
(``ON CONFLICT DO NOTHING``): a run of a batch that is already done, or that runs
at the same moment elsewhere (it waits for the other's commit), inserts nothing,
rolls back and creates nothing. The broadcast's counters move last, just before the
commit, so parallel batches hold its row lock only for their commit; the batch that
completes the audience moves the broadcast to ``sending``. A cancelled broadcast
makes that update match nothing and the batch rolls back. Lost tasks make no
progress; the sweep queues the unclaimed batches again (:func:`restart_stalled`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from dispatcher.audience import Rows
from dispatcher.broadcast_tables import Broadcast, BroadcastBatch, BroadcastMember
from dispatcher.broadcasts import FANNING_OUT, SENDING
from dispatcher.bulk import insert_rows
from dispatcher.history import written
from dispatcher.members import plan_batch
from dispatcher.models import Attempt, Event, Notification
from dispatcher.publisher import Doorbell
from dispatcher.runtime import Runtime
from dispatcher.work import Work, unit_of_work

log = logging.getLogger(__name__)


def fan_out(rt: Runtime, broadcast_id: str, batch: int, now: datetime | None = None) -> str:
    """Fan out batch number ``batch``; returns ``created``, ``done`` (it completed the
    audience) or ``stale`` (done already, running elsewhere, or cancelled)."""
    with unit_of_work(rt, now) as work:
        outcome, total = _batch(rt, work, broadcast_id, batch)
    after = batch + rt.settings.broadcast_lanes
    if outcome != "stale" and after < total:
        rt.publisher.fan_out(broadcast_id, after)
    return outcome


def first_batches(rt: Runtime, broadcast: Broadcast) -> list[int]:
    """The batches to queue when a broadcast is accepted: one per lane (one if empty)."""
    return list(range(max(1, min(rt.settings.broadcast_lanes, len(broadcast.bounds)))))


def _claim(session: Session, broadcast_id: str, batch: int, members: int, now: datetime) -> bool:
    values = {"broadcast_id": broadcast_id, "batch": batch, "members": members, "created_at": now}
    table = BroadcastBatch.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    claim = dialect.insert(table).values(**values).on_conflict_do_nothing()
    return session.execute(claim.returning(table.c.batch)).first() is not None


def _members(broadcast: Broadcast, batch: int) -> Select[Any]:
    """The customer ids of batch ``batch``: from its bound up to the next one."""
    bounds = broadcast.bounds
    query = select(col(BroadcastMember.customer_id)).where(
        BroadcastMember.broadcast_id == broadcast.id,
        col(BroadcastMember.customer_id) >= bounds[batch],
    )
    if batch + 1 < len(bounds):
        query = query.where(col(BroadcastMember.customer_id) < bounds[batch + 1])
    return query


def _batch(rt: Runtime, work: Work, broadcast_id: str, batch: int) -> tuple[str, int]:
    session, now = work.session, work.now
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.state != FANNING_OUT:
        return "stale", 0  # cancelled, or every batch done
    total = len(broadcast.bounds)
    if batch >= total and not (batch == 0 and total == 0):
        return "stale", total
    within = _members(broadcast, batch) if total else None
    ids: list[str] = []
    if within is not None:
        ids = list(session.execute(within.order_by(col(BroadcastMember.customer_id))).scalars())
    if total and not _claim(session, broadcast_id, batch, len(ids), now):
        session.rollback()
        return "stale", total
    cascade = rt.cascades.get(broadcast.cascade)
    rows = plan_batch(session, rt, cascade, broadcast, ids, now, within) if cascade else Rows()
    _write(session, rows)
    moved = session.execute(
        update(Broadcast)
        .where(col(Broadcast.id) == broadcast_id, col(Broadcast.state) == FANNING_OUT)
        .values(
            batches=Broadcast.batches + 1,
            processed=Broadcast.processed + len(ids),
            created=Broadcast.created + len(ids),
            progress_at=now,
            state=case((col(Broadcast.batches) + 1 >= total, SENDING), else_=Broadcast.state),
        )
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        session.rollback()  # cancelled while this batch was written
        return "stale", total
    last = session.exec(select(Broadcast.state).where(Broadcast.id == broadcast_id)).one()
    for attempt_id, channel, nid in rows.bells:
        work.ring(Doorbell(attempt_id, channel, nid, announce=False))
    extra: dict[str, Any] = {"members": len(ids), "last": last == SENDING}
    log.info("broadcast %s batch %d of %d", broadcast_id, batch, total, extra=extra)
    return ("done" if last == SENDING else "created"), total


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
    """Sweep phase: queue again the unclaimed batches of fan-outs that made no progress
    lately (up to ``broadcast_lanes`` per broadcast).

    Harmless if the original tasks are only slow: a batch's claim lets one run commit.
    ``progress_at`` moves, so a restart is not repeated every tick.
    """
    stalled_before = now - timedelta(seconds=rt.settings.broadcast_stalled_after)
    restarts: list[tuple[str, int]] = []
    with unit_of_work(rt, now) as work:
        session = work.session
        for broadcast in session.exec(
            select(Broadcast)
            .where(
                Broadcast.state == FANNING_OUT,
                col(Broadcast.progress_at) <= stalled_before,
            )
            .limit(rt.settings.sweep_batch)
        ):
            claimed = set(
                session.exec(
                    select(BroadcastBatch.batch).where(BroadcastBatch.broadcast_id == broadcast.id)
                )
            )
            unclaimed = [b for b in range(max(1, len(broadcast.bounds))) if b not in claimed]
            broadcast.progress_at = now
            session.add(broadcast)
            restarts += [(broadcast.id, b) for b in unclaimed[: rt.settings.broadcast_lanes]]
    for broadcast_id, batch in restarts:
        rt.publisher.fan_out(broadcast_id, batch)
    return len({b for b, _ in restarts})
