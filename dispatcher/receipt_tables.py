"""Tables of what comes back after a send: raw provider receipts (stored before they
are applied), the one-time values of signed callbacks, and counted clicks on tracked links.

Registered on ``SQLModel.metadata`` when :mod:`dispatcher.models` is imported.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Index, UniqueConstraint, func, text
from sqlalchemy import select as sa_select
from sqlmodel import Field, Session, SQLModel, col

from dispatcher.columns import utc_column

if TYPE_CHECKING:
    from dispatcher.models import Attempt

#: ``link`` and ``page`` of a click the app reports on the message itself (a tap on the
#: push), not on one of its tracked links: ``POST /v1/receipts`` with ``status: clicked``.
APP_LINK = -1
APP_PAGE = "(the message, as the app reported)"
#: Clicks recorded per attempt at most: a script following one link in a loop gets its
#: redirects, but adds no more history events and click rows than this.
MAX_CLICKS = 50


class LinkClick(SQLModel, table=True):
    """One counted click on a tracked link (previews and scanners are not counted), or on
    the message itself as the app reports it (``APP_LINK``, ``APP_PAGE``).

    ``page`` is the link's target without its query and fragment: per-customer
    parameters would make every link its own row in the stats.
    """

    __table_args__ = (Index("ix_linkclick_period", "notification_created_at", "cascade"),)

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: str = Field(foreign_key="attempt.id", index=True, max_length=36)
    link: int  #: the link's index in its message (the token carries it); APP_LINK: the app
    page: str = Field(max_length=512)
    first: bool  #: the attempt's first counted click (the one that confirms)
    channel: str = Field(max_length=16)
    cascade: str | None = Field(default=None, max_length=64)
    notification_created_at: datetime | None = utc_column()
    at: datetime = utc_column(nullable=False)

    @classmethod
    def of(cls, attempt: Attempt, link: int, page: str, *, first: bool, at: datetime) -> LinkClick:
        """A click on ``attempt``'s message."""
        return cls(
            attempt_id=attempt.id,
            link=link,
            page=page,
            first=first,
            channel=attempt.channel,
            cascade=attempt.cascade,
            notification_created_at=attempt.notification_created_at,
            at=at,
        )


def room_for_click(session: Session, attempt: Attempt) -> bool:
    """Whether another click on ``attempt`` is recorded: always the first (nothing to
    count), later ones until ``MAX_CLICKS`` are."""
    if attempt.clicked_at is None:
        return True
    query = sa_select(func.count()).where(col(LinkClick.attempt_id) == attempt.id)
    return int(session.execute(query).scalar_one()) < MAX_CLICKS


class ProviderEvent(SQLModel, table=True):
    """A raw receipt, deduplicated on the provider's event id, stored before it is applied."""

    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_provider_event_pending", "applied_at", "next_check_at"),
        # Receipts that arrived while a send was in flight (migration d8e9f0a1b2c3).
        Index(
            "ix_provider_event_unapplied_reference",
            "reference",
            postgresql_where=text("applied_at IS NULL"),
            sqlite_where=text("applied_at IS NULL"),
        ),
        Index(
            "ix_provider_event_unapplied_message",
            "provider",
            "provider_message_id",
            postgresql_where=text("applied_at IS NULL"),
            sqlite_where=text("applied_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    event_id: str = Field(max_length=255)
    kind: str = Field(max_length=16)
    provider_message_id: str | None = Field(default=None, max_length=255)
    reference: str | None = Field(default=None, max_length=64)
    recipient: str | None = Field(default=None, max_length=255)  #: for VK "read up to" receipts
    read_up_to: bool = False
    invalid_address: bool = False
    error_code: str | None = Field(default=None, max_length=64)
    occurred_at: datetime | None = utc_column()
    received_at: datetime = utc_column(nullable=False)
    apply_after: datetime = utc_column(nullable=False)
    next_check_at: datetime | None = utc_column()  #: the sweep's next look at a waiting event
    applied_at: datetime | None = utc_column()
    attempt_id: str | None = Field(default=None, max_length=36)
    outcome: str | None = Field(default=None, max_length=32)


class WebhookNonce(SQLModel, table=True):
    """A one-time value of a signed callback (Mailgun's ``token``), kept while it is fresh.

    The primary key makes a second callback with the same value fail to insert, in
    the transaction that applies the first one's receipts (:mod:`dispatcher.nonces`).
    """

    __tablename__ = "webhook_nonce"

    provider: str = Field(primary_key=True, max_length=32)
    nonce: str = Field(primary_key=True, max_length=128)
    fingerprint: str = Field(max_length=64)  #: SHA-256 of the body it arrived with
    expires_at: datetime = utc_column(index=True, nullable=False)
