"""Notification and attempt states, and the attempt state machine as a table."""

from __future__ import annotations

import enum
from collections.abc import Mapping


class NotificationState(enum.StrEnum):
    ACCEPTED = "accepted"  #: stored, first attempt not yet sent
    IN_PROGRESS = "in_progress"  #: at least one attempt claimed
    SENT = "sent"  #: finished: a step waiting only for "sent" was accepted (e.g. Telegram)
    DELIVERED = "delivered"  #: finished: a step's delivered condition was met
    READ = "read"  #: finished: a step's read condition was met
    CLICKED = "clicked"  #: finished: a step waiting for a tracked-link click got one
    EXHAUSTED = "exhausted"  #: finished: every step tried, none confirmed in time
    EXPIRED = "expired"  #: finished: the TTL passed first
    CANCELLED = "cancelled"  #: finished: the client cancelled it
    SUPPRESSED = "suppressed"  #: never sent: opted out, frequency cap, no contact


#: Final states reached through a channel: a step got what it waits for (most certain first).
CONFIRMED_STATES: tuple[NotificationState, ...] = (
    NotificationState.CLICKED,
    NotificationState.READ,
    NotificationState.DELIVERED,
    NotificationState.SENT,
)

#: States in which the cascade still moves.
OPEN_STATES: frozenset[NotificationState] = frozenset(
    {NotificationState.ACCEPTED, NotificationState.IN_PROGRESS}
)


class AttemptState(enum.StrEnum):
    PENDING = "pending"  #: due at ``due_at``; waiting for a worker to claim it
    SENDING = "sending"  #: claimed by one worker (compare-and-set), provider call under way
    SENT = "sent"  #: the provider accepted it; waiting for a receipt or ``escalate_at``
    DELIVERED = "delivered"  #: a delivery receipt arrived
    READ = "read"  #: a read receipt arrived
    FAILED = "failed"  #: rejected, or retries exhausted; escalates now
    UNKNOWN = "unknown"  #: may have been sent; never resent blindly; escalates at its timeout
    ESCALATED = "escalated"  #: its time passed unconfirmed; the next step was created
    CANCELLED = "cancelled"  #: never sent: the notification finished first


#: Allowed transitions. A receipt may still land on an escalated attempt (late read):
#: that is recorded in ``read_at``/``delivered_at``, not as a state change.
TRANSITIONS: Mapping[AttemptState, frozenset[AttemptState]] = {
    AttemptState.PENDING: frozenset({AttemptState.SENDING, AttemptState.CANCELLED}),
    AttemptState.SENDING: frozenset(
        {
            AttemptState.SENT,
            AttemptState.PENDING,
            AttemptState.FAILED,
            AttemptState.UNKNOWN,
            AttemptState.CANCELLED,
        }
    ),
    AttemptState.SENT: frozenset(
        {AttemptState.DELIVERED, AttemptState.READ, AttemptState.FAILED, AttemptState.ESCALATED}
    ),
    AttemptState.DELIVERED: frozenset({AttemptState.READ, AttemptState.ESCALATED}),
    AttemptState.READ: frozenset(),
    AttemptState.UNKNOWN: frozenset(
        {
            AttemptState.SENT,
            AttemptState.DELIVERED,
            AttemptState.READ,
            AttemptState.FAILED,
            AttemptState.ESCALATED,
        }
    ),
    AttemptState.FAILED: frozenset({AttemptState.ESCALATED}),
    AttemptState.ESCALATED: frozenset(),
    AttemptState.CANCELLED: frozenset(),
}

#: Attempts whose timer can run out.
WAITING_STATES: frozenset[AttemptState] = frozenset(
    {AttemptState.SENT, AttemptState.DELIVERED, AttemptState.UNKNOWN, AttemptState.FAILED}
)


def can_move(current: AttemptState, target: AttemptState) -> bool:
    """True when the state machine allows ``current -> target``."""
    return target in TRANSITIONS[current]
