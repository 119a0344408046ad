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
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dispatcher.db import session_scope
from dispatcher.decisions import cancelled, failed
from dispatcher.lifecycle import apply, move_notification
from dispatcher.models import Attempt, ContactPoint, Notification
from dispatcher.outcomes import Outcome, record_outcome
from dispatcher.runtime import Runtime
from dispatcher.states import OPEN_STATES, AttemptState, NotificationState
from dispatcher.throttle import Throttled
from dispatcher.tokens import receipt_token
from dispatcher.work import Work, unit_of_work
from providers.base import Channel, Message, Provider, TemplateRef
from providers.errors import (
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
)

log = logging.getLogger(__name__)


def _claim(session: Session, attempt_id: str, token: str, now: datetime) -> bool:
    """The gate before every provider call: ``pending -> sending``, compare-and-set."""
    result = session.execute(
        update(Attempt)
        .where(col(Attempt.id) == attempt_id, col(Attempt.state) == AttemptState.PENDING.value)
        .values(
            state=AttemptState.SENDING.value,
            claim_token=token,
            claimed_at=now,
            started_at=func.coalesce(Attempt.started_at, now),
            tries=Attempt.tries + 1,
        ),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def claim(rt: Runtime, attempt_id: str, now: datetime) -> str | None:
    """Compare-and-set ``pending -> sending``, committed. Returns the claim token or None."""
    token = str(uuid.uuid4())
    with session_scope(rt.engine) as session:
        claimed = _claim(session, attempt_id, token, now)
    return token if claimed else None


def send_attempt(rt: Runtime, attempt_id: str, now: datetime | None = None) -> str:
    """Send one attempt at most once. Returns a short outcome name (for logs and tests).

    The claim and the reads it needs share one transaction, committed before any
    provider is called; recording the outcome is the second.
    """
    token = str(uuid.uuid4())
    with unit_of_work(rt, now) as work:
        if not _claim(work.session, attempt_id, token, work.now):
            return "not_claimed"
        prepared = _prepare(rt, work, attempt_id, token)
    return _send(rt, attempt_id, token, prepared, work.now)


def deliver(rt: Runtime, attempt_id: str, token: str, now: datetime) -> str:
    """Steps 2 and 3 for an attempt this caller has already claimed with ``token``."""
    with unit_of_work(rt, now) as work:
        prepared = _prepare(rt, work, attempt_id, token)
    return _send(rt, attempt_id, token, prepared, now)


def _send(
    rt: Runtime,
    attempt_id: str,
    token: str,
    prepared: tuple[Message, list[Provider]] | str,
    now: datetime,
) -> str:
    if isinstance(prepared, str):
        return prepared
    message, candidates = prepared
    outcome = _call_providers(rt, attempt_id, token, message, candidates, now)
    return _record(rt, attempt_id, token, outcome)


def _record(rt: Runtime, attempt_id: str, token: str, outcome: Outcome) -> str:
    """Record the outcome, retrying for a bounded time while the database is away.

    A paid send the provider accepted must not be recorded as lost because the
    database dropped for a moment: retry the recording (each try a new
    transaction) for up to ``record_retry_for`` seconds. If it still fails, the
    claim goes stale and the sweep records an unknown outcome: never a resend.
    """
    for attempt in Retrying(
        retry=retry_if_exception_type(DBAPIError),
        stop=stop_after_delay(rt.settings.record_retry_for),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                log.warning("recording a send again", extra={"attempt_id": attempt_id})
            with unit_of_work(rt) as work:
                return record_outcome(rt, work, attempt_id, token, outcome)
    raise AssertionError("unreachable")  # pragma: no cover


def _prepare(
    rt: Runtime, work: Work, attempt_id: str, token: str
) -> tuple[Message, list[Provider]] | str:
    """Load what the send needs; pick the providers; name the first on the attempt."""
    session, now = work.session, work.now
    attempt = session.get(Attempt, attempt_id)
    assert attempt is not None
    notification = session.get(Notification, attempt.notification_id)
    assert notification is not None
    if notification.state not in OPEN_STATES or notification.expires_at <= now:
        apply(work, notification, attempt, cancelled(attempt, now), source="worker")
        return "cancelled"
    if notification.state == NotificationState.ACCEPTED:
        move_notification(session, notification, NotificationState.IN_PROGRESS)
    contact = session.get(ContactPoint, attempt.contact_id) if attempt.contact_id else None
    if contact is None or contact.status != "active":
        apply(
            work,
            notification,
            attempt,
            failed(attempt, now, "contact_unavailable"),
            source="worker",
        )
        return "failed"
    message = build_message(rt, notification, attempt, contact.address)
    candidates = rt.router.candidates(
        Channel(attempt.channel), message.recipient, now, seed=message.idempotency_key
    )
    if candidates:
        _calling(session, attempt_id, token, candidates[0].name)
    return message, candidates


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


def _calling(session: Session, attempt_id: str, token: str, provider: str) -> None:
    """Record which provider is being called, so an unknown outcome names who may have billed."""
    session.execute(
        update(Attempt)
        .where(col(Attempt.id) == attempt_id, col(Attempt.claim_token) == token)
        .values(provider=provider),
        execution_options={"synchronize_session": False},
    )


def _call_providers(
    rt: Runtime,
    attempt_id: str,
    token: str,
    message: Message,
    candidates: list[Provider],
    now: datetime,
) -> Outcome:
    if not candidates:
        return Outcome(None, error=ProviderConfigError("no provider", code="no_provider"))
    last: Outcome = Outcome(None)
    for index, provider in enumerate(candidates):
        if index:  # the first was named when the attempt was prepared
            with session_scope(rt.engine) as session:
                _calling(session, attempt_id, token, provider.name)
        try:
            rt.throttle.wait(provider.name, provider.channel)  # global rate limit (Redis)
            result = provider.send(message)
        except (NotSentError, ProviderConfigError) as exc:
            # Provider-level: it provably did not take the message; the next one may.
            kind = "config" if isinstance(exc, ProviderConfigError) else "not_sent"
            if kind == "config":
                log.error(
                    "provider configuration error",
                    extra={"provider": provider.name, "code": exc.code},
                )
            if not isinstance(exc, Throttled):  # busy is not broken: no demotion
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
