"""A/B comparison in ``/v1/stats``: each experiment's variants side by side.

Per variant, over the notifications created in the period that were assigned to it:

* ``confirmed``: notifications that reached what their step waits for (``wait_for``:
  state clicked, read, delivered or sent); ``confirmation_rate`` = confirmed / notifications;
* ``read`` / ``read_rate``: notifications with an attempt the customer read (opened);
* ``clicked`` / ``click_rate``: notifications with an attempt the customer clicked (a
  tracked link, or a tap the app reported);
* ``median_seconds_to_confirmation``: from creation to confirmation (the median of
  ``finished_at - created_at`` of the confirmed ones);
* ``cost`` and ``cost_per_confirmed``;
* ``difference``: its confirmation rate minus the control's (the first variant of the
  file), with a 95 % interval by Newcombe's hybrid score method
  (:func:`dispatcher.confidence.newcombe`). An interval that excludes 0 is a difference
  the data supports at that level.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from config.cascades import Cascade
from dispatcher.confidence import newcombe
from dispatcher.experiments import VariantStatus
from dispatcher.models import Attempt, Notification
from dispatcher.states import CONFIRMED_STATES
from dispatcher.variants import statuses

#: Final states reached through a channel: the step's ``wait_for`` was met.
CONFIRMED = tuple(state.value for state in CONFIRMED_STATES)
#: (notifications, confirmed, read, clicked, cost) of one variant.
Counts = tuple[int, int, int, int, float]
NONE: Counts = (0, 0, 0, 0, 0.0)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _counts(
    session: Session, experiments: list[str], since: datetime, until: datetime
) -> dict[tuple[str, str], Counts]:
    confirmed = col(Notification.state).in_(CONFIRMED)
    read, clicked = (
        exists().where(col(Attempt.notification_id) == col(Notification.id), at.is_not(None))
        for at in (col(Attempt.read_at), col(Attempt.clicked_at))
    )
    query = (
        sa_select(
            col(Notification.experiment),
            col(Notification.variant),
            func.count(),
            *(
                func.coalesce(func.sum(case((c, 1), else_=0)), 0)
                for c in (confirmed, read, clicked)
            ),
            func.coalesce(func.sum(Notification.cost), 0.0),
        )
        .where(
            col(Notification.experiment).in_(experiments),
            col(Notification.created_at) >= since,
            col(Notification.created_at) < until,
        )
        .group_by(col(Notification.experiment), col(Notification.variant))
    )
    return {
        (str(e), str(v)): (int(n), int(c), int(r), int(k), float(cost))
        for e, v, n, c, r, k, cost in session.execute(query)
    }


def _medians(
    session: Session, experiments: list[str], since: datetime, until: datetime
) -> dict[tuple[str, str], float]:
    """Median seconds from creation to confirmation per (experiment, variant)."""
    query = sa_select(
        col(Notification.experiment),
        col(Notification.variant),
        col(Notification.created_at),
        col(Notification.finished_at),
    ).where(
        col(Notification.experiment).in_(experiments),
        col(Notification.created_at) >= since,
        col(Notification.created_at) < until,
        col(Notification.state).in_(CONFIRMED),
        col(Notification.finished_at).is_not(None),
    )
    seconds: dict[tuple[str, str], list[float]] = {}
    for experiment, variant, created, finished in session.execute(query):
        key = (str(experiment), str(variant))
        seconds.setdefault(key, []).append((finished - created).total_seconds())
    return {key: round(statistics.median(values), 3) for key, values in seconds.items()}


def _difference(row: Counts, control: Counts) -> dict[str, Any] | None:
    interval = newcombe(row[1], row[0], control[1], control[0])
    if interval is None:
        return None
    difference = row[1] / row[0] - control[1] / control[0]
    return {
        "confirmation_rate": round(difference, 4),
        "low": round(interval[0], 4),
        "high": round(interval[1], 4),
        "confidence": 0.95,
        "method": "newcombe-wilson",
    }


def experiment_stats(
    session: Session,
    cascades: Mapping[str, Cascade],
    *,
    since: datetime,
    until: datetime,
    cascade: str | None,
) -> list[dict[str, Any]]:
    """Every experiment (of ``cascade`` only, if given), its variants in file order."""
    running = [
        c for c in cascades.values() if c.experiment and (cascade is None or c.name == cascade)
    ]
    names = [str(c.experiment_name) for c in running]
    if not names:
        return []
    counts = _counts(session, names, since, until)
    medians = _medians(session, names, since, until)
    result = []
    for one in sorted(running, key=lambda c: str(c.experiment_name)):
        assert one.experiment is not None
        name = str(one.experiment_name)
        stored = statuses(session, name)
        control_name = one.experiment.variants[0].name
        control = counts.get((name, control_name), NONE)
        variants = []
        for variant in one.experiment.variants:
            row = counts.get((name, variant.name), NONE)
            notifications, confirmed, read, clicked, cost = row
            variants.append(
                {
                    "variant": variant.name,
                    "weight": variant.weight,
                    "status": stored.get(variant.name, VariantStatus.ACTIVE.value),
                    "notifications": notifications,
                    "confirmed": confirmed,
                    "confirmation_rate": _rate(confirmed, notifications),
                    "read": read,
                    "read_rate": _rate(read, notifications),
                    "clicked": clicked,
                    "click_rate": _rate(clicked, notifications),
                    "median_seconds_to_confirmation": medians.get((name, variant.name)),
                    "cost": round(cost, 6),
                    "cost_per_confirmed": round(cost / confirmed, 6) if confirmed else None,
                    "difference": None
                    if variant.name == control_name
                    else _difference(row, control),
                }
            )
        result.append(
            {"experiment": name, "cascade": one.name, "control": control_name, "variants": variants}
        )
    return result
