"""The compare-and-set statements of :mod:`dispatcher.lifecycle`, built once.

SQLAlchemy Core with bound parameters (one statement per set of columns written),
executed with plain values: no ORM bulk-update machinery and no statement building per
send. What a statement wrote is set on the loaded rows by hand (:func:`set_written`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, or_, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from dispatcher.columns import UTCDateTime
from dispatcher.models import Attempt, Notification
from dispatcher.states import OPEN_STATES, WAITING_STATES, AttemptState

#: For ORM ``update()``/``delete()``: the rows in the session are set by hand.
NO_SYNC = {"synchronize_session": False}


def set_written(row: object, values: dict[str, object]) -> None:
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


def bound(values: dict[str, object]) -> dict[str, object]:
    return {f"set_{name}": value for name, value in values.items()}


def attempt_cas(columns: tuple[str, ...], token: bool) -> Update:
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


def notification_move(columns: tuple[str, ...]) -> Update:
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


ADD_COST = (
    update(_NOTIFICATION)
    .where(_N.id == bindparam("cas_id"))
    .values(cost=_N.cost + bindparam("added", type_=_N.cost.type))
)
_PENDING = AttemptState.PENDING.value
_WAITING = sorted(s.value for s in WAITING_STATES)
#: A finished notification's attempts: pending ones cancelled, live timers cleared, in one go.
CLOSE_ATTEMPTS = (
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


def flush_new(session: Session) -> None:
    """Core statements do not autoflush: rows added earlier in this transaction (a next
    step's attempt) must be in the database before a statement that should see them."""
    if any(isinstance(row, (Attempt, Notification)) for row in session.new):
        session.flush()
