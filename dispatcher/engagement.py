"""Engagement counts in the database: kept up to date as attempts end, read to plan.

When an attempt ends, :func:`dispatcher.lifecycle.apply` calls :func:`observe`:
confirmed within its step's timeout (the notification finished on it), or not (it
escalated: timed out or failed). Observations are collected on the session and written
just before the transaction commits, in the same transaction as the attempt's end: one
multi-row upsert per transaction, rows in key order (two transactions touching the same
customers lock them in one order), decaying the stored counts in SQL (``exp``).

An ``order: adaptive`` cascade reads one customer's rows (one primary-key range read;
a broadcast batch reads its customers' rows in one query) and the population's rates
per channel, cached per process for ``engagement_population_refresh`` seconds:
:func:`affinity_of`, :func:`affinities_of`. Counts are kept for
every cascade, so an adaptive cascade learns from all of a customer's notifications.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, case, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import SQLModel

from config.settings import Settings
from dispatcher.affinity import Affinity, Counts, observed, population_rate
from dispatcher.customer_tables import Engagement
from providers.base import Channel

_PENDING = "cascade.engagement"
#: ``exp`` of less than this underflows to an error on PostgreSQL; the weight is ~0 anyway.
_MIN_EXPONENT = -700.0


@dataclass
class _Config:
    half_life: float = Settings.model_fields["engagement_half_life"].default


_config = _Config()
#: Per database URL: (fetched at, Unix seconds; the population's rate per channel).
_population: dict[str, tuple[float, dict[Channel, float]]] = {}


def install(settings: Settings) -> None:
    """Use this process's settings for the half-life of the counts (at runtime build)."""
    _config.half_life = settings.engagement_half_life


def observe(
    session: OrmSession, *, customer_id: str, channel: str, confirmed: bool, at: datetime
) -> None:
    """One attempt of ``customer_id`` on ``channel`` ended; written at commit."""
    session.info.setdefault(_PENDING, []).append((customer_id, channel, confirmed, at.timestamp()))


def merged(
    pending: Iterable[tuple[str, str, bool, float]], half_life: float
) -> list[dict[str, Any]]:
    """One row per (customer, channel), as of its latest observation, in key order."""
    rows: dict[tuple[str, str], tuple[Counts, float]] = {}
    for customer_id, channel, confirmed, at in pending:
        counts, as_of = rows.get((customer_id, channel), (Counts(), at))
        latest = max(as_of, at)
        counts = counts.decayed(latest - as_of, half_life).plus(
            observed(confirmed).decayed(latest - at, half_life)
        )
        rows[(customer_id, channel)] = (counts, latest)
    return [
        {
            "customer_id": customer_id,
            "channel": channel,
            "confirmed": counts.confirmed,
            "tried": counts.tried,
            "as_of": as_of,
        }
        for (customer_id, channel), (counts, as_of) in sorted(rows.items())
    ]


def _table() -> Table:
    return SQLModel.metadata.tables[str(Engagement.__tablename__)]


def _decay(age: ColumnElement[Any], half_life: float) -> ColumnElement[Any]:
    """``0.5 ** (age / half_life)`` in SQL (ages below 0 count as 0)."""
    exponent = -math.log(2) / half_life * age
    return func.exp(case((age < 0, 0.0), (exponent < _MIN_EXPONENT, _MIN_EXPONENT), else_=exponent))


def write(session: OrmSession, rows: list[dict[str, Any]], half_life: float) -> None:
    """Add ``rows`` to the stored counts, each side decayed to the later ``as_of``."""
    dialect = session.get_bind().dialect.name
    statement = _upserts.get((dialect, half_life))
    if statement is None:
        statement = _upserts[(dialect, half_life)] = _upsert(dialect, half_life)
    session.execute(statement, rows)


