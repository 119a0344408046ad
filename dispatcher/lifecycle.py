"""Notification lifecycle in the database: create attempts, apply transitions, finish.

Every state change is a compare-and-set ``UPDATE ... WHERE state = <expected>``,
so two processes racing on one row cannot both win; the loser sees 0 rows. The
decisions are made by the pure functions of :mod:`dispatcher.decisions`;
:func:`apply` is the one function that writes an attempt's state (besides the
claim, ``pending -> sending``, and a finish cancelling what was not sent).

The hot statements are SQLAlchemy Core, built once (:mod:`dispatcher.state_statements`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col

from dispatcher.attempt_rows import create_attempt
from dispatcher.decisions import on_timeout
from dispatcher.engagement import observe
from dispatcher.history import record
from dispatcher.models import Attempt, Notification
from dispatcher.state_statements import (
    ADD_COST,
    CLOSE_ATTEMPTS,
    NO_SYNC,
    attempt_cas,
    bound,
    flush_new,
    notification_move,
    set_written,
)
from dispatcher.states import (
    CONFIRMED_STATES,
    OPEN_STATES,
    AttemptState,
    NotificationState,
    can_move,
)
from dispatcher.transitions import Then, Transition
from dispatcher.work import Work


#: Our UPDATEs set what they wrote on the loaded row themselves (``set_written``): no
#: in-Python evaluation of the WHERE clause against the identity map.
def apply(
    work: Work,
    notification: Notification,
    attempt: Attempt,
    transition: Transition,
    *,
    source: str,
    claim_token: str | None = None,
) -> bool:
    """Perform one decided transition: the only place attempt states are written.

    A compare-and-set from ``transition.expected`` (and the claim token, when given);
    then the history event, the cost, and what follows for the notification. Returns
    False, changing nothing, when the attempt was no longer in the expected state.
    """
    _check(transition)
    values = dict(transition.values)
    added_cost = float(values["cost"]) - attempt.cost if "cost" in values else 0.0  # type: ignore[arg-type]
    if values:
        flush_new(work.session)
        statement = attempt_cas(tuple(values), claim_token is not None)
        params = bound(values)
        params.update(cas_id=attempt.id, cas_expected=transition.expected.value)
        if claim_token is not None:
            params["cas_token"] = claim_token
        result = work.session.execute(statement, params)
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        set_written(attempt, values)
    _follow(work, notification, attempt, transition, added_cost, source=source)
    return True


def apply_many(
    work: Work, items: Sequence[tuple[Notification, Attempt, Transition]], *, source: str
) -> int:
    """:func:`apply` for many attempts of *different* notifications, in few statements.

    Transitions writing the same values from the same state share one compare-and-set
    (``UPDATE ... WHERE id IN (...) AND state = <expected> RETURNING id``); each winner
    then gets exactly what :func:`apply` does after its own compare-and-set. Transitions
    that change the cost go through :func:`apply` one by one. Returns the winners.
    """
    if len({n.id for n, _, _ in items}) != len(items):
        raise ValueError("apply_many takes one attempt per notification")
    groups: dict[tuple[object, ...], list[tuple[Notification, Attempt, Transition]]] = {}
    won = 0
    for notification, attempt, transition in items:
        _check(transition)
        if "cost" in transition.values or not transition.values:
            won += apply(work, notification, attempt, transition, source=source)
            continue
        key = (transition.expected, *sorted(transition.values.items()))
        groups.setdefault(key, []).append((notification, attempt, transition))
    for group in groups.values():
        transition = group[0][2]
        values = dict(transition.values)
        ids = [attempt.id for _, attempt, _ in group]
        moved = set(
            work.session.execute(
                update(Attempt)
                .where(col(Attempt.id).in_(ids), col(Attempt.state) == transition.expected.value)
                .values(**values)
                .returning(col(Attempt.id)),
                execution_options=NO_SYNC,
            ).scalars()
        )
        for notification, attempt, each in group:
            if attempt.id in moved:
                set_written(attempt, values)
                _follow(work, notification, attempt, each, 0.0, source=source)
                won += 1
    return won


def _check(transition: Transition) -> None:
    target = transition.target
    if target is not None and not can_move(transition.expected, target):
        raise ValueError(f"illegal attempt transition {transition.expected} -> {target}")


def _follow(
    work: Work,
    notification: Notification,
    attempt: Attempt,
    transition: Transition,
    added_cost: float,
    *,
    source: str,
) -> None:
    """What follows a won compare-and-set: cost, history event, the notification's next move."""
    session = work.session
    if added_cost:
        session.execute(ADD_COST, {"cas_id": notification.id, "added": added_cost})
    record(
        session,
        transition.event,
        at=work.now,
        source=source,
        notification=notification,
        attempt=attempt,
        **transition.detail,
    )
    if transition.then in (Then.FINISH, Then.NEXT):  # the attempt ended: confirmed or not
        observe(
            session,
            customer_id=notification.customer_id,
            channel=attempt.channel,
            confirmed=transition.then is Then.FINISH,
            at=work.now,
        )
    if transition.then is Then.FINISH and transition.finish_as is not None:
        finish(
            session,
            notification,
            transition.finish_as,
            work.now,
            source=source,
            reason=transition.reason,
            attempt=attempt,
        )
    elif transition.then is Then.ESCALATE:
        escalate(work, notification, attempt, source=source)
    elif transition.then is Then.NEXT:
        _next_step(work, notification, attempt, source=source)


