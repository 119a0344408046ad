"""The stats rollup's tables: per hour sums of what ``/v1/stats`` counts.

Each kind of figure has two tables. ``*_delta`` rows are appended by database triggers
in the same transaction as every change to ``notification`` and ``attempt`` (see
:mod:`dispatcher.rollup_triggers`): append only, so concurrent writers never wait on a
shared row. ``*_hour`` rows (one per key) are what :func:`dispatcher.rollup_ledger.compact`
folds the deltas into. A figure over whole hours is the sum of both tables' rows.

The hour is the UTC hour the notification was created in (attempts carry it as
``notification_created_at``). Keys hold no NULLs, so they can be primary keys on both
databases: ``''`` stands for no channel or no cascade and ``sms_step`` is -1 (unknown),
0 or 1.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Integer
from sqlmodel import Field, SQLModel

from dispatcher.columns import UTCDateTime

#: A 64-bit serial on PostgreSQL; SQLite counts only an INTEGER primary key as its rowid.
_SERIAL = BigInteger().with_variant(Integer, "sqlite")


def _hour(primary_key: bool) -> datetime:
    column: Column[datetime] = Column(UTCDateTime(), primary_key=primary_key, nullable=False)
    return Field(sa_column=column)  # type: ignore[no-any-return]


class _NotificationSums(SQLModel):
    notifications: int = 0
    cost: float = 0.0
    segments: int = 0  #: SMS segments, a notification without a count counting one


class StatsNotificationHour(_NotificationSums, table=True):
    """Notifications created in one hour, by cascade, state, finished channel, sms step."""

    __tablename__ = "stats_notification_hour"
    hour: datetime = _hour(primary_key=True)
    cascade: str = Field(primary_key=True, max_length=64)
    state: str = Field(primary_key=True, max_length=32)
    finished_channel: str = Field(primary_key=True, max_length=32)
    sms_step: int = Field(primary_key=True)


class StatsNotificationDelta(_NotificationSums, table=True):
    __tablename__ = "stats_notification_delta"
    id: int | None = Field(default=None, sa_column=Column(_SERIAL, primary_key=True))
    hour: datetime = _hour(primary_key=False)
    cascade: str = Field(max_length=64)
    state: str = Field(max_length=32)
    finished_channel: str = Field(max_length=32)
    sms_step: int


class _AttemptSums(SQLModel):
    attempts: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0  #: error recorded and never sent
    cost: float = 0.0


class StatsAttemptHour(_AttemptSums, table=True):
    """Attempts of the notifications created in one hour, by cascade and channel."""

    __tablename__ = "stats_attempt_hour"
    hour: datetime = _hour(primary_key=True)
    cascade: str = Field(primary_key=True, max_length=64)
    channel: str = Field(primary_key=True, max_length=32)


class StatsAttemptDelta(_AttemptSums, table=True):
    __tablename__ = "stats_attempt_delta"
    id: int | None = Field(default=None, sa_column=Column(_SERIAL, primary_key=True))
    hour: datetime = _hour(primary_key=False)
    cascade: str = Field(max_length=64)
    channel: str = Field(max_length=32)


class StatsReadHour(SQLModel, table=True):
    """Reads (sent and read) by the bin of their seconds to read: the medians' histogram."""

    __tablename__ = "stats_read_hour"
    hour: datetime = _hour(primary_key=True)
    cascade: str = Field(primary_key=True, max_length=64)
    channel: str = Field(primary_key=True, max_length=32)
    bin: int = Field(primary_key=True)
    reads: int = 0


class StatsReadDelta(SQLModel, table=True):
    __tablename__ = "stats_read_delta"
    id: int | None = Field(default=None, sa_column=Column(_SERIAL, primary_key=True))
    hour: datetime = _hour(primary_key=False)
    cascade: str = Field(max_length=64)
    channel: str = Field(max_length=32)
    bin: int
    reads: int = 0
