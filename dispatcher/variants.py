"""Operators' decisions on A/B variants: stop, promote or resume one, without a redeploy.

A decision is a row of ``experiment_variant_state`` (no row: active). Every process
reads the rows through its :class:`~dispatcher.experiments.VariantStatuses` cache, so a
change reaches every API process and worker within its few seconds.

* ``stop``: the variant gets no new customers (they are hashed among the active ones);
* ``promote``: the variant gets every new customer (any other promoted one is active again);
* ``resume``: the variant is active again with its weight.

Notifications already accepted keep the steps they were planned with.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlmodel import Session, select

from config.cascades import Cascade
from dispatcher.experiments import VariantStatus
from dispatcher.models import ExperimentVariantState

Action = Literal["stop", "promote", "resume"]
_STATUS_OF: dict[str, VariantStatus] = {
    "stop": VariantStatus.STOPPED,
    "promote": VariantStatus.PROMOTED,
    "resume": VariantStatus.ACTIVE,
}


class UnknownExperiment(LookupError):
    """No cascade runs this experiment, or the experiment has no such variant."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def find(cascades: Mapping[str, Cascade], experiment: str) -> Cascade:
    """The cascade running ``experiment``; :class:`UnknownExperiment` if none does."""
    for cascade in cascades.values():
        if cascade.experiment_name == experiment:
            return cascade
    known = sorted(c.experiment_name for c in cascades.values() if c.experiment_name)
    raise UnknownExperiment(
        "name", f"unknown experiment {experiment!r} (known: {', '.join(known) or 'none'})"
    )


def statuses(session: Session, experiment: str) -> dict[str, str]:
    """Variant -> status as stored now (variants without a row are active)."""
    rows = session.exec(
        select(ExperimentVariantState).where(ExperimentVariantState.experiment == experiment)
    )
    return {row.variant: row.status for row in rows}


def describe(session: Session, cascade: Cascade) -> dict[str, Any]:
    """An experiment's variants with their weights, steps and statuses."""
    assert cascade.experiment is not None
    name = cascade.experiment_name
    stored = statuses(session, str(name))
    return {
        "name": name,
        "cascade": cascade.name,
        "control": cascade.experiment.variants[0].name,
        "variants": [
            {
                "name": v.name,
                "weight": v.weight,
                "status": stored.get(v.name, VariantStatus.ACTIVE.value),
                "channels": [s.channel for s in runs.steps],
                "order": runs.order,
                "ttl_seconds": runs.ttl.total_seconds(),
            }
            for v in cascade.experiment.variants
            for runs in [cascade.variant(v.name)]
        ],
    }


def _put(session: Session, experiment: str, variant: str, status: str, now: datetime) -> None:
    row = session.get(ExperimentVariantState, (experiment, variant))
    if row is None:
        row = ExperimentVariantState(experiment=experiment, variant=variant, status=status)
    row.status, row.updated_at = status, now
    session.add(row)


def _one_decision_at_a_time(session: Session, experiment: str) -> None:
    """Serialise decisions on one experiment until the caller's transaction ends.

    A promote reads the other variants' statuses, then writes: two promotes at once
    would each see no other promoted variant and both stay promoted. SQLite transactions
    already begin ``IMMEDIATE`` (one writer at a time); PostgreSQL takes a
    transaction-scoped advisory lock on the experiment's name.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = f"cascade.experiment:{experiment}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def decide(session: Session, cascade: Cascade, variant: str, action: Action, now: datetime) -> None:
    """Apply ``action`` to ``variant`` in the caller's transaction."""
    assert cascade.experiment is not None
    experiment = str(cascade.experiment_name)
    names = [v.name for v in cascade.experiment.variants]
    if variant not in names:
        raise UnknownExperiment(
            "variant",
            f"experiment {experiment!r} has no variant {variant!r} (variants: {', '.join(names)})",
        )
    status = _STATUS_OF[action]
    _one_decision_at_a_time(session, experiment)
    if status is VariantStatus.PROMOTED:
        for other, current in statuses(session, experiment).items():
            if other != variant and current == VariantStatus.PROMOTED:
                _put(session, experiment, other, VariantStatus.ACTIVE.value, now)
    _put(session, experiment, variant, status.value, now)
