"""Recording what one provider round produced, with a compare-and-set on the claim.

The provider round is reduced to a :class:`~dispatcher.decisions.SendReport`;
:func:`~dispatcher.decisions.after_send` decides the move and
:func:`~dispatcher.lifecycle.apply` performs it. When the send was recorded,
sandbox receipts are stored and receipts that arrived during the call are
applied in the same transaction, so a read push can never let the next (paid)
step go out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dispatcher.claims import by_id
from dispatcher.content import billed_units
from dispatcher.customers import mark_contact_invalid
from dispatcher.decisions import RetryPolicy, SendReport, after_send
from dispatcher.inbound import close_window
from dispatcher.lifecycle import apply
from dispatcher.models import Attempt, Notification
from dispatcher.receipt_tables import ProviderEvent
from dispatcher.receipts import apply_waiting, store_simulated
from dispatcher.runtime import Runtime
from dispatcher.states import AttemptState
from dispatcher.work import Work, unit_of_work
from providers.base import Channel, Provider, SendResult
from providers.errors import (
    TEMPLATE_REQUIRED,
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    UnknownOutcomeError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one provider round produced: a result, or the error that ended it."""

    provider: Provider | None
    result: SendResult | None = None
    error: Exception | None = None


def price(rt: Runtime, provider: Provider | None, channel: str, units: int = 1) -> float:
    """What a send costs on ``provider``: its price per message (its own setting, else
    the channel's) times the messages it is billed as (``units``: an SMS's segments)."""
    cost = rt.router.configured_cost(provider) if provider is not None else None
    if cost is None:
        cost = rt.settings.costs.get(Channel(channel), 0.0)
    return float(cost) * units


def report_of(rt: Runtime, outcome: Outcome, channel: str, units: int = 1) -> SendReport:
    """Reduce a provider round to what the decision needs.

    A cost the provider reported is what it billed for the whole message; otherwise
    the configured price is charged per billed unit (:func:`~dispatcher.content.billed_units`).
    """
    name = outcome.provider.name if outcome.provider else None
    if outcome.result is not None:
        cost = outcome.result.cost
        return SendReport(
            "sent",
            name,
            provider_message_id=outcome.result.provider_message_id,
            price=price(rt, outcome.provider, channel, units) if cost is None else cost,
        )
    error = outcome.error
    code = str(getattr(error, "code", None) or type(error).__name__)
    if isinstance(error, NotSentError):
        return SendReport("not_sent", name, code, retry_after=error.retry_after)
    if isinstance(error, UnknownOutcomeError):
        price_ = price(rt, outcome.provider, channel, units)
        return SendReport("unknown", name, code, price=price_)
    if isinstance(error, ProviderConfigError):
        return SendReport("rejected", name, code)
    return SendReport(
        "rejected", name, code, invalid_address=isinstance(error, InvalidAddressError)
    )


def _recordable(attempt: Attempt, token: str, report: SendReport) -> bool:
    """Our claim still stands, or the sweep called it unknown and we know it was sent."""
    if attempt.claim_token != token:
        return False
    if attempt.state == AttemptState.SENDING:
        return True
    return attempt.state == AttemptState.UNKNOWN and report.kind == "sent"


def record_round(rt: Runtime, items: list[tuple[str, str, Outcome]]) -> list[str]:
    """Record the outcomes of one round of sends in one transaction; one word per item.

    The attempts and their notifications are read in one query each. Receipts that
    arrived while the sends were in flight are looked up once, after every
    compare-and-set of the round, so none can slip between the two. After the
    commit, each provider that took a message has its failure count reset, once.
    """
    with unit_of_work(rt) as work:
        session = work.session
        ids = [attempt_id for attempt_id, _, _ in items]
        attempts: dict[str, Attempt] = by_id(session, Attempt, ids)
        # Held in this dict for the whole round: the session's identity map is weak, and
        # the receipts applied below would otherwise read each notification again.
        notifications: dict[str, Notification] = by_id(
            session, Notification, {a.notification_id for a in attempts.values()}
        )
        words: list[str] = []
        sent: list[Attempt] = []
        due: list[tuple[Attempt, ProviderEvent]] = []
        for attempt_id, token, outcome in items:
            attempt = attempts[attempt_id]
            notification = notifications[attempt.notification_id]
            word = record_outcome(rt, work, notification, attempt, token, outcome, due)
            words.append(word)
            if word != "claim_lost" and outcome.result is not None:
                sent.append(attempt)
        apply_waiting(work, sent, due)
    # A provider that took a message is healthy again: once per provider per round.
    for name in dict.fromkeys(o.provider.name for _, _, o in items if o.result and o.provider):
        rt.router.health.succeeded(name)
    return words


def record_outcome(
    rt: Runtime,
    work: Work,
    notification: Notification,
    attempt: Attempt,
    token: str,
    outcome: Outcome,
    due: list[tuple[Attempt, ProviderEvent]],
) -> str:
    """Record the outcome of a claimed send; returns a short outcome word.

    The caller applies the receipts that wait for the attempt afterwards
    (:func:`~dispatcher.receipts.apply_waiting`), in the same transaction, and
    the sandbox receipts due now this adds to ``due``.
    """
    session = work.session
    report = report_of(rt, outcome, attempt.channel, billed_units(attempt))
    if not _recordable(attempt, token, report):
        # The sweep declared this claim stale meanwhile; its decision stands.
        log.warning("claim lost before recording", extra={"attempt_id": attempt.id})
        return "claim_lost"
    if report.invalid_address:
        mark_contact_invalid(session, attempt.contact_id, report.code or "invalid", work.now)
    if report.code == TEMPLATE_REQUIRED:
        close_window(session, attempt.contact_id)
    policy = RetryPolicy(rt.settings.max_send_tries, rt.settings.retry_backoff)
    transition = after_send(attempt, report, work.now, policy)
    if not apply(work, notification, attempt, transition, source="worker", claim_token=token):
        return "claim_lost"
    if report.kind == "sent" and outcome.result is not None:
        due.extend(
            (attempt, event)
            for event in store_simulated(session, attempt, outcome.result, work.now)
        )
    return transition.outcome
