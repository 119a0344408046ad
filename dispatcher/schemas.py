"""API request and response bodies of notifications, receipts and cascades (strict
pydantic models).

The shared rules are in :mod:`dispatcher.strict_bodies`; customers' bodies in
:mod:`dispatcher.customer_schemas`, broadcasts' in :mod:`dispatcher.broadcast_schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dispatcher.customer_schemas import ContactIn
from dispatcher.strict_bodies import Id, Strict, Ttl
from providers.base import Channel


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
    #: ``clicked``: the customer tapped the message (applied as a click; implies read).
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
