"""Clicks per tracked link over a period of notifications (``links`` in ``/v1/stats``).

A link is its target page (no query or fragment) on a channel: how many counted clicks
it got and from how many messages (distinct attempts: a message with several links counts
once under each link that was clicked in it).
The rate per channel is in the channel rows (:func:`dispatcher.channel_stats.channel_stats`),
counted here from the first clicks: the attempts' period index stays the only thing the
channel rows read from ``attempt``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from dispatcher.receipt_tables import LinkClick

#: The most links listed, by clicks.
TOP_LINKS = 50


def link_stats(
    session: Session, since: datetime, until: datetime, cascade: str | None
) -> list[dict[str, Any]]:
    """The period's most clicked links: page, channel, clicks, messages whose link it was."""
    created = col(LinkClick.notification_created_at)
    clicks = func.count()
    messages = func.count(func.distinct(col(LinkClick.attempt_id)))
    query = (
        sa_select(col(LinkClick.page), col(LinkClick.channel), clicks, messages)
        .where(created >= since, created < until)
        .group_by(col(LinkClick.page), col(LinkClick.channel))
        .order_by(clicks.desc(), col(LinkClick.page), col(LinkClick.channel))
        .limit(TOP_LINKS)
    )
    if cascade:
        query = query.where(col(LinkClick.cascade) == cascade)
    return [
        {"page": page, "channel": channel, "clicks": int(n), "messages": int(clicked)}
        for page, channel, n, clicked in session.execute(query)
    ]


def clicked_per_channel(
    session: Session, since: datetime, until: datetime, cascade: str | None
) -> dict[str, int]:
    """Attempts with a counted click per channel (each attempt has one first click)."""
    created = col(LinkClick.notification_created_at)
    query = (
        sa_select(col(LinkClick.channel), func.count())
        .where(created >= since, created < until, col(LinkClick.first))
        .group_by(col(LinkClick.channel))
    )
    if cascade:
        query = query.where(col(LinkClick.cascade) == cascade)
    return {channel: int(n) for channel, n in session.execute(query)}
