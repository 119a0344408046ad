"""The transition one decision returns: one compare-and-set of an attempt, its history
event and what follows for the notification (:class:`Then`).

Built by :mod:`dispatcher.decisions` and :mod:`dispatcher.receipt_decisions`; performed by
:func:`dispatcher.lifecycle.apply`. Also the two checks those decisions share: is the
attempt's wait condition met, and what finishing by it means.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dispatcher.engine import condition_met, finished_state
from dispatcher.models import Attempt
from dispatcher.states import AttemptState, NotificationState
from providers.base import Signal


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


def satisfied(
    attempt: Attempt,
    sent_at: datetime | None,
    delivered: object,
    read: object,
    clicked: object = None,
) -> bool:
    """Whether the attempt's wait condition holds with these timestamps."""
    return condition_met(
        Signal(attempt.wait_for),
        sent_at=sent_at,
        delivered_at=delivered,  # type: ignore[arg-type]
        read_at=read,  # type: ignore[arg-type]
        clicked_at=clicked or attempt.clicked_at,  # type: ignore[arg-type]
    )


def finishing(attempt: Attempt) -> tuple[Then, NotificationState, str]:
    """What finishing the notification by this attempt means: follow-up, state, reason."""
    wait_for = Signal(attempt.wait_for)
    return Then.FINISH, finished_state(wait_for), f"{attempt.channel}_{wait_for.value}"
