"""Sending one attempt: claim it, call a provider, record what happened.

1. Claim: a committed compare-and-set ``pending -> sending``. A duplicate Celery
   message finds no pending row and does nothing; no provider is called.
2. Send outside any transaction, trying the channel's providers in order. A
   provider-level failure where the message provably was not taken moves on to
   the next provider; a rejection of the recipient or an unknown outcome stops.
3. Record the outcome with a compare-and-set on the claim token, then ring the
   doorbell of the next step if one is due.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from dispatcher.customers import mark_contact_invalid
from dispatcher.db import session_scope
from dispatcher.engine import condition_met, finished_state, retry_delay
from dispatcher.history import record
from dispatcher.lifecycle import escalate, finish, move, move_notification
from dispatcher.models import Attempt, ContactPoint, Notification
from dispatcher.publisher import Doorbell
from dispatcher.receipts import apply_waiting, store_simulated
from dispatcher.runtime import Runtime
from dispatcher.states import OPEN_STATES, AttemptState, NotificationState
from dispatcher.tokens import receipt_token
from providers.base import Channel, Message, Provider, SendResult, Signal, TemplateRef
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one provider round produced: a result, or the error that ended it."""

    provider: Provider | None
    result: SendResult | None = None
    error: Exception | None = None


def claim(rt: Runtime, attempt_id: str, now: datetime) -> str | None:
    """Compare-and-set ``pending -> sending``, committed. Returns the claim token or None."""
    token = str(uuid.uuid4())
    with session_scope(rt.engine) as session:
        result = session.execute(
            update(Attempt)
            .where(col(Attempt.id) == attempt_id, col(Attempt.state) == AttemptState.PENDING.value)
            .values(
                state=AttemptState.SENDING.value,
                claim_token=token,
                claimed_at=now,
                tries=Attempt.tries + 1,
            )
        )
        claimed = bool(result.rowcount)  # type: ignore[attr-defined]
    return token if claimed else None


def send_attempt(rt: Runtime, attempt_id: str, now: datetime | None = None) -> str:
    """Send one attempt at most once. Returns a short outcome name (for logs and tests)."""
    now = now or rt.now()
    token = claim(rt, attempt_id, now)
    if token is None:
        return "not_claimed"
    return deliver(rt, attempt_id, token, now)


def deliver(rt: Runtime, attempt_id: str, token: str, now: datetime) -> str:
    """Steps 2 and 3 for an attempt this caller has claimed with ``token``."""
    with session_scope(rt.engine) as session:
        prepared = _prepare(rt, session, attempt_id, now)
    if isinstance(prepared, str):
        return prepared
    channel, message = prepared
    outcome = _call_providers(rt, channel, message, now)
    bells: list[Doorbell] = []
    with session_scope(rt.engine) as session:
        name = _record(rt, session, attempt_id, token, outcome, rt.now(), bells)
    rt.publisher.publish(bells)
    return name


def _prepare(
    rt: Runtime, session: Session, attempt_id: str, now: datetime
) -> tuple[Channel, Message] | str:
    attempt = session.get(Attempt, attempt_id)
    assert attempt is not None
    notification = session.get(Notification, attempt.notification_id)
    assert notification is not None
    if notification.state not in OPEN_STATES or notification.expires_at <= now:
        move(
            session,
            attempt,
            AttemptState.SENDING,
            state=AttemptState.CANCELLED.value,
            finished_at=now,
        )
        return "cancelled"
    if notification.state == NotificationState.ACCEPTED:
        move_notification(session, notification, NotificationState.IN_PROGRESS)
    contact = session.get(ContactPoint, attempt.contact_id) if attempt.contact_id else None
    if contact is None or contact.status != "active":
        bells: list[Doorbell] = []
        _fail(session, notification, attempt, now, "contact_unavailable", bells)
        session.commit()
        rt.publisher.publish(bells)
        return "failed"
    return Channel(attempt.channel), build_message(rt, notification, attempt, contact.address)


def build_message(
    rt: Runtime, notification: Notification, attempt: Attempt, address: str
) -> Message:
    content: dict[str, Any] = notification.content.get(attempt.channel, {})
    template = content.get("template")
    secret = rt.settings.effective_receipt_secret
    data = {
        "notification_id": notification.id,
        "attempt_id": attempt.id,
        "receipt_token": receipt_token(secret, attempt.id),
        "ack_url": f"{rt.settings.public_url.rstrip('/')}/v1/receipts",
    }
    return Message(
        recipient=address,
        text=content.get("text") or "",
        title=content.get("title"),
        html=content.get("html"),
        template=TemplateRef(template["name"], template["language"], tuple(template["params"]))
        if template
        else None,
        reference=attempt.id,
        idempotency_key=attempt.idempotency_key,
        data=data if attempt.channel == Channel.PUSH else {},
    )


def _call_providers(rt: Runtime, channel: Channel, message: Message, now: datetime) -> Outcome:
    candidates = rt.router.candidates(channel, message.recipient, now, seed=message.idempotency_key)
    if not candidates:
        return Outcome(
            None, error=ProviderConfigError(f"no provider for {channel}", code="no_provider")
        )
    last: Outcome = Outcome(None)
    for provider in candidates:
        try:
            result = provider.send(message)
        except (NotSentError, ProviderConfigError) as exc:
            # Provider-level: it provably did not take the message; the next one may.
            kind = "config" if isinstance(exc, ProviderConfigError) else "not_sent"
            if kind == "config":
                log.error(
                    "provider configuration error",
                    extra={"provider": provider.name, "code": exc.code},
                )
            rt.router.health.failed(provider.name, kind, now)
            last = Outcome(provider, error=exc)
            continue
        except ProviderError as exc:
            return Outcome(provider, error=exc)
        except Exception as exc:
            log.exception("provider raised an unexpected error", extra={"provider": provider.name})
            return Outcome(provider, error=UnknownOutcomeError(type(exc).__name__, code="crash"))
        rt.router.health.succeeded(provider.name)
        return Outcome(provider, result=result)
    return last


def _record(
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
    _fail(session, notification, attempt, now, str(code), bells)
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


def _fail(
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
