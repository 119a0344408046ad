"""Receipt latency per provider: a provider whose receipts slow down markedly is demoted.

Read from the attempts table (the database is the truth): the median time from
``sent_at`` to ``delivered_at`` over the recent window is compared with the
median over the baseline before it. When the recent median is ``factor`` times
the baseline and at least ``floor`` seconds slower, with enough samples on both
sides, the provider is demoted like one that keeps failing. The sweep runs the
check every ``every`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from sqlmodel import Session, col, select

from dispatcher.health import ProviderHealth
from dispatcher.models import Attempt


@dataclass(frozen=True, slots=True)
class LatencyRule:
    factor: float = 3.0
    floor: float = 30.0  #: seconds: a change smaller than this is noise
    min_samples: int = 20
    recent: float = 600.0  #: seconds of recent receipts
    baseline: float = 86400.0  #: seconds before the recent window


def _latencies(session: Session, provider: str, start: datetime, end: datetime) -> list[float]:
    rows = session.exec(
        select(Attempt.sent_at, Attempt.delivered_at)
        .where(
            Attempt.provider == provider,
            col(Attempt.delivered_at) > start,
            col(Attempt.delivered_at) <= end,
            col(Attempt.sent_at).is_not(None),
        )
        .order_by(col(Attempt.delivered_at).desc())
        .limit(500)
    ).all()
    return [(delivered - sent).total_seconds() for sent, delivered in rows if sent and delivered]


def slow_providers(
    session: Session, providers: list[str], now: datetime, rule: LatencyRule
) -> dict[str, tuple[float, float]]:
    """Providers whose recent receipts are markedly slower: name -> (recent, baseline) medians."""
    slow = {}
    recent_start = now - timedelta(seconds=rule.recent)
    baseline_start = recent_start - timedelta(seconds=rule.baseline)
    for provider in providers:
        recent = _latencies(session, provider, recent_start, now)
        baseline = _latencies(session, provider, baseline_start, recent_start)
        if min(len(recent), len(baseline)) < rule.min_samples:
            continue
        now_median, usual = median(recent), median(baseline)
        if now_median >= rule.factor * usual and now_median - usual >= rule.floor:
            slow[provider] = (now_median, usual)
    return slow


def demote_slow(
    session: Session, health: ProviderHealth, providers: list[str], now: datetime, rule: LatencyRule
) -> list[str]:
    """Demote every markedly slow provider; return those newly demoted."""
    return [
        name
        for name in slow_providers(session, providers, now, rule)
        if health.demote(name, "slow_receipts", now)
    ]
