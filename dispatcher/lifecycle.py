"""Notification lifecycle in the database: create attempts, apply transitions, finish.

Every state change is a compare-and-set ``UPDATE ... WHERE state = <expected>``,
so two processes racing on one row cannot both win; the loser sees 0 rows. The
decisions are made by the pure functions of :mod:`dispatcher.decisions`;
:func:`apply` is the one function that writes an attempt's state (besides the
claim, ``pending -> sending``, and a finish cancelling what was not sent).

The hot statements are SQLAlchemy Core, built once with bound parameters (one per
set of columns written) and executed with plain values: no ORM bulk-update
machinery and no statement building per send. What a statement wrote is set on
the loaded rows by hand (:func:`_written`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, or_, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col

from dispatcher.content import attempt_fields
from dispatcher.decisions import Then, Transition, on_timeout
from dispatcher.engagement import observe
from dispatcher.engine import PlannedStep, release_time
from dispatcher.history import record
from dispatcher.models import Attempt, Customer, Notification, UTCDateTime
from dispatcher.publisher import Doorbell
from dispatcher.states import (
    CONFIRMED_STATES,
    OPEN_STATES,
    WAITING_STATES,
    AttemptState,
    NotificationState,
    can_move,
)
from dispatcher.work import Work


def quiet_hours_of(customer: Customer | None) -> tuple[time, time] | None:
    if customer is None or not customer.quiet_start or not customer.quiet_end:
        return None
    return time.fromisoformat(customer.quiet_start), time.fromisoformat(customer.quiet_end)


def create_attempt(
    session: Session,
    notification: Notification,
    step: int,
    now: datetime,
) -> tuple[Attempt, Doorbell | None]:
    """Insert the attempt for ``step``; return it and a doorbell if it is due now."""
    planned = PlannedStep.from_json(notification.steps[step])
    due = now
    if notification.respect_quiet_hours:
        customer = session.get(Customer, notification.customer_id)
        tz = customer.timezone if customer else "UTC"
        due = release_time(now, quiet_hours_of(customer), tz)
    attempt = Attempt(
        **attempt_fields(notification.content.get(planned.channel.value)),
        notification_id=notification.id,
        step=step,
        channel=planned.channel.value,
        contact_id=planned.contact_id,
        wait_for=planned.wait_for.value,
        timeout_seconds=planned.timeout,
        state=AttemptState.PENDING,
        due_at=due,
        published_at=now if due <= now else None,
        created_at=now,
        notification_created_at=notification.created_at,
        cascade=notification.cascade,
    )
    session.add(attempt)
    if due > now:
        record(
            session,
            "postponed",
            at=now,
            source="engine",
            notification=notification,
            attempt=attempt,
            reason="quiet_hours",
            until=due.isoformat(),
        )
        return attempt, None
    return attempt, Doorbell(attempt.id, attempt.channel, notification.id)


#: Our UPDATEs set what they wrote on the loaded row themselves (:func:`_written`):
#: no in-Python evaluation of the WHERE clause against the identity map.
_NO_SYNC = {"synchronize_session": False}


def _written(row: object, values: dict[str, object]) -> None:
    """What an UPDATE just wrote, set on the loaded row without another SELECT."""
    for name, value in values.items():
        set_committed_value(row, name, value)


_ATTEMPT: Any = Attempt.__table__  # type: ignore[attr-defined]
_NOTIFICATION: Any = Notification.__table__  # type: ignore[attr-defined]
_A, _N = _ATTEMPT.c, _NOTIFICATION.c
#: Built statements by the columns they write (a handful of shapes in all).
_STATEMENTS: dict[tuple[object, ...], Update] = {}


def _settings(columns: Sequence[str]) -> dict[str, Any]:
    return {name: bindparam(f"set_{name}") for name in columns}


def _params(values: dict[str, object]) -> dict[str, object]:
    return {f"set_{name}": value for name, value in values.items()}


def _attempt_cas(columns: tuple[str, ...], token: bool) -> Update:
    """``UPDATE attempt SET <columns> WHERE id = … AND state = … [AND claim_token = …]``."""
    key = ("attempt", columns, token)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = update(_ATTEMPT).where(
            _A.id == bindparam("cas_id"), _A.state == bindparam("cas_expected")
        )
        if token:
            statement = statement.where(_A.claim_token == bindparam("cas_token"))
        statement = _STATEMENTS.setdefault(key, statement.values(_settings(columns)))
    return statement


def _notification_move(columns: tuple[str, ...]) -> Update:
    """``UPDATE notification SET <columns> WHERE id = … AND state IN (<open>)``."""
    key = ("notification", columns)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS.setdefault(
            key,
            update(_NOTIFICATION)
            .where(
                _N.id == bindparam("cas_id"),
                _N.state.in_(sorted(s.value for s in OPEN_STATES)),
            )
            .values(_settings(columns)),
        )
    return statement


_ADD_COST = (
    update(_NOTIFICATION)
    .where(_N.id == bindparam("cas_id"))
    .values(cost=_N.cost + bindparam("added", type_=_N.cost.type))
)
_PENDING = AttemptState.PENDING.value
_WAITING = sorted(s.value for s in WAITING_STATES)
#: A finished notification's attempts: pending ones cancelled, live timers cleared, in one go.
_CLOSE_ATTEMPTS = (
    update(_ATTEMPT)
    .where(
        _A.notification_id == bindparam("cas_id"),
        or_(_A.state == _PENDING, and_(_A.state.in_(_WAITING), _A.escalate_at.is_not(None))),
    )
    .values(
        state=case((_A.state == _PENDING, AttemptState.CANCELLED.value), else_=_A.state),
        finished_at=case(
            (_A.state == _PENDING, bindparam("now", type_=UTCDateTime())), else_=_A.finished_at
        ),
        escalate_at=case((_A.state.in_(_WAITING), None), else_=_A.escalate_at),
    )
    .returning(_A.id, _A.state, _A.finished_at, _A.escalate_at)
)


def _flush_new(session: Session) -> None:
    """Core statements do not autoflush: rows added earlier in this transaction (a next
    step's attempt) must be in the database before a statement that should see them."""
    if any(isinstance(row, (Attempt, Notification)) for row in session.new):
        session.flush()


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
        _flush_new(work.session)
        statement = _attempt_cas(tuple(values), claim_token is not None)
        params = _params(values)
        params.update(cas_id=attempt.id, cas_expected=transition.expected.value)
        if claim_token is not None:
            params["cas_token"] = claim_token
        result = work.session.execute(statement, params)
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        _written(attempt, values)
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
                execution_options=_NO_SYNC,
            ).scalars()
        )
        for notification, attempt, each in group:
            if attempt.id in moved:
                _written(attempt, values)
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
        session.execute(_ADD_COST, {"cas_id": notification.id, "added": added_cost})
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
    _flush_new(session)
    result = session.execute(
        _notification_move(tuple(written)), {**_params(written), "cas_id": notification.id}
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        _written(notification, written)
    return moved


def _close_attempts(session: Session, notification: Notification, now: datetime) -> int:
    """Cancel the attempts not yet claimed (they will never be sent) and clear the timers
    of those still waiting (a finished notification has nothing left to escalate, so the
    sweep's timer index holds only live ones): one statement. Loaded rows get what it
    wrote. Returns how many were cancelled."""
    _flush_new(session)
    rows = session.execute(_CLOSE_ATTEMPTS, {"cas_id": notification.id, "now": now}).all()
    cancelled = 0
    for attempt_id, state, finished_at, escalate_at in rows:
        cancelled += state == AttemptState.CANCELLED.value
        loaded = session.identity_map.get(identity_key(Attempt, attempt_id))
        if loaded is not None:
            written = {"state": state, "finished_at": finished_at, "escalate_at": escalate_at}
            _written(loaded, written)
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
