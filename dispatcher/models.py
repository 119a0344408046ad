"""Database tables (SQLModel). The database is the source of truth.

Every notification, attempt, deadline and receipt is a row; Redis only carries
doorbells (attempt ids). This module holds the notification, its attempts, the event
history and the experiments' variant states, and registers every other table module
on import: customers (:mod:`dispatcher.customer_tables`), receipts and clicks
(:mod:`dispatcher.receipt_tables`), broadcasts (:mod:`dispatcher.broadcast_tables`) and
the stats rollup (:mod:`dispatcher.rollup_tables`). Column types are in
:mod:`dispatcher.columns`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Index, Integer, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from dispatcher import broadcast_tables as _broadcast_tables  # broadcasts' tables
from dispatcher import customer_tables as _customer_tables  # customers and their contacts
from dispatcher import receipt_tables as _receipt_tables  # receipts, nonces, clicks
from dispatcher import rollup_tables as _rollup_tables  # the stats rollup's tables

# Re-exported: the migrations use dispatcher.models.UTCDateTime.
from dispatcher.columns import UTCDateTime as UTCDateTime
from dispatcher.columns import json_column, new_id, utc_column

del _broadcast_tables, _customer_tables, _receipt_tables, _rollup_tables


def has_sms_step(context: Any) -> bool:
    """Column default of ``notification.sms_step``: do the resolved steps include SMS?

    Computed from the inserted ``steps`` (ORM or Core, one row or many), so every writer
    fills it without knowing about it; the stats' SMS-only baseline counts these.
    """
    steps = context.get_current_parameters().get("steps") or []
    return any(step.get("channel") == "sms" for step in steps)


def sms_segments_of(context: Any) -> int | None:
    """Column default of ``notification.sms_segments``: what its SMS is billed as.

    Read from the SMS part of the inserted ``content`` (see :mod:`dispatcher.content`),
    for ORM and Core inserts alike; the stats' SMS-only baseline multiplies by it.
    """
    content = context.get_current_parameters().get("content") or {}
    part = content.get("sms") if isinstance(content, dict) else None
    count = part.get("segments") if isinstance(part, dict) else None
    return int(count) if count is not None else None


#: Rows the sweep looks at, as partial-index predicates (the queries repeat them).
def timer_predicate(prefix: str = "") -> str:
    """Live timers: ``prefix`` qualifies the columns (``"attempt."``) in a join."""
    waiting = "('sent', 'delivered', 'unknown', 'failed')"
    return f"{prefix}escalate_at IS NOT NULL AND {prefix}state IN {waiting}"


TIMER_PREDICATE = timer_predicate()
OPEN_PREDICATE = "state IN ('accepted', 'in_progress')"
READ_PREDICATE = "read_at IS NOT NULL AND sent_at IS NOT NULL"
#: An attempt sent (or charged as of unknown outcome) at a step after the first.
LATER_SEND_PREDICATE = "step > 0 AND (sent_at IS NOT NULL OR cost > 0)"


class Notification(SQLModel, table=True):
    """One request to reach one customer through one cascade."""

    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key"),
        # TTLs of open notifications only: finished ones are never walked again.
        Index(
            "ix_notification_open_expiry",
            "expires_at",
            postgresql_where=text(OPEN_PREDICATE),
            sqlite_where=text(OPEN_PREDICATE),
        ),
        # /v1/stats reads a period from this index alone (index-only scan on PostgreSQL).
        Index(
            "ix_notification_created",
            "created_at",
            postgresql_include=[
                "id",
                "cascade",
                "state",
                "finished_channel",
                "sms_step",
                "sms_segments",
                "cost",
            ],
        ),
        # One notification per customer per broadcast (NULLs are distinct: single sends).
        Index("uq_notification_broadcast_customer", "broadcast_id", "customer_id", unique=True),
        # /v1/stats compares variants: only the notifications of an experiment.
        Index(
            "ix_notification_experiment",
            "experiment",
            "created_at",
            postgresql_where=text("experiment IS NOT NULL"),
            sqlite_where=text("experiment IS NOT NULL"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(index=True, max_length=128)
    cascade: str = Field(max_length=64)
    steps: list[dict[str, Any]] = json_column(list)  #: the resolved steps, frozen
    category: str = Field(max_length=32)
    content: dict[str, Any] = json_column(dict)  #: rendered per channel
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    api_key_id: str = Field(default="", max_length=16)
    state: str = Field(default="accepted", index=True, max_length=16)
    reason: str | None = Field(default=None, max_length=64)  #: why suppressed / how finished
    respect_quiet_hours: bool = True
    expires_at: datetime = utc_column(index=True, nullable=False)
    created_at: datetime = utc_column(nullable=False)
    finished_at: datetime | None = utc_column()
    cost: float = 0.0
    #: Channel of the attempt whose receipt (or send) finished it as sent/delivered/read;
    #: NULL otherwise, and on rows written before it was set (stats fall back to history).
    finished_channel: str | None = Field(default=None, max_length=16)
    #: The resolved steps include SMS: counted in the SMS-only baseline. Filled on insert.
    sms_step: bool | None = Field(
        default=None, sa_column=Column(Boolean, nullable=True, default=has_sms_step)
    )
    broadcast_id: str | None = Field(default=None, max_length=36)  #: set when fanned out
    #: Segments of its SMS content (the SMS-only baseline's unit); NULL without SMS.
    sms_segments: int | None = Field(
        default=None, sa_column=Column(Integer, nullable=True, default=sms_segments_of)
    )
    #: The cascade's A/B experiment and the variant this customer was assigned (else NULL).
    experiment: str | None = Field(default=None, max_length=64)
    variant: str | None = Field(default=None, max_length=64)


class Attempt(SQLModel, table=True):
    """One step of one notification on one channel: at most one paid send."""

    __table_args__ = (
        UniqueConstraint("notification_id", "step"),
        Index("ix_attempt_state_due", "state", "due_at"),
        Index("ix_attempt_state_escalate", "state", "escalate_at"),
        Index("ix_attempt_provider_message", "provider", "provider_message_id"),
        # The sweep's timers: only live ones (a finished notification's timers are cleared).
        Index(
            "ix_attempt_timer",
            "escalate_at",
            postgresql_where=text(TIMER_PREDICATE),
            sqlite_where=text(TIMER_PREDICATE),
        ),
        # /v1/stats: a period's attempt outcomes from this index alone (no join).
        Index(
            "ix_attempt_period",
            "notification_created_at",
            postgresql_include=[
                "cascade",
                "channel",
                "sent_at",
                "delivered_at",
                "read_at",
                "cost",
                "error_code",
            ],
        ),
        # /v1/stats: the medians read only the period's read attempts.
        Index(
            "ix_attempt_period_read",
            "notification_created_at",
            postgresql_include=["cascade", "channel", "sent_at", "read_at"],
            postgresql_where=text(READ_PREDICATE),
            sqlite_where=text(READ_PREDICATE),
        ),
        # /v1/stats: redundant sends are among the period's sends at a later step.
        Index(
            "ix_attempt_period_later_sends",
            "notification_created_at",
            postgresql_include=["cascade", "channel", "cost", "notification_id", "step"],
            postgresql_where=text(LATER_SEND_PREDICATE),
            sqlite_where=text(LATER_SEND_PREDICATE),
        ),
        # Receipt latency per provider over a window of delivery times.
        Index(
            "ix_attempt_provider_delivered",
            "provider",
            "delivered_at",
            postgresql_include=["sent_at"],
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    notification_id: str = Field(foreign_key="notification.id", index=True, max_length=36)
    step: int
    channel: str = Field(max_length=16)
    provider: str | None = Field(default=None, max_length=32)
    contact_id: int | None = Field(default=None, foreign_key="contactpoint.id")
    wait_for: str = Field(max_length=16)
    timeout_seconds: float
    state: str = Field(default="pending", max_length=16)
    idempotency_key: str = Field(default_factory=new_id, max_length=64)
    provider_message_id: str | None = Field(default=None, max_length=255)
    due_at: datetime = utc_column(nullable=False)
    published_at: datetime | None = utc_column()
    claimed_at: datetime | None = utc_column()
    started_at: datetime | None = (
        utc_column()
    )  #: first claim: a step's retries end with its timeout
    claim_token: str | None = Field(default=None, max_length=36)
    sent_at: datetime | None = utc_column()
    delivered_at: datetime | None = utc_column()
    read_at: datetime | None = utc_column()
    clicked_at: datetime | None = utc_column()  #: first click on one of its tracked links
    escalate_at: datetime | None = utc_column()
    finished_at: datetime | None = utc_column()
    tries: int = 0
    cost: float = 0.0
    error_code: str | None = Field(default=None, max_length=64)
    error_detail: str | None = Field(default=None, max_length=255)
    created_at: datetime = utc_column(nullable=False)
    locale: str | None = Field(default=None, max_length=35)  #: template variant sent
    encoding: str | None = Field(default=None, max_length=8)  #: SMS: gsm7 | ucs2
    segments: int | None = None  #: SMS: messages billed; cost = segments x price
    #: The notification's ``created_at`` and ``cascade``, copied when the attempt is
    #: written (they never change): ``/v1/stats`` filters attempts without a join.
    notification_created_at: datetime | None = utc_column()
    cascade: str | None = Field(default=None, max_length=64)


class Event(SQLModel, table=True):
    """Append-only history: the customer's timeline and the audit trail. No message text."""

    __table_args__ = (Index("ix_event_type_notification", "type", "notification_id"),)

    id: int | None = Field(default=None, primary_key=True)
    notification_id: str | None = Field(default=None, index=True, max_length=36)
    attempt_id: str | None = Field(default=None, max_length=36)
    customer_id: str | None = Field(default=None, index=True, max_length=128)
    type: str = Field(max_length=32)
    channel: str | None = Field(default=None, max_length=16)
    at: datetime = utc_column(index=True, nullable=False)
    source: str = Field(max_length=48)
    detail: dict[str, Any] = json_column(dict)


class ExperimentVariantState(SQLModel, table=True):
    """An operator's decision on one variant: stopped or promoted, without a redeploy.

    No row means active. Read by :class:`dispatcher.experiments.VariantStatuses`.
    """

    __tablename__ = "experiment_variant_state"

    experiment: str = Field(primary_key=True, max_length=64)
    variant: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)  #: active | stopped | promoted
    updated_at: datetime = utc_column(nullable=False)