def _upsert(dialect: str, half_life: float) -> Any:
    """The upsert, built once per dialect and half-life: compiled once, then cached."""
    table = _table()
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    new, old = insert.excluded, table.c
    stored = _decay(new.as_of - old.as_of, half_life)
    added = _decay(old.as_of - new.as_of, half_life)
    return insert.on_conflict_do_update(
        index_elements=["customer_id", "channel"],
        set_={
            "confirmed": old.confirmed * stored + new.confirmed * added,
            "tried": old.tried * stored + new.tried * added,
            "as_of": case((new.as_of >= old.as_of, new.as_of), else_=old.as_of),
        },
    )


_upserts: dict[tuple[str, float], Any] = {}


@event.listens_for(OrmSession, "before_commit")
def _write(session: OrmSession) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        write(session, merged(pending, _config.half_life), _config.half_life)


@event.listens_for(OrmSession, "after_rollback")
def _drop(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)


def counts_of(
    session: OrmSession, customer_id: str, now: datetime, half_life: float
) -> dict[Channel, Counts]:
    """One customer's counts per channel, decayed to ``now`` (one primary-key read)."""
    c = _table().c
    rows = session.execute(
        select(c.channel, c.confirmed, c.tried, c.as_of).where(c.customer_id == customer_id)
    )
    moment = now.timestamp()
    return {
        Channel(channel): Counts(confirmed, tried).decayed(moment - as_of, half_life)
        for channel, confirmed, tried, as_of in rows
    }


def population(session: OrmSession, now: datetime, half_life: float) -> dict[Channel, float]:
    """Everyone's rate per channel: decayed sums over all rows (:func:`population_rate`)."""
    c = _table().c
    weight = _decay(now.timestamp() - c.as_of, half_life)
    rows = session.execute(
        select(c.channel, func.sum(c.confirmed * weight), func.sum(c.tried * weight)).group_by(
            c.channel
        )
    )
    return {
        Channel(channel): population_rate(Counts(float(confirmed or 0), float(tried or 0)))
        for channel, confirmed, tried in rows
    }


def cached_population(
    session: OrmSession, now: datetime, settings: Settings
) -> dict[Channel, float]:
    """:func:`population`, reused for ``engagement_population_refresh`` seconds."""
    key = str(session.get_bind().engine.url)
    moment = now.timestamp()
    fetched = _population.get(key)
    if fetched is None or not fetched[0] <= moment < fetched[0] + (
        settings.engagement_population_refresh
    ):
        fetched = _population[key] = (
            moment,
            population(session, now, settings.engagement_half_life),
        )
    return fetched[1]


def affinity_of(
    session: OrmSession, customer_id: str, now: datetime, settings: Settings
) -> Affinity:
    """What the adaptive order needs for one customer: counts, population rates, prices."""
    own = counts_of(session, customer_id, now, settings.engagement_half_life)
    return _affinity(own, cached_population(session, now, settings), settings)


def affinities_of(
    session: OrmSession, customer_ids: list[str], now: datetime, settings: Settings
) -> dict[str, Affinity]:
    """:func:`affinity_of` for a broadcast batch, every id included, in one query."""
    c = _table().c
    rows = session.execute(
        select(c.customer_id, c.channel, c.confirmed, c.tried, c.as_of).where(
            c.customer_id.in_(customer_ids)
        )
    )
    own: dict[str, dict[Channel, Counts]] = {cid: {} for cid in customer_ids}
    moment, half_life = now.timestamp(), settings.engagement_half_life
    for customer_id, channel, confirmed, tried, as_of in rows:
        counts = Counts(confirmed, tried).decayed(moment - as_of, half_life)
        own[customer_id][Channel(channel)] = counts
    population = cached_population(session, now, settings)
    return {cid: _affinity(counts, population, settings) for cid, counts in own.items()}


def _affinity(
    own: dict[Channel, Counts], population: dict[Channel, float], settings: Settings
) -> Affinity:
    return Affinity(
        own=own,
        population=population,
        costs=settings.costs,
        strength=settings.engagement_prior_strength,
        cost_per_hour=settings.engagement_cost_per_hour,
    )
