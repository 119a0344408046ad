"""A/B assignment: which variant of a cascade's experiment a customer gets.

:func:`assign` is pure and stable: SHA-256 of ``"<experiment>:<customer id>"`` mapped to
[0, 1) and looked up in the cumulative weights. The same customer gets the same variant
in every process, on every restart and on every machine (Python's ``hash()`` is salted
per process, so it is not used). Another experiment name shuffles customers anew.

Operators stop or promote variants without a redeploy (:mod:`dispatcher.experiment_admin`):
the statuses are rows of ``experiment_variant_state``, read through
:class:`VariantStatuses`, a per-process cache refreshed every few seconds, so the hot
path pays one small query per refresh, not one per notification. :func:`choose` applies
them:

* a promoted variant gets every customer;
* a stopped variant gets no new customers: its customers are hashed again (with another
  salt) among the active variants, while customers of active variants stay where they
  were;
* with every variant stopped the experiment is over: the cascade's own steps, no variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlmodel import Session, select

from config.cascades import Cascade
from dispatcher.models import ExperimentVariantState

#: How long a process trusts the statuses it read (API and workers alike).
CACHE_SECONDS = 5.0
#: Salt of the second hash that moves a stopped variant's customers.
REHASH = "after-stop"


class VariantStatus(StrEnum):
    ACTIVE = "active"  #: gets its weight's share of new customers (the default: no row)
    STOPPED = "stopped"  #: gets no new customers
    PROMOTED = "promoted"  #: gets every new customer


def position(customer_id: str, salt: str) -> float:
    """Where ``customer_id`` falls in [0, 1) for ``salt``: the first 8 bytes of SHA-256."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(customer_id: str, experiment: str, variants: Sequence[tuple[str, float]]) -> str:
    """The variant of ``customer_id``: pure, stable, split in proportion to the weights.

    Args:
        customer_id: the customer's id, as given to the API.
        experiment: the experiment's name (salts the hash: experiments split independently).
        variants: (name, weight) pairs in a fixed order; weights positive, any scale.

    Returns:
        The name of one of ``variants``.
    """
    if not variants:
        raise ValueError("assign needs at least one variant")
    point = position(customer_id, experiment) * sum(weight for _, weight in variants)
    running = 0.0
    for name, weight in variants:
        running += weight
        if point < running:
            return name
    return variants[-1][0]  # float rounding at the very top


def choose(
    customer_id: str,
    experiment: str,
    variants: Sequence[tuple[str, float]],
    statuses: Mapping[str, str],
) -> str | None:
    """:func:`assign` under the operators' statuses (variant -> status; missing: active).

    None when every variant is stopped (the experiment is over).
    """
    promoted = [name for name, _ in variants if statuses.get(name) == VariantStatus.PROMOTED]
    if promoted:
        return promoted[0]
    active = [(n, w) for n, w in variants if statuses.get(n, VariantStatus.ACTIVE) == "active"]
    if not active:
        return None
    first = assign(customer_id, experiment, variants)
    if any(name == first for name, _ in active):
        return first
    return assign(customer_id, f"{experiment}:{REHASH}", active)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The cascade a customer runs, and the experiment and variant it came from."""

    cascade: Cascade
    experiment: str | None = None
    variant: str | None = None


def variant_for(cascade: Cascade, customer_id: str, statuses: Mapping[str, str]) -> Assignment:
    """The cascade ``customer_id`` gets: a variant's, or the cascade as written."""
    experiment = cascade.experiment_name
    if cascade.experiment is None or experiment is None:
        return Assignment(cascade)
    name = choose(customer_id, experiment, cascade.experiment.weights(), statuses)
    if name is None:
        return Assignment(cascade)
    return Assignment(cascade.variant(name), experiment, name)


@dataclass
class VariantStatuses:
    """This process's copy of ``experiment_variant_state``, re-read every ``ttl`` seconds.

    A status changed elsewhere (another API process, the CLI) is seen within ``ttl``;
    the process that changed it calls :meth:`forget` and sees it at once.
    """

    ttl: float = CACHE_SECONDS
    _rows: dict[str, dict[str, str]] = field(default_factory=dict)
    _read_at: datetime | None = None

    def of(self, session: Session, experiment: str, now: datetime) -> Mapping[str, str]:
        """Variant -> status of ``experiment`` (variants without a row are active)."""
        if self._read_at is None or now - self._read_at >= timedelta(seconds=self.ttl):
            rows: dict[str, dict[str, str]] = {}
            for row in session.exec(select(ExperimentVariantState)):
                rows.setdefault(row.experiment, {})[row.variant] = row.status
            self._rows, self._read_at = rows, now
        return self._rows.get(experiment, {})

    def forget(self) -> None:
        self._read_at = None

    def for_cascade(
        self, session: Session, cascade: Cascade, customer_id: str, now: datetime
    ) -> Assignment:
        """:func:`variant_for` with the cached statuses (no query without an experiment)."""
        experiment = cascade.experiment_name
        if experiment is None:
            return Assignment(cascade)
        return variant_for(cascade, customer_id, self.of(session, experiment, now))
