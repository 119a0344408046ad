"""Customer profiles: contacts across channels and preferences, one per person."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from dispatcher.addresses import AddressError, normalize
from dispatcher.customer_schemas import (
    ContactIn,
    ContactOut,
    CustomerIn,
    CustomerOut,
    PreferencesIn,
    PreferencesPatch,
    QuietHours,
)
from dispatcher.customer_tables import ContactPoint, Customer
from dispatcher.engine import Profile
from providers.base import Channel


class FieldError(ValueError):
    """Input that is well-formed JSON but wrong; ``field`` is a JSON path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _apply_preferences(customer: Customer, prefs: PreferencesIn | PreferencesPatch) -> None:
    fields = prefs.model_fields_set if isinstance(prefs, PreferencesPatch) else None
    if fields is None or "channel_order" in fields:
        customer.channel_order = [c.value for c in prefs.channel_order or []]
    if fields is None or "opt_out_channels" in fields:
        customer.opt_out_channels = [c.value for c in prefs.opt_out_channels or []]
    if fields is None or "opt_out_categories" in fields:
        customer.opt_out_categories = list(prefs.opt_out_categories or [])
    if fields is None or "quiet_hours" in fields:
        quiet = prefs.quiet_hours
        customer.quiet_start = quiet.start.strftime("%H:%M") if quiet else None
        customer.quiet_end = quiet.end.strftime("%H:%M") if quiet else None
    if fields is None or "max_per_day" in fields:
        customer.max_per_day = dict(prefs.max_per_day or {})


def _insert(session: Session, model: type[SQLModel]) -> Any:
    """``INSERT`` of the session's dialect, which has ``on_conflict_do_nothing``."""
    table = SQLModel.metadata.tables[str(model.__tablename__)]
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert_contacts(
    session: Session, customer_id: str, contacts: list[ContactIn], now: datetime, field: str
) -> None:
    """Add contacts (or re-activate them); addresses are validated and normalised.

    Each row is inserted with ``ON CONFLICT DO NOTHING`` first, so two requests adding
    the same contact at once both succeed; rows are touched in one order (no deadlock).
    """
    wanted: dict[tuple[str, str], bool] = {}
    for index, contact in enumerate(contacts):
        try:
            address = normalize(contact.channel, contact.address)
        except AddressError as exc:
            raise FieldError(f"{field}[{index}].address", str(exc)) from None
        key = (contact.channel.value, address)
        wanted[key] = wanted.get(key, False) or contact.verified
    for (channel, address), verified in sorted(wanted.items()):
        session.execute(
            _insert(session, ContactPoint)
            .values(
                customer_id=customer_id,
                channel=channel,
                address=address,
                verified=verified,
                status="active",
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["customer_id", "channel", "address"])
        )
        existing = session.exec(
            select(ContactPoint).where(
                ContactPoint.customer_id == customer_id,
                ContactPoint.channel == channel,
                ContactPoint.address == address,
            )
        ).one()
        existing.verified = verified or existing.verified
        existing.status = "active"
        existing.invalid_reason = None
        existing.updated_at = now
        session.add(existing)
    session.flush()


def put_customer(session: Session, customer_id: str, body: CustomerIn, now: datetime) -> Customer:
    """Create or replace a customer's profile; contacts not listed are removed."""
    customer = ensure_customer(session, customer_id, now)
    customer.locale = body.locale
    customer.timezone = body.timezone
    customer.updated_at = now
    _apply_preferences(customer, body.preferences)
    session.add(customer)
    session.flush()
    keep = {(c.channel.value, normalize_or_raw(c)) for c in body.contacts}
    for contact in contacts_of(session, customer_id):
        if (contact.channel, contact.address) not in keep:
            contact.status = "removed"
            contact.updated_at = now
            session.add(contact)
    upsert_contacts(session, customer_id, body.contacts, now, "contacts")
    return customer


def normalize_or_raw(contact: ContactIn) -> str:
    try:
        return normalize(contact.channel, contact.address)
    except AddressError:
        return contact.address


