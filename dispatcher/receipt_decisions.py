"""What a receipt or a click does to one attempt: pure decisions that return a
:class:`~dispatcher.transitions.Transition`, like the others in :mod:`dispatcher.decisions`
(whose table lists every decision and its cases)."""

from __future__ import annotations

from datetime import datetime

from dispatcher.models import Attempt
from dispatcher.states import AttemptState, can_move
from dispatcher.transitions import Then, Transition, finishing, satisfied
from providers.base import ReceiptKind

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
    if open_ and satisfied(attempt, sent_at, delivered, read):  # type: ignore[arg-type]
        then, finish_as, reason = finishing(attempt)
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
    if open_ and satisfied(attempt, attempt.sent_at, now, now, now):
        then, finish_as, reason = finishing(attempt)
        return Transition(current, values, "clicked", detail, then, finish_as, reason, "finished")
    return Transition(
        current, values, "clicked", detail, outcome="late" if not open_ else "applied"
    )
