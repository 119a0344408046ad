"""API bodies of broadcasts: the audience, the request and the progress answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dispatcher.schemas import ContentIn
from dispatcher.strict_bodies import Strict, Ttl

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