def ensure_customer(session: Session, customer_id: str, now: datetime) -> Customer:
    """The customer, created if new (``ON CONFLICT DO NOTHING``: a concurrent create is fine)."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        fresh = Customer(id=customer_id, created_at=now, updated_at=now)
        session.execute(
            _insert(session, Customer)
            .values(**fresh.model_dump())
            .on_conflict_do_nothing(index_elements=["id"])
        )
        customer = session.get_one(Customer, customer_id)
    return customer


def patch_preferences(
    session: Session, customer: Customer, patch: PreferencesPatch, now: datetime
) -> None:
    _apply_preferences(customer, patch)
    customer.updated_at = now
    session.add(customer)


def contacts_of(session: Session, customer_id: str) -> list[ContactPoint]:
    return list(
        session.exec(
            select(ContactPoint)
            .where(ContactPoint.customer_id == customer_id)
            .order_by(col(ContactPoint.id))
        )
    )


def preferences_of(customer: Customer) -> PreferencesIn:
    """The stored preferences, read leniently.

    A value that today's validation refuses but an older version stored (a repeated or
    unknown channel, a negative cap) is dropped, so it cannot fail every request for
    this customer.
    """
    quiet = None
    if customer.quiet_start and customer.quiet_end:
        quiet = QuietHours(
            start=time.fromisoformat(customer.quiet_start),
            end=time.fromisoformat(customer.quiet_end),
        )
    categories = [c for c in customer.opt_out_categories if isinstance(c, str) and 0 < len(c) <= 32]
    return PreferencesIn(
        channel_order=_channels(customer.channel_order),
        opt_out_channels=_channels(customer.opt_out_channels),
        opt_out_categories=list(dict.fromkeys(categories))[:32],
        quiet_hours=quiet,
        max_per_day={
            k: v
            for k, v in customer.max_per_day.items()
            if isinstance(v, int) and 0 <= v <= 1_000_000 and 0 < len(k) <= 32
        },
    )


def _channels(stored: list[str]) -> list[Channel]:
    known = {c.value for c in Channel}
    return list(dict.fromkeys(Channel(c) for c in stored if c in known))


def customer_out(session: Session, customer: Customer) -> CustomerOut:
    contacts = [
        ContactOut(
            id=c.id or 0,
            channel=c.channel,
            address=c.address,
            verified=c.verified,
            status=c.status,
            invalid_reason=c.invalid_reason,
        )
        for c in contacts_of(session, customer.id)
        if c.status != "removed"
    ]
    return CustomerOut(
        id=customer.id,
        locale=customer.locale,
        timezone=customer.timezone,
        contacts=contacts,
        preferences=preferences_of(customer),
    )


def profile_of(session: Session, customer: Customer) -> Profile:
    """The engine's view: the newest active contact per channel, and preferences."""
    return profile_from(customer, contacts_of(session, customer.id))


def profile_from(
    customer: Customer, contacts_seen: list[ContactPoint], prefs: PreferencesIn | None = None
) -> Profile:
    """:func:`profile_of` for contacts (in id order) and preferences already loaded."""
    contacts: dict[Channel, int] = {}
    newest: dict[Channel, datetime] = {}
    for contact in contacts_seen:
        channel = Channel(contact.channel)
        if contact.status != "active" or contact.id is None:
            continue
        if channel not in newest or contact.updated_at >= newest[channel]:
            contacts[channel] = contact.id
            newest[channel] = contact.updated_at
    prefs = prefs or preferences_of(customer)
    quiet = (prefs.quiet_hours.start, prefs.quiet_hours.end) if prefs.quiet_hours else None
    return Profile(
        contacts=contacts,
        channel_order=tuple(prefs.channel_order),
        opt_out_channels=frozenset(prefs.opt_out_channels),
        opt_out_categories=frozenset(prefs.opt_out_categories),
        timezone=customer.timezone,
        quiet_hours=quiet,
    )


def mark_contact_invalid(
    session: Session, contact_id: int | None, reason: str, now: datetime
) -> None:
    """A provider said the address is gone: stop using it."""
    if contact_id is None:
        return
    contact = session.get(ContactPoint, contact_id)
    if contact is not None and contact.status == "active":
        contact.status = "invalid"
        contact.invalid_reason = reason[:64]
        contact.updated_at = now
        session.add(contact)
