"""API request and response bodies (strict pydantic models)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from config.durations import format_duration, parse_duration
from providers.base import Channel

#: A notification's TTL: at least a second (0 would mean "expired at once"), at most 30 days.
TTL_MIN = timedelta(seconds=1)
TTL_MAX = timedelta(days=30)


def _ttl_in_range(value: timedelta) -> timedelta:
    if not TTL_MIN <= value <= TTL_MAX:
        raise ValueError(
            f"must be between {format_duration(TTL_MIN)} and {format_duration(TTL_MAX)}"
        )
    return value


Ttl = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_ttl_in_range),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "duration", "examples": ["15m", "6h", "PT10M"]},
                {"type": "number", "minimum": 1, "maximum": TTL_MAX.total_seconds()},
            ],
            "description": "How long to keep trying: 1 s to 30 days, as seconds, "
            "90s / 15m / 6h / 1d, or ISO 8601 (PT10M, P1DT2H). Default: the cascade's ttl.",
        }
    ),
]

Id = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")


def storable(value: Any) -> Any:
    """Refuse text the databases cannot store: NUL characters (PostgreSQL refuses them).

    Walks nested lists and dicts (keys too) without recursion, so deep input cannot
    overflow the stack.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("must not contain NUL characters")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return value


class Strict(BaseModel):
    """Unknown fields are errors; no text anywhere may hold a NUL character."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


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


class ChannelContent(Strict):
    title: str | None = Field(default=None, max_length=256)
    text: str | None = Field(default=None, max_length=8192)
    html: str | None = Field(default=None, max_length=65536)


class ContentIn(ChannelContent):
    """Common content, optionally overridden per channel."""

    channels: dict[Channel, ChannelContent] = Field(default_factory=dict)


class NotificationIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "alice",
                    "cascade": "demo",
                    "content": {"title": "Order 42", "text": "Your order has shipped"},
                },
                {
                    "customer_id": "alice",
                    "cascade": "order_status",
                    "template": "default",
                    "data": {"order_id": "42", "status": "shipped"},
                    "ttl": "1h",
                },
            ]
        }
    )

    customer_id: str = Id
    cascade: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=32)
    content: ContentIn | None = None
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)
    ttl: Ttl | None = None
    contacts: list[ContactIn] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _has_content(self) -> NotificationIn:
        if self.content is None and self.template is None:
            raise ValueError("give either 'content' or 'template' (with 'data')")
        return self


class StepOut(BaseModel):
    step: int
    channel: str
    wait_for: str
    timeout: float


class AttemptOut(BaseModel):
    id: str
    step: int
    channel: str
    provider: str | None
    provider_message_id: str | None
    state: str
    tries: int
    cost: float
    error_code: str | None
    locale: str | None = None  #: the template's locale variant, when one was used
    encoding: str | None = None  #: SMS: gsm7 or ucs2
    segments: int | None = None  #: SMS: messages billed (cost = segments x price)
    due_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    clicked_at: datetime | None = None  #: first counted click on one of its tracked links
    escalate_at: datetime | None
    finished_at: datetime | None


class EventOut(BaseModel):
    type: str
    at: datetime
    source: str
    notification_id: str | None
    attempt_id: str | None
    channel: str | None
    detail: dict[str, Any]


class NotificationAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2c8a1e-7d4b-4c3a-9e2f-1b6d5a4c3e2f",
                    "state": "accepted",
                    "reason": None,
                    "steps": [
                        {"step": 0, "channel": "push", "wait_for": "read", "timeout": 10.0},
                        {"step": 1, "channel": "whatsapp", "wait_for": "read", "timeout": 10.0},
                        {"step": 2, "channel": "sms", "wait_for": "delivered", "timeout": 30.0},
                    ],
                }
            ]
        }
    )

    id: str
    state: str
    reason: str | None
    steps: list[StepOut]


class NotificationOut(NotificationAccepted):
    model_config = ConfigDict(json_schema_extra=None)  # the accepted answer's example is not one

    customer_id: str
    cascade: str
    category: str
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    cost: float
    attempts: list[AttemptOut]
    events: list[EventOut]
    experiment: str | None = None  #: the cascade's A/B experiment, if it runs one
    variant: str | None = None  #: the variant this customer was assigned


class ReceiptIn(Strict):
    """An app-side confirmation for a push (or any attempt)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"attempt_id": "9d42c1e0-5b7a-4f3e-9a51-0c8e2f6b7d13", "status": "read"}]
        }
    )

    attempt_id: str | None = Field(default=None, max_length=36)
    notification_id: str | None = Field(default=None, max_length=36)
    status: Literal["delivered", "read", "clicked"]
    token: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")
    event_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _target(self) -> ReceiptIn:
        if not self.attempt_id and not self.notification_id:
            raise ValueError("give attempt_id or notification_id")
        return self


class ReceiptOut(BaseModel):
    outcome: str
    notification_state: str | None


class CascadeMemberOut(BaseModel):
    channel: str
    wait_for: str  #: the member's own, or the step's


class CascadeStepOut(BaseModel):
    channel: str  #: a channel, or ``messenger`` for a group
    among: list[CascadeMemberOut]  #: a group's members; empty for a single channel
    wait_for: str
    timeout: float  #: seconds, as every duration the API returns


class CascadeOut(BaseModel):
    name: str
    description: str
    category: str
    ttl: float  #: seconds
    quiet_hours: str
    paid_last: bool
    order: str  #: static (the file's order) | adaptive (each customer's history orders it)
    steps: list[CascadeStepOut]
    experiment: str | None = None  #: its A/B experiment (see ``/v1/experiments/{name}``)


CustomerIdIn = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]

#: The largest id list one broadcast takes.
MAX_AUDIENCE = 1_000_000


class AudienceIn(Strict):
    """Exactly one of: a list of customer ids, ``filter: "all"``, or a ``locale``."""

    customer_ids: list[CustomerIdIn] | None = Field(
        default=None, min_length=1, max_length=MAX_AUDIENCE
    )
    filter: Literal["all"] | None = None
    locale: str | None = Field(default=None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _one_kind(self) -> AudienceIn:
        given = [self.customer_ids is not None, self.filter is not None, self.locale is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'customer_ids', 'filter' or 'locale'")
        return self


class BroadcastIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cascade": "marketing",
                    "category": "marketing",
                    "content": {"title": "Spring sale", "text": "20% off until Sunday"},
                    "audience": {"customer_ids": ["alice", "bob"]},
                }
            ]
        }
    )

    cascade: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=32)
    content: ContentIn | None = None
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)  #: shared by every member
    ttl: Ttl | None = None
    audience: AudienceIn

    @model_validator(mode="after")
    def _has_content(self) -> BroadcastIn:
        if self.content is None and self.template is None:
            raise ValueError("give either 'content' or 'template' (with 'data')")
        return self


class BroadcastAccepted(BaseModel):
    id: str
    state: str
    audience: int


class BroadcastOut(BroadcastAccepted):
    cascade: str
    category: str
    processed: int  #: members planned so far
    created: int  #: notifications created
    suppressed: dict[str, int]  #: by reason (opted_out, no_contact, frequency_cap, ...)
    opted_out: int
    scheduled: int  #: pending for later: quiet hours or a retry
    sent: int  #: reached at least one channel
    confirmed: int  #: finished with the condition of a step met
    delivered: int
    read: int
    failed: int  #: every step tried, none confirmed
    expired: int
    cancelled: int
    in_progress: int  #: still open
    created_at: datetime
    finished_at: datetime | None
