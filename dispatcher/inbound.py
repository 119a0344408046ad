"""Customers' own messages to us, and the service window they open.

WhatsApp delivers free-form text only within 24 hours of the customer's last message
to the business (:data:`providers.base.SERVICE_WINDOWS`); outside that window only an
approved template goes. The WhatsApp webhook reports inbound messages (sender and
time: the text is never read or stored), and the time is kept on the customer's
contact for that address (``last_inbound_at``), so the worker knows at send time
whether the window is open. A 131047 ("re-engagement") failure says our record was
wrong: the window is then marked closed, and the next send uses the template.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import Session, col

from dispatcher.customer_tables import ContactPoint
from providers.base import SERVICE_WINDOWS, Channel, InboundMessage


def _addresses(sender: str) -> list[str]:
    """How a sender may be stored: WhatsApp gives digits, contacts hold E.164 with ``+``."""
    digits = sender.removeprefix("+")
    return [f"+{digits}", digits]


def record_inbound(session: Session, channel: Channel, messages: Iterable[InboundMessage]) -> int:
    """Keep the latest inbound time on every contact of ``channel`` with the sender's address.

    Only ever moves forward (a redelivered or out-of-order webhook changes nothing).
    Returns the number of contact rows moved.
    """
    moved = 0
    for message in messages:
        result = session.execute(
            update(ContactPoint)
            .where(
                col(ContactPoint.channel) == channel.value,
                col(ContactPoint.address).in_(_addresses(message.sender)),
                or_(
                    col(ContactPoint.last_inbound_at).is_(None),
                    col(ContactPoint.last_inbound_at) < message.at,
                ),
            )
            .values(last_inbound_at=message.at),
            execution_options={"synchronize_session": False},
        )
        moved += int(result.rowcount)  # type: ignore[attr-defined]
    return moved


def window_open(contact: ContactPoint, channel: Channel, now: datetime) -> bool:
    """True when free-form text may go to ``contact`` now (always, on channels without one)."""
    window = SERVICE_WINDOWS.get(channel)
    if window is None:
        return True
    last = contact.last_inbound_at
    return last is not None and now < last + window


def close_window(session: Session, contact_id: int | None) -> None:
    """The provider said the window is closed (131047): forget the inbound time."""
    if contact_id is None:
        return
    session.execute(
        update(ContactPoint).where(col(ContactPoint.id) == contact_id).values(last_inbound_at=None),
        execution_options={"synchronize_session": False},
    )
