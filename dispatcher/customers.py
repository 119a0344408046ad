"""Customer profiles: contacts across channels and preferences, one per person."""

from __future__ import annotations

from datetime import datetime, time

from sqlmodel import Session, col, select

from dispatcher.addresses import AddressError, normalize
from dispatcher.engine import Profile
from dispatcher.models import ContactPoint, Customer
from dispatcher.schemas import (
    ContactIn,
    ContactOut,
    CustomerIn,
    CustomerOut,
    PreferencesIn,
    PreferencesPatch,
    QuietHours,
)
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


def upsert_contacts(
    session: Session, customer_id: str, contacts: list[ContactIn], now: datetime, field: str
) -> None:
    """Add contacts (or re-activate them); addresses are validated and normalised."""
    for index, contact in enumerate(contacts):
        try:
            address = normalize(contact.channel, contact.address)
        except AddressError as exc:
            raise FieldError(f"{field}[{index}].address", str(exc)) from None
        existing = session.exec(
            select(ContactPoint).where(
                ContactPoint.customer_id == customer_id,
                ContactPoint.channel == contact.channel.value,
                ContactPoint.address == address,
            )
        ).first()
        if existing is None:
            existing = ContactPoint(
                customer_id=customer_id,
                channel=contact.channel.value,
                address=address,
                created_at=now,
                updated_at=now,
            )
        existing.verified = contact.verified or existing.verified
        existing.status = "active"
        existing.invalid_reason = None
        existing.updated_at = now
        session.add(existing)
    session.flush()


def put_customer(session: Session, customer_id: str, body: CustomerIn, now: datetime) -> Customer:
    """Create or replace a customer's profile; contacts not listed are removed."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        customer = Customer(id=customer_id, created_at=now, updated_at=now)
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
    customer = session.get(Customer, customer_id)
    if customer is None:
        customer = Customer(id=customer_id, created_at=now, updated_at=now)
        session.add(customer)
        session.flush()
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
    quiet = None
    if customer.quiet_start and customer.quiet_end:
        quiet = QuietHours(
            start=time.fromisoformat(customer.quiet_start),
            end=time.fromisoformat(customer.quiet_end),
        )
    return PreferencesIn(
        channel_order=[Channel(c) for c in customer.channel_order],
        opt_out_channels=[Channel(c) for c in customer.opt_out_channels],
        opt_out_categories=list(customer.opt_out_categories),
        quiet_hours=quiet,
        max_per_day=dict(customer.max_per_day),
    )


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


def profile_from(customer: Customer, contacts_seen: list[ContactPoint]) -> Profile:
    """:func:`profile_of` for contacts already loaded (in id order): no database."""
    contacts: dict[Channel, int] = {}
    newest: dict[Channel, datetime] = {}
    for contact in contacts_seen:
        channel = Channel(contact.channel)
        if contact.status != "active" or contact.id is None:
            continue
        if channel not in newest or contact.updated_at >= newest[channel]:
            contacts[channel] = contact.id
            newest[channel] = contact.updated_at
    prefs = preferences_of(customer)
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
