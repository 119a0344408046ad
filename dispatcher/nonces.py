"""One-time callback values: a signed token is accepted once while it is fresh.

Mailgun signs ``timestamp + token`` but not the event itself, so a captured
callback could carry any ``event-data`` for as long as its timestamp is accepted.
The receiver hands us the token (:class:`providers.base.Nonce`); :func:`claim`
inserts it in the same transaction that applies the callback's receipts, and the
``(provider, nonce)`` primary key lets exactly one of two racing callbacks in.

A token seen before is a **repeat** when it arrives with the same body (a
redelivery of what we already applied, answered 200 with nothing applied) and a
**replay** otherwise (refused with 403). Rows whose signature would be refused
as stale anyway are deleted as callbacks arrive.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from dispatcher.receipt_tables import WebhookNonce
from providers.base import Nonce

#: Longer values are stored as their digest (the column holds 128 characters).
MAX_NONCE = 128


class Claim(enum.StrEnum):
    """What storing a callback's nonce found."""

    NEW = "new"  #: first time: apply the callback
    REPEAT = "repeat"  #: same token, same body: already applied
    REPLAY = "replay"  #: same token, another body: a forgery


def claim(session: Session, provider: str, nonce: Nonce, now: datetime) -> Claim:
    """Store ``nonce`` for ``provider`` in the session's transaction, or say why not.

    Must be the first write of the transaction: on a duplicate the transaction is
    rolled back (PostgreSQL aborts it on the failed insert) before the stored
    fingerprint is read.
    """
    value = _stored_value(nonce.value)
    session.execute(delete(WebhookNonce).where(col(WebhookNonce.expires_at) < now))
    session.add(
        WebhookNonce(
            provider=provider,
            nonce=value,
            fingerprint=nonce.fingerprint,
            expires_at=nonce.expires_at,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        seen = session.exec(
            select(WebhookNonce).where(
                WebhookNonce.provider == provider, WebhookNonce.nonce == value
            )
        ).first()
        same = seen is not None and hmac.compare_digest(seen.fingerprint, nonce.fingerprint)
        return Claim.REPEAT if same else Claim.REPLAY
    return Claim.NEW


def _stored_value(value: str) -> str:
    if len(value) <= MAX_NONCE:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
