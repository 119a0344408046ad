"""What happens next to one attempt: pure decisions, applied in one place.

Each function looks at an attempt (a plain row object: no session needed), what
just happened and ``now``, and returns a :class:`Transition`: the state it
expects, the columns to write, the history event, and what follows for the
notification. :func:`dispatcher.lifecycle.apply` performs it as one
compare-and-set; nothing else writes attempt states.

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

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dispatcher.engine import condition_met, finished_state, retry_delay
from dispatcher.models import Attempt
from dispatcher.states import AttemptState, NotificationState, can_move
from providers.base import ReceiptKind, Signal


class Then(enum.StrEnum):
    """What the notification does after the attempt moved."""

    NOTHING = "nothing"
    ESCALATE = "escalate"  #: escalate this attempt now (it failed)
    NEXT = "next"  #: start the next step (or exhaust the cascade)
    FINISH = "finish"  #: the step's condition is met: the notification is done


@dataclass(frozen=True, slots=True)
class Transition:
    """One compare-and-set of an attempt, with its history event and follow-up."""

    expected: AttemptState
    values: Mapping[str, object]  #: columns to write; ``state`` when the state changes
    event: str  #: history event type
    detail: Mapping[str, object] = field(default_factory=dict)
    then: Then = Then.NOTHING
    finish_as: NotificationState | None = None
    reason: str | None = None  #: why the notification finished
    outcome: str = ""  #: a short word for logs, tests and task results

    @property
    def target(self) -> AttemptState | None:
        state = self.values.get("state")
        return AttemptState(str(state)) if state is not None else None


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


def _satisfied(
    attempt: Attempt,
    sent_at: datetime | None,
    delivered: object,
    read: object,
    clicked: object = None,
) -> bool:
    return condition_met(
        Signal(attempt.wait_for),
        sent_at=sent_at,
        delivered_at=delivered,  # type: ignore[arg-type]
        read_at=read,  # type: ignore[arg-type]
        clicked_at=clicked or attempt.clicked_at,  # type: ignore[arg-type]
    )


def _finish(attempt: Attempt) -> tuple[Then, NotificationState, str]:
    wait_for = Signal(attempt.wait_for)
    return Then.FINISH, finished_state(wait_for), f"{attempt.channel}_{wait_for.value}"


def after_send(
    attempt: Attempt, report: SendReport, now: datetime, policy: RetryPolicy
) -> Transition:
    """The move out of ``sending`` (or out of a sweep's ``unknown``) after a provider round."""
    expected = AttemptState(attempt.state)
    code = (report.code or report.kind)[:64]
    timer = now + timedelta(seconds=attempt.timeout_seconds)
    if report.kind == "sent":
        then, finish_as, reason = Then.NOTHING, None, None
        if _satisfied(attempt, now, None, None):
            then, finish_as, reason = _finish(attempt)
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


#: The attempt state a receipt kind moves to.
_RECEIPT_TARGET = {
    ReceiptKind.SENT: AttemptState.SENT,
    ReceiptKind.DELIVERED: AttemptState.DELIVERED,
    ReceiptKind.READ: AttemptState.READ,
    ReceiptKind.FAILED: AttemptState.FAILED,
}

#: A receipt for an attempt in these states waits until the send is recorded.
NOT_YET_SENT = frozenset({AttemptState.PENDING, AttemptState.SENDING})


def on_receipt(
    attempt: Attempt, kind: ReceiptKind, at: datetime, now: datetime, *, open_: bool
) -> Transition | None:
    """The move a receipt makes, or None when it must wait for the send to be recorded.

    The state moves only where the transition table allows it; an escalated
    attempt keeps its state and gets only the timestamps (a late receipt).
    """
    current = AttemptState(attempt.state)
    if current in NOT_YET_SENT:
        return None
    target = _RECEIPT_TARGET[kind]
    values: dict[str, object] = {}
    if kind is ReceiptKind.FAILED:
        if not can_move(current, target):
            return Transition(
                current, {}, "receipt_ignored", {"kind": kind.value}, outcome="ignored"
            )
        values = {"state": target.value, "escalate_at": now}
        return Transition(current, values, "failed", {}, then=Then.ESCALATE, outcome="failed")
    if kind in (ReceiptKind.DELIVERED, ReceiptKind.READ) and attempt.delivered_at is None:
        values["delivered_at"] = at
    if kind is ReceiptKind.READ and attempt.read_at is None:
        values["read_at"] = at
    if kind is ReceiptKind.SENT and attempt.sent_at is None:
        values["sent_at"] = at
    if can_move(current, target):
        values["state"] = target.value
    if not values:
        return Transition(current, {}, "receipt_ignored", {"kind": kind.value}, outcome="duplicate")
    delivered = values.get("delivered_at", attempt.delivered_at)
    read = values.get("read_at", attempt.read_at)
    sent_at = values.get("sent_at", attempt.sent_at)
    if open_ and _satisfied(attempt, sent_at, delivered, read):  # type: ignore[arg-type]
        then, finish_as, reason = _finish(attempt)
        return Transition(
            current,
            values,
            kind.value,
            {"late": False},
            then,
            finish_as,
            reason,
            outcome="finished",
        )
    late = not open_ and kind in (ReceiptKind.DELIVERED, ReceiptKind.READ)
    return Transition(
        current, values, kind.value, {"late": not open_}, outcome="late" if late else "applied"
    )


def on_click(attempt: Attempt, link: int, now: datetime, *, open_: bool) -> Transition:
    """A person followed tracked link ``link`` of a sent attempt (previews filtered out).

    The first click stamps ``clicked_at`` (and ``read_at``/``delivered_at``: a click
    implies both), moves the state to ``read`` where the table allows it, and finishes
    an open notification whose step waits for it, as a receipt does. Later clicks change
    nothing but are recorded (``first: false``).
    """
    current = AttemptState(attempt.state)
    if attempt.clicked_at is not None:
        detail = {"link": link, "first": False}
        return Transition(current, {}, "clicked", detail, outcome="counted")
    values: dict[str, object] = {"clicked_at": now}
    if attempt.read_at is None:
        values["read_at"] = now
    if attempt.delivered_at is None:
        values["delivered_at"] = now
    if can_move(current, AttemptState.READ):
        values["state"] = AttemptState.READ.value
    detail = {"link": link, "first": True, "late": not open_}
    if open_ and _satisfied(attempt, attempt.sent_at, now, now, now):
        then, finish_as, reason = _finish(attempt)
        return Transition(current, values, "clicked", detail, then, finish_as, reason, "finished")
    return Transition(
        current, values, "clicked", detail, outcome="late" if not open_ else "applied"
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
