"""Customers' tables: the customer with their preferences, their addresses on each
channel, and how they answered on each channel (engagement).

Registered on ``SQLModel.metadata`` when :mod:`dispatcher.models` is imported.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from dispatcher.columns import json_column, utc_column


class Customer(SQLModel, table=True):
    """One person, whatever channel they are reached on, with their preferences."""

    id: str = Field(primary_key=True, max_length=128)
    locale: str | None = Field(default=None, max_length=16)
    timezone: str = Field(default="UTC", max_length=64)
    channel_order: list[str] = json_column(list)
    opt_out_channels: list[str] = json_column(list)
    opt_out_categories: list[str] = json_column(list)
    quiet_start: str | None = Field(default=None, max_length=5)  #: "22:00" local time
    quiet_end: str | None = Field(default=None, max_length=5)
    max_per_day: dict[str, int] = json_column(dict)
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime = utc_column(nullable=False)


class ContactPoint(SQLModel, table=True):
    """An address on one channel. Several per channel are allowed (two devices)."""

    __table_args__ = (UniqueConstraint("customer_id", "channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=128)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=2048)
    verified: bool = False
    status: str = Field(default="active", max_length=16)  #: active | invalid
    invalid_reason: str | None = Field(default=None, max_length=64)
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime = utc_column(nullable=False)
    #: When this address last wrote to us (WhatsApp: opens the 24-hour service window).
    #: The time only: nothing of the message is stored.
    last_inbound_at: datetime | None = utc_column()


class Engagement(SQLModel, table=True):
    """How one customer answered on one channel: exponentially decayed attempt counts.

    ``tried`` counts attempts that ended (confirmed within their step's timeout, or
    escalated), ``confirmed`` the confirmed ones, both as of ``as_of`` (Unix seconds):
    :mod:`dispatcher.engagement` decays them when it adds to them or reads them.
    """

    customer_id: str = Field(foreign_key="customer.id", primary_key=True, max_length=128)
    channel: str = Field(primary_key=True, max_length=16)
    confirmed: float = 0.0
    tried: float = 0.0
    as_of: float = 0.0
