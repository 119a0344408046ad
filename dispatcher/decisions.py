"""What happens next to one attempt: pure decisions, applied in one place.

Each function looks at an attempt (a plain row object: no session needed), what
just happened and ``now``, and returns a :class:`Transition`: the state it
expects, the columns to write, the history event, and what follows for the
notification. :func:`dispatcher.lifecycle.apply` performs it as one
compare-and-set; nothing else writes attempt states. The transition type is in
:mod:`dispatcher.transitions`; the receipt and click decisions are in
:mod:`dispatcher.receipt_decisions`.

=================  ==========================================================
decision           cases
=================  ==========================================================
after_send         sent / not sent (retry, or give up when tries or the step's
                   time run out) / unknown (never resent) / rejected
on_receipt         wait (not recorded as sent yet) / upgrade (sent ->
                   delivered -> read) / timestamps only (late, on an escalated
                   attempt) / failure receipt / duplicate
on_click           a tracked link followed: first click (confirms, like a read
                   receipt) / later clicks (recorded only)
on_timeout         escalate a waiting attempt whose ``escalate_at`` passed
on_stale_claim     a claim held past the limit: unknown, never resent
=================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatcher.engine import retry_delay
from dispatcher.models import Attempt
from dispatcher.states import AttemptState, can_move
from dispatcher.transitions import Then, Transition, finishing, satisfied

#: The error code of a send held back by a provider's rate limit (:mod:`dispatcher.throttle`).
THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one provider round produced, reduced to what the decision needs."""

    kind: str  #: sent | not_sent | unknown | rejected
    provider: str | None
    code: str | None = None
    provider_message_id: str | None = None
    price: float = 0.0  #: the provider's price for one message (charged if it may have sent)
    retry_after: float | None = None
    invalid_address: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_tries: int
    backoff: float  #: first retry delay, doubled each try


def after_send(
    attempt: Attempt, report: SendReport, now: datetime, policy: RetryPolicy
) -> Transition:
    """The move out of ``sending`` (or out of a sweep's ``unknown``) after a provider round."""
    expected = AttemptState(attempt.state)
    code = (report.code or report.kind)[:64]
    timer = now + timedelta(seconds=attempt.timeout_seconds)
    if report.kind == "sent":
        then, finish_as, reason = Then.NOTHING, None, None
        if satisfied(attempt, now, None, None):
            then, finish_as, reason = finishing(attempt)
        return Transition(
            expected,
            {
                "state": AttemptState.SENT.value,
                "provider": report.provider,
                "provider_message_id": report.provider_message_id,
                "sent_at": now,
                "escalate_at": timer,
                "cost": report.price,
                "error_code": None,
            },
            "sent",
            {"provider": report.provider, "cost": report.price},
            then=then,
            finish_as=finish_as,
            reason=reason,
            outcome="sent",
        )
    if report.kind == "not_sent" and report.code == THROTTLED:
        # Pacing, not failure: wait exactly for the provider's next slot, and give the
        # claim's try back. The step's timer has not started; the TTL still bounds it.
        delay = report.retry_after or policy.backoff
        tries = {"tries": max(0, attempt.tries - 1)}
        return _later(expected, report, now, delay, "throttled", tries)
    if report.kind == "not_sent" and attempt.tries < policy.max_tries:
        delay = retry_delay(attempt.tries, policy.backoff, report.retry_after)
        started = attempt.started_at or now
        step_ends = started + timedelta(seconds=attempt.timeout_seconds)
        if now + timedelta(seconds=delay) < step_ends:
            return _later(expected, report, now, delay, "retry")
        code = "retry_outlives_step"
    if report.kind == "unknown":
        # The provider may have taken (and billed) it: charge the price, never resend.
        return Transition(
            expected,
            {
                "state": AttemptState.UNKNOWN.value,
                "provider": report.provider,
                "escalate_at": timer,
                "cost": report.price,
                "error_code": code,
            },
            "unknown",
            {"provider": report.provider, "code": code, "cost": report.price},
            outcome="unknown",
        )
    return failed(attempt, now, code, provider=report.provider)


def _later(
    expected: AttemptState,
    report: SendReport,
    now: datetime,
    delay: float,
    outcome: str,
    extra: Mapping[str, object] | None = None,
) -> Transition:
    """Back to ``pending``, due after ``delay`` seconds (a retry, or a throttled send)."""
    code = (report.code or report.kind)[:64]
    return Transition(
        expected,
        {
            "state": AttemptState.PENDING.value,
            "provider": report.provider,
            "due_at": now + timedelta(seconds=delay),
            "published_at": None,
            "error_code": code,
            **(extra or {}),
        },
        "retry_scheduled" if outcome == "retry" else outcome,
        {"provider": report.provider, "code": code, "delay_s": delay},
        outcome=outcome,
    )


def failed(
    attempt: Attempt, now: datetime, code: str, *, provider: str | None = None
) -> Transition:
    """Rejected, misconfigured, out of tries or contact gone: failed, and escalate now."""
    return Transition(
        AttemptState(attempt.state),
        {
            "state": AttemptState.FAILED.value,
            "provider": provider or attempt.provider,
            "error_code": code[:64],
            "escalate_at": now,
        },
        "failed",
        {"provider": provider or attempt.provider, "code": code},
        then=Then.ESCALATE,
        outcome="failed",
    )


def cancelled(attempt: Attempt, now: datetime) -> Transition:
    """A claimed attempt whose notification finished or expired meanwhile: never sent."""
    return Transition(
        AttemptState(attempt.state),
        {"state": AttemptState.CANCELLED.value, "finished_at": now},
        "cancelled",
        outcome="cancelled",
    )


def on_timeout(attempt: Attempt, now: datetime) -> Transition | None:
    """Escalate an attempt whose timer ran out; None if it cannot escalate from its state."""
    current = AttemptState(attempt.state)
    if not can_move(current, AttemptState.ESCALATED):
        return None
    return Transition(
        current,
        {"state": AttemptState.ESCALATED.value, "finished_at": now},
        "escalated",
        {"from_state": current.value},
        then=Then.NEXT,
        outcome="escalated",
    )


def on_stale_claim(attempt: Attempt, now: datetime, price: float) -> Transition:
    """A claim held past the limit (worker killed?): unknown, charged, never resent."""
    claimed = attempt.claimed_at or now
    return Transition(
        AttemptState.SENDING,
        {
            "state": AttemptState.UNKNOWN.value,
            "escalate_at": max(now, claimed + timedelta(seconds=attempt.timeout_seconds)),
            "error_code": "worker_lost",
            "cost": price,
        },
        "unknown",
        {"provider": attempt.provider, "code": "worker_lost", "cost": price},
        outcome="unknown",
    )
