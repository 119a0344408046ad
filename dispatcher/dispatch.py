"""Sending one attempt: claim it, call a provider, record what happened.

1. Claim: a committed compare-and-set ``pending -> sending`` (:mod:`dispatcher.claims`).
   A duplicate Celery message finds no pending row and does nothing; no provider is called.
2. Send outside any transaction, trying the channel's providers in order. A
   provider-level failure where the message provably was not taken moves on to
   the next provider; a rejection of the recipient or an unknown outcome stops.
3. Record the outcome with a compare-and-set on the claim token, then ring the
   doorbell of the next step if one is due (:mod:`dispatcher.outcomes`).

Steps 1 and 3 go through this process's :class:`~dispatcher.batch.Batch` each: with
the threads pool, the sends in flight together share one transaction per step.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dispatcher.claims import Claimed, Prepared, claim, claim_round, name_provider, prepare
from dispatcher.db import retry_disconnect, session_scope
from dispatcher.models import Attempt
from dispatcher.outcomes import Outcome, record_round
from dispatcher.runtime import Runtime
from dispatcher.throttle import Throttled
from dispatcher.work import unit_of_work
from providers.base import Message, Provider
from providers.errors import (
    NotSentError,
    ProviderConfigError,
    ProviderError,
    UnknownOutcomeError,
)

log = logging.getLogger(__name__)

__all__ = ["claim", "deliver", "send_attempt"]


def send_attempt(rt: Runtime, attempt_id: str, now: datetime | None = None) -> str:
    """Send one attempt at most once. Returns a short outcome name (for logs and tests).

    The claim and the reads it needs share one transaction (with the claims of the
    sends arriving together), committed before any provider is called; recording
    the outcome is the second.
    """
    claims = rt.batch(
        "claims", lambda requests: retry_disconnect(lambda: claim_round(rt, requests))
    )
    claimed: Claimed = claims.submit((attempt_id, now))
    if claimed.token is None:
        return "not_claimed"
    return _send(rt, attempt_id, claimed.token, claimed.prepared, now or rt.now())


def deliver(rt: Runtime, attempt_id: str, token: str, now: datetime) -> str:
    """Steps 2 and 3 for an attempt this caller has already claimed with ``token``."""

    def prepared_() -> dict[str, Prepared]:
        with unit_of_work(rt, now) as work:
            attempt = work.session.get(Attempt, attempt_id)
            return prepare(rt, work, [attempt] if attempt else [], token)

    prepared = retry_disconnect(prepared_)
    return _send(rt, attempt_id, token, prepared.get(attempt_id, "not_claimed"), now)


def _send(rt: Runtime, attempt_id: str, token: str, prepared: Prepared, now: datetime) -> str:
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
    records = rt.batch("records", lambda items: record_round(rt, items))
    for attempt in Retrying(
        retry=retry_if_exception_type(DBAPIError),
        stop=stop_after_delay(rt.settings.record_retry_for),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                log.warning("recording a send again", extra={"attempt_id": attempt_id})
            word: str = records.submit((attempt_id, token, outcome))
            return word
    raise AssertionError("unreachable")  # pragma: no cover


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
                name_provider(session, [attempt_id], token, provider.name)
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
        return Outcome(provider, result=result)  # its health is reset once per record round
    return last
