"""API request and response bodies (strict pydantic models)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.durations import Duration
from providers.base import Channel

Id = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactIn(Strict):
    channel: Channel
    address: str = Field(min_length=1, max_length=2048)
    verified: bool = False


class QuietHours(Strict):
    start: time
    end: time


class PreferencesIn(Strict):
    channel_order: list[Channel] = Field(default_factory=list, max_length=16)
    opt_out_channels: list[Channel] = Field(default_factory=list, max_length=16)
    opt_out_categories: list[str] = Field(default_factory=list, max_length=32)
    quiet_hours: QuietHours | None = None
    max_per_day: dict[str, int] = Field(default_factory=dict)

    @field_validator("channel_order")
    @classmethod
    def _unique(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value

    @field_validator("max_per_day")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        if any(limit < 0 for limit in value.values()):
            raise ValueError("limits must be zero or more")
        return value


class PreferencesPatch(Strict):
    channel_order: list[Channel] | None = None
    opt_out_channels: list[Channel] | None = None
    opt_out_categories: list[str] | None = None
    quiet_hours: QuietHours | None = None
    max_per_day: dict[str, int] | None = None


class CustomerIn(Strict):
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
    customer_id: str = Id
    cascade: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=32)
    content: ContentIn | None = None
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)
    ttl: Duration | None = None
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
    due_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
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
    id: str
    state: str
    reason: str | None
    steps: list[StepOut]


class NotificationOut(NotificationAccepted):
    customer_id: str
    cascade: str
    category: str
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    cost: float
    attempts: list[AttemptOut]
    events: list[EventOut]


class ReceiptIn(Strict):
    """An app-side confirmation for a push (or any attempt)."""

    attempt_id: str | None = Field(default=None, max_length=36)
    notification_id: str | None = Field(default=None, max_length=36)
    status: Literal["delivered", "read", "clicked"]
    token: str | None = Field(default=None, max_length=128)
    event_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _target(self) -> ReceiptIn:
        if not self.attempt_id and not self.notification_id:
            raise ValueError("give attempt_id or notification_id")
        return self


class ReceiptOut(BaseModel):
    outcome: str
    notification_state: str | None


class CascadeOut(BaseModel):
    name: str
    description: str
    category: str
    ttl: float
    quiet_hours: str
    steps: list[dict[str, Any]]


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
    cascade: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=32)
    content: ContentIn | None = None
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)  #: shared by every member
    ttl: Duration | None = None
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
