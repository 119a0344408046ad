"""The rules every API request body shares: :class:`Strict` (unknown fields and NUL
characters refused) and the field types used by more than one body (:data:`Ttl`,
:data:`Id`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.json_schema import WithJsonSchema

from config.durations import format_duration, parse_duration

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
