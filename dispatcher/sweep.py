"""The sweep, run by beat every second or two: turns due rows into work.

(a) notifications past their TTL expire; (b) attempts whose ``escalate_at``
passed without their condition escalate to the next step; (c) claims stuck in
``sending`` past the time limit become ``unknown`` (never resent blindly);
(d) pending attempts whose doorbell may be lost are published again; (e) stored
receipts that are due (sandbox) or were waiting for their attempt are applied.

Every change is a compare-and-set, so overlapping sweeps are harmless; on
PostgreSQL rows are picked with ``FOR UPDATE SKIP LOCKED`` so sweeps on several
hosts share the work instead of queueing on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from dispatcher.db import session_scope
from dispatcher.history import record
from dispatcher.latency import LatencyRule, demote_slow
from dispatcher.lifecycle import escalate, finish, move
from dispatcher.models import Attempt, Notification, ProviderEvent
from dispatcher.publisher import Doorbell
from dispatcher.receipts import apply
from dispatcher.runtime import Runtime
from dispatcher.states import OPEN_STATES, WAITING_STATES, AttemptState, NotificationState

T = TypeVar("T")


@dataclass
class SweepReport:
    expired: int = 0
    escalated: int = 0
    stale: int = 0
    republished: int = 0
    receipts: int = 0
    demoted: list[str] = field(default_factory=list)
    doorbells: list[Doorbell] = field(default_factory=list)


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
    with session_scope(rt.engine) as session:
        report.expired = _expire(session, now, batch)
    with session_scope(rt.engine) as session:
        report.stale = _stale_claims(session, now, batch, rt.settings.sending_stale_after)
    with session_scope(rt.engine) as session:
        report.receipts = _due_receipts(session, now, batch, report.doorbells)
    with session_scope(rt.engine) as session:
        report.escalated = _escalate(session, now, batch, report.doorbells)
    if rt.router.provider_names() and now >= rt.next_latency_check:
        rt.next_latency_check = now + timedelta(seconds=rt.settings.latency_check_every)
        with session_scope(rt.engine) as session:
            report.demoted = demote_slow(
                session, rt.router.health, rt.router.provider_names(), now, latency_rule(rt)
            )
    with session_scope(rt.engine) as session:
        report.republished = _republish(
            session, now, batch, rt.settings.republish_after, report.doorbells
        )
    rt.publisher.publish(report.doorbells)
    return report


def _expire(session: Session, now: datetime, batch: int) -> int:
    rows = session.exec(
        _locked(
            select(Notification).where(
                col(Notification.state).in_([s.value for s in OPEN_STATES]),
                col(Notification.expires_at) <= now,
            ),
            batch,
        )
    ).all()
    return sum(
        finish(session, n, NotificationState.EXPIRED, now, source="sweep", reason="ttl")
        for n in rows
    )


def _stale_claims(session: Session, now: datetime, batch: int, stale_after: float) -> int:
    rows = session.exec(
        _locked(
            select(Attempt).where(
                Attempt.state == AttemptState.SENDING.value,
                col(Attempt.claimed_at) <= now - timedelta(seconds=stale_after),
            ),
            batch,
        )
    ).all()
    count = 0
    for attempt in rows:
        claimed = attempt.claimed_at or now
        if move(
            session,
            attempt,
            AttemptState.SENDING,
            state=AttemptState.UNKNOWN.value,
            escalate_at=max(now, claimed + timedelta(seconds=attempt.timeout_seconds)),
            error_code="worker_lost",
        ):
            notification = session.get(Notification, attempt.notification_id)
            record(
                session,
                "unknown",
                at=now,
                source="sweep",
                notification=notification,
                attempt=attempt,
                code="worker_lost",
            )
            count += 1
    return count


def _escalate(session: Session, now: datetime, batch: int, bells: list[Doorbell]) -> int:
    rows = session.exec(
        _locked(
            select(Attempt)
            .join(Notification, col(Notification.id) == col(Attempt.notification_id))
            .where(
                col(Attempt.state).in_([s.value for s in WAITING_STATES]),
                col(Attempt.escalate_at) <= now,
                col(Notification.state).in_([s.value for s in OPEN_STATES]),
            )
            .order_by(col(Attempt.escalate_at)),
            batch,
        )
    ).all()
    count = 0
    for attempt in rows:
        notification = session.get(Notification, attempt.notification_id)
        assert notification is not None
        before = attempt.state
        bell = escalate(session, notification, attempt, now, source="sweep")
        count += attempt.state != before
        if bell:
            bells.append(bell)
    return count


def _republish(
    session: Session, now: datetime, batch: int, after: float, bells: list[Doorbell]
) -> int:
    stale = now - timedelta(seconds=after)
    rows = session.exec(
        _locked(
            select(Attempt).where(
                Attempt.state == AttemptState.PENDING.value,
                col(Attempt.due_at) <= now,
                (col(Attempt.published_at).is_(None)) | (col(Attempt.published_at) <= stale),
            ),
            batch,
        )
    ).all()
    for attempt in rows:
        attempt.published_at = now
        session.add(attempt)
        bells.append(Doorbell(attempt.id, attempt.channel))
    return len(rows)


def _due_receipts(session: Session, now: datetime, batch: int, bells: list[Doorbell]) -> int:
    rows = session.exec(
        _locked(
            select(ProviderEvent)
            .where(col(ProviderEvent.applied_at).is_(None), col(ProviderEvent.next_check_at) <= now)
            .order_by(col(ProviderEvent.next_check_at)),
            batch,
        )
    ).all()
    return sum(apply(session, event, now, bells) != "waiting" for event in rows)
