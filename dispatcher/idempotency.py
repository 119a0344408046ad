"""Idempotency keys: the same key with the same body replays, with another body conflicts.

Shared by notifications and broadcasts: a row remembers its API key, the client's
``Idempotency-Key`` and a digest of the request body.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlmodel import Session, select

Keyed = TypeVar("Keyed")


def request_hash(body: BaseModel) -> str:
    """A digest of the request body, to tell a replay from a different request."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def find_by_key(session: Session, table: type[Keyed], api_key_id: str, key: str) -> Keyed | None:
    """The row of ``table`` stored under this API key's ``key``, if any."""
    columns: Any = table
    return session.exec(
        select(table).where(columns.api_key_id == api_key_id, columns.idempotency_key == key)
    ).first()