def move_notification(
    session: Session, notification: Notification, target: NotificationState, **values: object
) -> bool:
    """Compare-and-set a notification out of an open state."""
    written = {"state": target.value, **values}
    flush_new(session)
    result = session.execute(
        notification_move(tuple(written)), {**bound(written), "cas_id": notification.id}
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        set_written(notification, written)
    return moved


def _close_attempts(session: Session, notification: Notification, now: datetime) -> int:
    """Cancel the attempts not yet claimed (they will never be sent) and clear the timers
    of those still waiting (a finished notification has nothing left to escalate, so the
    sweep's timer index holds only live ones): one statement. Loaded rows get what it
    wrote. Returns how many were cancelled."""
    flush_new(session)
    rows = session.execute(CLOSE_ATTEMPTS, {"cas_id": notification.id, "now": now}).all()
    cancelled = 0
    for attempt_id, state, finished_at, escalate_at in rows:
        cancelled += state == AttemptState.CANCELLED.value
        loaded = session.identity_map.get(identity_key(Attempt, attempt_id))
        if loaded is not None:
            written = {"state": state, "finished_at": finished_at, "escalate_at": escalate_at}
            set_written(loaded, written)
    return cancelled


def finish(
    session: Session,
    notification: Notification,
    state: NotificationState,
    now: datetime,
    *,
    source: str,
    reason: str | None = None,
    attempt: Attempt | None = None,
) -> bool:
    """Close an open notification; cancel what was not sent. False if already closed."""
    confirmed = state in CONFIRMED_STATES
    channel = attempt.channel if attempt is not None and confirmed else None
    if not move_notification(
        session, notification, state, finished_at=now, reason=reason, finished_channel=channel
    ):
        return False
    cancelled = _close_attempts(session, notification, now)
    record(
        session,
        "finished",
        at=now,
        source=source,
        notification=notification,
        attempt=attempt,
        state=state.value,
        reason=reason,
        cancelled_attempts=cancelled,
    )
    return True


def escalate(work: Work, notification: Notification, attempt: Attempt, *, source: str) -> bool:
    """Give up waiting on ``attempt`` and start the next step (or exhaust the cascade).

    Safe to race: the compare-and-set on the attempt and the unique
    (notification, step) let one caller win.
    """
    if notification.state not in OPEN_STATES:
        return False
    transition = on_timeout(attempt, work.now)
    if transition is None:
        return False
    return apply(work, notification, attempt, transition, source=source)


def escalate_many(work: Work, due: Sequence[tuple[Notification, Attempt]], *, source: str) -> int:
    """:func:`escalate` for a batch of due attempts (the sweep): batched compare-and-sets.

    The first attempt of each notification goes through :func:`apply_many`; a second
    one of the same notification (rare) follows alone, after the first moved it on.
    """
    first: dict[str, tuple[Notification, Attempt, Transition]] = {}
    later: list[tuple[Notification, Attempt]] = []
    for notification, attempt in due:
        if notification.id in first:
            later.append((notification, attempt))
            continue
        transition = on_timeout(attempt, work.now)
        if notification.state in OPEN_STATES and transition is not None:
            first[notification.id] = (notification, attempt, transition)
    count = apply_many(work, list(first.values()), source=source)
    return count + sum(escalate(work, n, a, source=source) for n, a in later)


def _next_step(work: Work, notification: Notification, attempt: Attempt, *, source: str) -> None:
    if notification.state not in OPEN_STATES:
        return
    next_step = attempt.step + 1
    if next_step >= len(notification.steps):
        finish(
            work.session,
            notification,
            NotificationState.EXHAUSTED,
            work.now,
            source=source,
            reason="no_confirmation",
        )
        return
    _, bell = create_attempt(work.session, notification, next_step, work.now)
    work.ring(bell)
