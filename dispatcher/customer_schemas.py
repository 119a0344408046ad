"""API bodies of customers: contacts, preferences (quiet hours, opt-outs, daily limits)
and the customer profile, in and out."""

from __future__ import annotations

from datetime import time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import WithJsonSchema

from dispatcher.strict_bodies import Strict
from providers.base import Channel


class ContactIn(Strict):
    channel: Channel
    address: str = Field(min_length=1, max_length=2048)
    verified: bool = False


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("quiet hours are the customer's local time: give no UTC offset")
    return value


#: A local wall-clock time, ``22:00`` or ``22:00:00``, without a UTC offset.
LocalTime = Annotated[
    time,
    AfterValidator(_local),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$",
            "examples": ["22:00", "07:30:00"],
        }
    ),
]


class QuietHours(Strict):
    start: LocalTime
    end: LocalTime


def _no_repeats(value: list[Channel]) -> list[Channel]:
    if len(set(value)) != len(value):
        raise ValueError("channels must not repeat")
    return value


# The rules for each preference, written once: PUT (PreferencesIn) and PATCH
# (PreferencesPatch) validate with the same types, so PATCH can never store what PUT refuses.
ChannelOrder = Annotated[list[Channel], Field(max_length=16), AfterValidator(_no_repeats)]
Channels = Annotated[list[Channel], Field(max_length=16)]
Category = Annotated[str, Field(min_length=1, max_length=32)]
Categories = Annotated[list[Category], Field(max_length=32)]
DailyLimits = Annotated[
    dict[Category, Annotated[int, Field(ge=0, le=1_000_000)]], Field(max_length=32)
]


class PreferencesIn(Strict):
    channel_order: ChannelOrder = Field(default_factory=list)
    opt_out_channels: Channels = Field(default_factory=list)
    opt_out_categories: Categories = Field(default_factory=list)
    quiet_hours: QuietHours | None = None
    max_per_day: DailyLimits = Field(default_factory=dict)


class PreferencesPatch(Strict):
    """Only the preferences given change; each is validated as in :class:`PreferencesIn`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"opt_out_channels": ["sms"], "max_per_day": {"marketing": 2}}]
        }
    )

    channel_order: ChannelOrder | None = None
    opt_out_channels: Channels | None = None
    opt_out_categories: Categories | None = None
    quiet_hours: QuietHours | None = None
    max_per_day: DailyLimits | None = None


class CustomerIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Europe/Berlin",
                    "locale": "de",
                    "contacts": [
                        {"channel": "push", "address": "fcm-demo-token-0123456789abcdefghijklmnop"},
                        {"channel": "whatsapp", "address": "+14155552671"},
                        {"channel": "sms", "address": "+14155552671"},
                    ],
                    "preferences": {
                        "channel_order": ["whatsapp", "push"],
                        "opt_out_categories": ["marketing"],
                        "quiet_hours": {"start": "22:00", "end": "07:00"},
                    },
                }
            ]
        }
    )

    locale: str | None = Field(default=None, max_length=16)
    timezone: str = Field(default="UTC", max_length=64)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=32)
    preferences: PreferencesIn = Field(default_factory=PreferencesIn)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class ContactOut(BaseModel):
    id: int
    channel: str
    address: str
    verified: bool
    status: str
    invalid_reason: str | None


class CustomerOut(BaseModel):
    id: str
    locale: str | None
    timezone: str
    contacts: list[ContactOut]
    preferences: PreferencesIn
