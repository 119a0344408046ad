"""``GET /v1/stats``: the statistics API, and the one document the stats page draws."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import Session

from dispatcher.api.deps import ApiKeyDep, RuntimeDep, SessionDep
from dispatcher.api.openapi import problems
from dispatcher.api.problems import Problem
from dispatcher.click_stats import link_stats
from dispatcher.experiment_stats import experiment_stats
from dispatcher.period import PeriodError, period
from dispatcher.rollup import series, summary
from dispatcher.runtime import Runtime
from dispatcher.savings import Bucket, bucket_for, redundant
from providers.base import Channel

router = APIRouter(tags=["stats"])

#: The period /v1/stats accepts: wide enough for any real data, far from datetime's limits.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

CascadeFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00]*$")]


def _bad_time(name: str, message: str) -> Problem:
    return Problem(
        422, "Invalid request", f"{name}: {message}", errors=[{"field": name, "message": message}]
    )


def stats_document(
    runtime: Runtime,
    session: Session,
    *,
    since: str | None,
    until: datetime | None,
    cascade: str | None,
    bucket: Bucket | None,
) -> dict[str, Any]:
    """The answer of ``/v1/stats``; :class:`Problem` 422 naming the field for a bad period."""
    if until is not None:
        if until.tzinfo is None:
            raise _bad_time("until", "give a time zone, e.g. 2026-01-01T00:00:00Z")
        if not EARLIEST <= until <= LATEST:
            raise _bad_time("until", "give a time between 1970-01-01 and 9000-01-01")
    try:
        start, end = period(since, until, runtime.now())
    except PeriodError as exc:
        raise Problem(
            422, "Invalid request", str(exc), errors=[{"field": exc.field, "message": exc.message}]
        ) from None
    if not EARLIEST <= start <= LATEST:
        raise _bad_time("since", "give a time between 1970-01-01 and 9000-01-01")
    sms_cost = runtime.settings.costs.get(Channel.SMS, 0.0)
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        # One snapshot for every figure: the rollup's sums and the rows they point into.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    now = runtime.now()
    document = summary(session, since=start, until=end, cascade=cascade, sms_cost=sms_cost, now=now)
    every = bucket_for(start, end, bucket)
    wasted = redundant(session, since=start, until=end, cascade=cascade)
    document.update(
        {
            "sms_cost": sms_cost,
            "bucket": every,
            "series": series(
                session,
                since=start,
                until=end,
                cascade=cascade,
                sms_cost=sms_cost,
                bucket=every,
                now=now,
            ),
            "redundant": wasted,
            "redundant_sends": sum(row["sends"] for row in wasted),
            "redundant_cost": round(sum(row["cost"] for row in wasted), 6),
            "links": link_stats(session, start, end, cascade),
            "experiments": experiment_stats(
                session, runtime.cascades, since=start, until=end, cascade=cascade
            ),
        }
    )
    return document


@router.get("/v1/stats", responses=problems(401, 422, 503))
def stats(
    runtime: RuntimeDep,
    session: SessionDep,
    _: ApiKeyDep,
    since: str | None = None,
    until: datetime | None = None,
    cascade: CascadeFilter = None,
    bucket: Bucket | None = None,
) -> dict[str, Any]:
    """Per channel: sent, delivered, read, failed, rates, time to read, cost; money saved.

    ``since`` is a time with a zone or a span back from ``until`` (``1h``, ``7d``).
    ``series`` gives cost, SMS-only cost and money saved per ``bucket`` (``hour`` or
    ``day``, UTC; by default hours for periods up to two days). ``redundant`` counts,
    per channel, sends made after an earlier step had (eventually) been confirmed.
    ``experiments`` compares the variants of each A/B cascade with the control's
    confirmation rate (95 % Newcombe interval on the difference).
    """
    return stats_document(
        runtime, session, since=since, until=until, cascade=cascade, bucket=bucket
    )
