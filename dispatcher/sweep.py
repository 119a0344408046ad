"""The sweep, run by beat every second or two: turns due rows into work.

(a) notifications past their TTL expire; (b) attempts whose ``escalate_at``
passed without their condition escalate to the next step; (c) claims stuck in
``sending`` past the time limit become ``unknown`` (never resent blindly);
(d) pending attempts whose doorbell is lost (old, and not in its queue) are
published again; (e) stored
receipts that are due (sandbox) or were waiting for their attempt are applied;
(f) broadcast fan-outs that stalled (task lost) get their next batch queued again.

Every change is a compare-and-set, so overlapping sweeps are harmless; on
PostgreSQL rows are picked with ``FOR UPDATE SKIP LOCKED`` so sweeps on several
hosts share the work instead of queueing on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from dispatcher.content import billed_units
from dispatcher.customer_tables import Customer
from dispatcher.db import session_scope
from dispatcher.decisions import on_stale_claim
from dispatcher.fanout import restart_stalled
from dispatcher.latency import LatencyRule, demote_slow
from dispatcher.lifecycle import apply, escalate_many, finish
from dispatcher.models import OPEN_PREDICATE, Attempt, Notification, timer_predicate
from dispatcher.outcomes import price
from dispatcher.publisher import Doorbell
from dispatcher.receipt_application import apply as apply_receipt
from dispatcher.receipt_tables import ProviderEvent
from dispatcher.receipts import apply_stored
from dispatcher.rollup_ledger import compact
from dispatcher.runtime import Runtime
from dispatcher.states import OPEN_STATES, WAITING_STATES, AttemptState, NotificationState
from dispatcher.work import Work, unit_of_work

T = TypeVar("T")


@dataclass
class SweepReport:
    expired: int = 0
    escalated: int = 0
    stale: int = 0
    republished: int = 0
    receipts: int = 0
    fan_outs: int = 0  #: stalled broadcast fan-outs restarted
    demoted: list[str] = field(default_factory=list)


def _locked(query: SelectOfScalar[T], batch: int) -> SelectOfScalar[T]:
    return query.limit(batch).with_for_update(skip_locked=True)


def latency_rule(rt: Runtime) -> LatencyRule:
    settings = rt.settings
    return LatencyRule(
        factor=settings.demote_slow_factor,
        floor=settings.demote_slow_floor,
        min_samples=settings.demote_slow_min_samples,
        recent=settings.demote_slow_window,
    )


def sweep(rt: Runtime, now: datetime | None = None) -> SweepReport:
    """One pass over due rows. ``now`` is injectable: tests move time, not sleep."""
    now = now or rt.now()
    report = SweepReport()
    batch = rt.settings.sweep_batch
    with unit_of_work(rt, now) as work:
        report.expired = _expire(work, batch)
    with unit_of_work(rt, now) as work:
        report.stale = _stale_claims(rt, work, batch)
    with unit_of_work(rt, now) as work:
        report.receipts = _due_receipts(work, batch)
    with unit_of_work(rt, now) as work:
        report.escalated = _escalate(work, batch)
    if rt.router.provider_names() and now >= rt.next_latency_check:
        rt.next_latency_check = now + timedelta(seconds=rt.settings.latency_check_every)
        with session_scope(rt.engine) as session:
            report.demoted = demote_slow(
                session, rt.router.health, rt.router.provider_names(), now, latency_rule(rt)
            )
    with unit_of_work(rt, now) as work:
        report.republished = _republish(rt, work, batch)
    report.fan_outs = restart_stalled(rt, now)
    compact(rt.engine)  # the stats rollup: fold the deltas the triggers appended
    return report


def escalate_due(rt: Runtime, now: datetime | None = None) -> int:
    """Only the timers of a pass (with their stored receipts): what beat runs when a timer
    falls due between two full passes."""
    with unit_of_work(rt, now) as work:
        return _escalate(work, rt.settings.sweep_batch)


def next_timer(rt: Runtime) -> datetime | None:
    """When the earliest live timer of an open notification falls due (the timer index
    read in order: the same rows :func:`_escalate` picks)."""
    with session_scope(rt.engine) as session:
        # ORDER BY ... LIMIT 1, not min(): the planner then walks the index in order
        # (min() over the join was planned as a hash join of every open notification).
        return session.exec(
            select(Attempt.escalate_at)
            .join(Notification, col(Notification.id) == col(Attempt.notification_id))
            .where(
                text(timer_predicate("attempt.")),
                col(Notification.state).in_([s.value for s in OPEN_STATES]),
            )
            .order_by(col(Attempt.escalate_at))
            .limit(1)
        ).first()


def _expire(work: Work, batch: int) -> int:
    rows = work.session.exec(
        _locked(
            select(Notification).where(
                text(OPEN_PREDICATE),  # literally the partial index's predicate
                col(Notification.expires_at) <= work.now,
            ),
            batch,
        )
    ).all()
    return sum(
        finish(work.session, n, NotificationState.EXPIRED, work.now, source="sweep", reason="ttl")
        for n in rows
    )


def _stale_claims(rt: Runtime, work: Work, batch: int) -> int:
    stale_after = timedelta(seconds=rt.settings.sending_stale_after)
    rows = work.session.exec(
        _locked(
            select(Attempt).where(
                Attempt.state == AttemptState.SENDING.value,
                col(Attempt.claimed_at) <= work.now - stale_after,
            ),
            batch,
        )
    ).all()
    count = 0
    for attempt in rows:
        notification = work.session.get(Notification, attempt.notification_id)
        assert notification is not None
        provider = rt.router.provider(attempt.provider) if attempt.provider else None
        units = billed_units(attempt)
        charged = price(rt, provider, attempt.channel, units) if attempt.provider else 0.0
        transition = on_stale_claim(attempt, work.now, charged)
        count += apply(work, notification, attempt, transition, source="sweep")
    return count


def _escalate(work: Work, batch: int) -> int:
    rows = work.session.exec(
        _locked(
            select(Attempt)
            .join(Notification, col(Notification.id) == col(Attempt.notification_id))
            .where(
                text(timer_predicate("attempt.")),  # the partial index's predicate
                col(Attempt.escalate_at) <= work.now,
                col(Notification.state).in_([s.value for s in OPEN_STATES]),
            )
            .order_by(col(Attempt.escalate_at)),
            batch,
        )
    ).all()
    if not rows:
        return 0
    session = work.session
    ids = {a.notification_id for a in rows}
    # Load the batch's notifications and customers at once: session.get then finds them
    # (the identity map holds rows weakly, so keep references while the loop runs).
    notifications = session.exec(select(Notification).where(col(Notification.id).in_(ids))).all()
    quiet = {n.customer_id for n in notifications if n.respect_quiet_hours}
    customers = session.exec(select(Customer).where(col(Customer.id).in_(quiet))).all()
    # A satisfying receipt stored but not yet applied wins over the timer.
    applied = apply_stored(work, ids)
    by_id = {n.id: n for n in notifications}
    due = []
    for attempt in rows:
        if applied:
            session.refresh(attempt)
        timer = attempt.escalate_at
        if timer is not None and timer <= work.now and attempt.state in WAITING_STATES:
            due.append((by_id[attempt.notification_id], attempt))
    count = escalate_many(work, due, source="sweep")
    del notifications, customers
    return count


def _republish(rt: Runtime, work: Work, batch: int) -> int:
    """Ring again the doorbells that are really lost.

    A pending attempt is republished only when its channel's queue is empty (its
    doorbell is not waiting there) and it was last published over
    ``republish_after`` ago. Where the queue depth is unknown, age alone decides.
    """
    stale = work.now - timedelta(seconds=rt.settings.republish_after)
    rows = work.session.exec(
        _locked(
            select(Attempt).where(
                Attempt.state == AttemptState.PENDING.value,
                col(Attempt.due_at) <= work.now,
                (col(Attempt.published_at).is_(None)) | (col(Attempt.published_at) <= stale),
            ),
            batch,
        )
    ).all()
    depths: dict[str, int | None] = {}
    count = 0
    for attempt in rows:
        if attempt.channel not in depths:
            depths[attempt.channel] = rt.publisher.queue_depth(attempt.channel)
        never_published = attempt.published_at is None
        if not never_published and (depths[attempt.channel] or 0) > 0:
            continue  # its doorbell may well be queued behind the others
        attempt.published_at = work.now
        work.session.add(attempt)
        work.ring(Doorbell(attempt.id, attempt.channel, attempt.notification_id))
        count += 1
    return count


def _due_receipts(work: Work, batch: int) -> int:
    rows = work.session.exec(
        _locked(
            select(ProviderEvent)
            .where(
                col(ProviderEvent.applied_at).is_(None),
                col(ProviderEvent.next_check_at) <= work.now,
            )
            .order_by(col(ProviderEvent.next_check_at)),
            batch,
        )
    ).all()
    return sum(apply_receipt(work, event) != "waiting" for event in rows)
