"""Recording what one provider round produced, with a compare-and-set on the claim.

Sent: the timer starts (``escalate_at``), cost is added, sandbox receipts are
stored, early receipts are applied. Not sent: the attempt goes back to
``pending`` with a backoff, until the tries run out. Unknown: never resent; it
waits for a receipt or its timeout. Rejected or misconfigured: failed, and the
cascade moves on now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from dispatcher.customers import mark_contact_invalid
from dispatcher.engine import condition_met, finished_state, retry_delay
from dispatcher.history import record
from dispatcher.lifecycle import escalate, finish, move
from dispatcher.models import Attempt, Notification
from dispatcher.publisher import Doorbell
from dispatcher.receipts import apply_waiting, store_simulated
from dispatcher.runtime import Runtime
from dispatcher.states import AttemptState
from providers.base import Channel, Provider, SendResult, Signal
from providers.errors import InvalidAddressError, NotSentError, UnknownOutcomeError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one provider round produced: a result, or the error that ended it."""

    provider: Provider | None
    result: SendResult | None = None
    error: Exception | None = None


def record_outcome(
    rt: Runtime,
    session: Session,
    attempt_id: str,
    token: str,
    outcome: Outcome,
    now: datetime,
    bells: list[Doorbell],
) -> str:
    attempt = session.get(Attempt, attempt_id)
    assert attempt is not None
    if attempt.claim_token != token or attempt.state != AttemptState.SENDING:
        # The sweep declared this claim stale meanwhile; its decision stands.
        log.warning("claim lost before recording", extra={"attempt_id": attempt_id})
        return "claim_lost"
    notification = session.get(Notification, attempt.notification_id)
    assert notification is not None
    provider = outcome.provider.name if outcome.provider else None
    if outcome.result is not None and outcome.provider is not None:
        _sent(rt, session, notification, attempt, outcome.provider, outcome.result, now, bells)
        return "sent"
    error = outcome.error
    code = getattr(error, "code", None) or type(error).__name__
    if isinstance(error, NotSentError) and attempt.tries < rt.settings.max_send_tries:
        delay = retry_delay(attempt.tries, rt.settings.retry_backoff, error.retry_after)
        move(
            session,
            attempt,
            AttemptState.SENDING,
            state=AttemptState.PENDING.value,
            provider=provider,
            due_at=now + timedelta(seconds=delay),
            published_at=None,
            error_code=str(code)[:64],
        )
        record(
            session,
            "retry_scheduled",
            at=now,
            source="worker",
            notification=notification,
            attempt=attempt,
            provider=provider,
            code=code,
            delay_s=delay,
        )
        return "retry"
    if isinstance(error, UnknownOutcomeError):
        move(
            session,
            attempt,
            AttemptState.SENDING,
            state=AttemptState.UNKNOWN.value,
            provider=provider,
            escalate_at=now + timedelta(seconds=attempt.timeout_seconds),
            error_code=str(code)[:64],
        )
        record(
            session,
            "unknown",
            at=now,
            source="worker",
            notification=notification,
            attempt=attempt,
            provider=provider,
            code=code,
        )
        return "unknown"
    if isinstance(error, InvalidAddressError):
        mark_contact_invalid(session, attempt.contact_id, str(code), now)
    attempt.provider = provider
    fail(session, notification, attempt, now, str(code), bells)
    return "failed"


def _sent(
    rt: Runtime,
    session: Session,
    notification: Notification,
    attempt: Attempt,
    provider: Provider,
    result: SendResult,
    now: datetime,
    bells: list[Doorbell],
) -> None:
    cost = result.cost
    if cost is None:
        cost = rt.router.configured_cost(provider)
    if cost is None:
        cost = rt.settings.costs.get(Channel(attempt.channel), 0.0)
    move(
        session,
        attempt,
        AttemptState.SENDING,
        state=AttemptState.SENT.value,
        provider=provider.name,
        provider_message_id=result.provider_message_id,
        sent_at=now,
        escalate_at=now + timedelta(seconds=attempt.timeout_seconds),
        cost=cost,
        error_code=None,
    )
    session.execute(
        update(Notification)
        .where(col(Notification.id) == notification.id)
        .values(cost=Notification.cost + cost)
    )
    record(
        session,
        "sent",
        at=now,
        source="worker",
        notification=notification,
        attempt=attempt,
        provider=provider.name,
        cost=cost,
    )
    store_simulated(session, attempt, result, now)
    if condition_met(Signal(attempt.wait_for), sent_at=now, delivered_at=None, read_at=None):
        finish(
            session,
            notification,
            finished_state(Signal(attempt.wait_for)),
            now,
            source="worker",
            reason=f"{attempt.channel}_sent",
            attempt=attempt,
        )
    apply_waiting(session, attempt, now, bells)


def fail(
    session: Session,
    notification: Notification,
    attempt: Attempt,
    now: datetime,
    code: str,
    bells: list[Doorbell],
) -> None:
    """Mark failed and escalate now: rejected, config error, or retries exhausted."""
    move(
        session,
        attempt,
        AttemptState.SENDING,
        state=AttemptState.FAILED.value,
        provider=attempt.provider,
        error_code=code[:64],
        escalate_at=now,
    )
    record(
        session,
        "failed",
        at=now,
        source="worker",
        notification=notification,
        attempt=attempt,
        provider=attempt.provider,
        code=code,
    )
    bell = escalate(session, notification, attempt, now, source="worker")
    if bell:
        bells.append(bell)
