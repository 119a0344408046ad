"""Exact medians to read from the rollup's histogram.

The histogram (reads per bin of whole seconds, minutes or hours) says which bin holds
the middle read(s) and at what rank; one index range scan (``ix_attempt_read_bin`` on
PostgreSQL) then reads the exact values of that bin over the period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from dispatcher.rollup_sums import Sums, params, run
from dispatcher.rollup_triggers import read_bin, seconds_to_read


def read_bins(reads: Sums) -> dict[str, dict[int, int]]:
    per_channel: dict[str, dict[int, int]] = {}
    for (_, _, channel, bin_), (n,) in reads.items():
        bins = per_channel.setdefault(channel, {})
        bins[int(bin_)] = bins.get(int(bin_), 0) + round(n)
    return per_channel


def _values_in_bin(
    session: Session,
    channel: str,
    bin_: int,
    offset: int,
    count: int,
    period: tuple[datetime, datetime, str | None],
) -> list[float]:
    """The ``offset``-th (and next) seconds to read, in order, of one bin over the period."""
    dialect = session.get_bind().dialect.name
    values, only = params(*period)
    values.update(channel=channel, bin=bin_, offset=offset, count=count)
    seconds = seconds_to_read(dialect)
    sql = (
        f"SELECT {seconds} AS s FROM attempt WHERE channel = :channel "  # noqa: S608
        f"AND {read_bin(dialect)} = :bin AND read_at IS NOT NULL AND sent_at IS NOT NULL "
        f"AND notification_created_at >= :lo AND notification_created_at < :hi{only} "
    )
    if count > 1 or offset > 0:
        bounds = f"SELECT min(s), max(s) FROM ({sql}) AS b"  # noqa: S608 - our constants
        edges = list(run(session, bounds, values))
        low, high = edges[0]
        if low is not None and low == high:
            return [float(low)] * count
    ordered = sql + "ORDER BY s LIMIT :count OFFSET :offset"
    return [float(row[0]) for row in run(session, ordered, values)]


def exact_median(session: Session, channel: str, bins: dict[int, int], period: Any) -> float | None:
    """The median as the reference computes it, from the middle one or two reads."""
    total = sum(bins.values())
    if total <= 0:
        return None
    ranks = sorted({(total - 1) // 2, total // 2})
    picked: list[float] = []
    below = 0
    for bin_ in sorted(bins):
        inside = [rank - below for rank in ranks if below <= rank < below + bins[bin_]]
        if inside:
            count = inside[-1] - inside[0] + 1
            picked += _values_in_bin(session, channel, bin_, inside[0], count, period)
        below += bins[bin_]
    if len(picked) != len(ranks):  # rows changed between the statements
        return None
    if len(picked) == 1:
        return round(picked[0], 3)
    first, second = picked
    if session.get_bind().dialect.name == "postgresql":  # percentile_cont's interpolation
        return round(first + 0.5 * (second - first), 3)
    return round((first + second) / 2.0, 3)  # avg() of the middle two
