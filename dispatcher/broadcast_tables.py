"""Broadcasts' tables: the broadcast, its audience and the batches that committed.

Registered on ``SQLModel.metadata`` when :mod:`dispatcher.models` is imported.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from dispatcher.columns import json_column, new_id, utc_column


class Broadcast(SQLModel, table=True):
    """One cascade to many customers, fanned out in batches by tasks on the engine queue.

    The audience is cut into batches when it is stored: ``bounds`` holds the first
    member (in the database's order of customer ids) of each batch. Batches run in
    parallel; each claims its number in ``broadcast_batch`` (:class:`BroadcastBatch`)
    before it writes, so a batch done twice creates nothing twice.
    """

    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    cascade: str = Field(max_length=64)
    category: str = Field(max_length=32)
    content: dict[str, Any] = json_column(dict)  #: rendered per channel, shared by all
    ttl_seconds: float
    audience_kind: str = Field(max_length=16)  #: ids | all | locale
    audience_filter: str | None = Field(default=None, max_length=64)  #: the locale
    audience: int = 0  #: members (distinct customer ids)
    state: str = Field(default="fanning_out", index=True, max_length=16)
    batches: int = 0  #: batches fanned out so far
    cursor: str | None = Field(default=None, max_length=128)  #: unused since batches are bounded
    bounds: list[str] = json_column(list)  #: first customer id of each batch
    processed: int = 0  #: members planned so far
    created: int = 0  #: notifications created so far
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    api_key_id: str = Field(default="", max_length=16)
    created_at: datetime = utc_column(nullable=False)
    progress_at: datetime = utc_column(nullable=False)  #: last batch (stalled fan-out check)
    finished_at: datetime | None = utc_column()


class BroadcastMember(SQLModel, table=True):
    """One customer of a broadcast's audience, stored when the broadcast is accepted."""

    __tablename__ = "broadcast_member"

    broadcast_id: str = Field(primary_key=True, max_length=36)
    customer_id: str = Field(primary_key=True, max_length=128)


class BroadcastBatch(SQLModel, table=True):
    """A fan-out batch that committed: its primary key is the batch's compare-and-set.

    A run inserts the row first, in the transaction that writes the batch's
    notifications; a second run of the same batch (redelivery, a sweep restart,
    two workers at once) waits for the first to finish and then inserts nothing.
    """

    __tablename__ = "broadcast_batch"

    broadcast_id: str = Field(primary_key=True, max_length=36)
    batch: int = Field(primary_key=True)
    members: int = 0
    created_at: datetime = utc_column(nullable=False)
