"""One fan-out batch's members: loaded in bulk, planned once per shape.

Customers, their active contacts and today's counts come in three Core queries as
plain tuples (no ORM objects). Stored preferences are read as text and parsed once
per distinct value (:func:`~dispatcher.customers.preferences_of`, as a single send
reads them). Members who share a *shape* (the same preferences and the same channels
with a contact) get the same plan: :func:`~dispatcher.engine.plan_steps` runs once
per shape, and each member's plan is that plan with its own contact ids. Quiet hours
are resolved once per (quiet hours, time zone). The rules are those of
:func:`~dispatcher.audience.plan_member`; ``tests/dispatcher/test_fanout_parallel.py``
checks that members of one shape keep their own contacts, opt-outs, caps and quiet hours.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, String, cast, func
from sqlmodel import Session, col, select

from config.cascades import Cascade
from dispatcher.affinity import Affinity
from dispatcher.audience import MemberPlan, Rows, Shared, member_rows
from dispatcher.broadcast_tables import Broadcast
from dispatcher.customer_schemas import PreferencesIn
from dispatcher.customer_tables import ContactPoint, Customer
from dispatcher.customers import preferences_of
from dispatcher.engagement import affinities_of
from dispatcher.engine import Plan, PlannedStep, Profile, plan_steps, release_time
from dispatcher.experiments import Assignment
from dispatcher.models import Notification
from dispatcher.runtime import Runtime
from dispatcher.states import NotificationState
from providers.base import Channel

#: The customer ids of a batch: a list, or a query selecting them.
Chosen = list[str] | Select[Any]
#: A customer's stored preferences as the database holds them (JSON as text).
Stored = tuple[str, str, str, str | None, str | None, str]


@dataclass(frozen=True, slots=True)
class Person:
    """What a batch needs of one customer."""

    locale: str | None
    timezone: str
    stored: Stored


@dataclass
class Shapes:
    """Caches of one batch: parsed preferences, plans per shape, release times."""

    cascade: Cascade
    category: str
    now: datetime
    preferences: dict[Stored, PreferencesIn] = field(default_factory=dict)
    plans: dict[tuple[str | None, Stored, frozenset[Channel]], Plan] = field(default_factory=dict)
    releases: dict[tuple[time, time, str] | None, datetime] = field(default_factory=dict)

    def preferences_of(self, stored: Stored) -> PreferencesIn:
        found = self.preferences.get(stored)
        if found is None:
            order, channels, categories, start, end, caps = stored
            customer = Customer(
                id="shape",
                channel_order=json.loads(order),
                opt_out_channels=json.loads(channels),
                opt_out_categories=json.loads(categories),
                quiet_start=start,
                quiet_end=end,
                max_per_day=json.loads(caps),
            )
            found = self.preferences[stored] = preferences_of(customer)
        return found

    def plan_of(
        self,
        assigned: Assignment,
        stored: Stored,
        contacts: dict[Channel, int],
        affinity: Affinity | None = None,
    ) -> Plan:
        """The shape's plan with this member's contact ids. An adaptive cascade's plan
        depends on the member's own history, so it is planned for the member alone."""
        cascade = assigned.cascade
        if affinity is not None and cascade.order == "adaptive":
            return plan_steps(cascade, self.profile(stored, contacts), self.category, affinity)
        key = (assigned.variant, stored, frozenset(contacts))
        shape = self.plans.get(key)
        if shape is None:
            profile = self.profile(stored, dict.fromkeys(contacts, 0))
            shape = self.plans[key] = plan_steps(cascade, profile, self.category)
        if not shape.steps:
            return shape
        steps = tuple(
            PlannedStep(s.channel, contacts[s.channel], s.wait_for, s.timeout) for s in shape.steps
        )
        return replace(shape, steps=steps)

    def profile(self, stored: Stored, contacts: dict[Channel, int]) -> Profile:
        prefs = self.preferences_of(stored)
        return Profile(
            contacts=contacts,
            channel_order=tuple(prefs.channel_order),
            opt_out_channels=frozenset(prefs.opt_out_channels),
            opt_out_categories=frozenset(prefs.opt_out_categories),
        )

    def due(self, stored: Stored, timezone: str) -> datetime:
        start, end = stored[3], stored[4]
        key = (
            (time.fromisoformat(start), time.fromisoformat(end), timezone)
            if start and end
            else None
        )
        found = self.releases.get(key)
        if found is None:
            quiet = (key[0], key[1]) if key else None
            found = self.releases[key] = release_time(self.now, quiet, timezone)
        return found


def _people(session: Session, ids: Chosen) -> dict[str, Person]:
    text = [
        cast(c, String)
        for c in (
            Customer.channel_order,
            Customer.opt_out_channels,
            Customer.opt_out_categories,
        )
    ]
    rows = session.exec(
        select(  # type: ignore[call-overload]
            col(Customer.id),
            col(Customer.locale),
            col(Customer.timezone),
            *text,
            col(Customer.quiet_start),
            col(Customer.quiet_end),
            cast(Customer.max_per_day, String),
        ).where(col(Customer.id).in_(ids))
    )
    return {
        cid: Person(locale, zone, (order, channels, categories, start, end, caps))
        for cid, locale, zone, order, channels, categories, start, end, caps in rows
    }


def _contacts(session: Session, ids: Chosen) -> dict[str, dict[Channel, int]]:
    """The contact to use per channel: the active one updated last (ties: the higher id)."""
    found: dict[str, dict[Channel, int]] = {}
    newest: dict[tuple[str, str], datetime] = {}
    for customer_id, contact_id, channel, updated_at in session.exec(
        select(
            ContactPoint.customer_id, ContactPoint.id, ContactPoint.channel, ContactPoint.updated_at
        )
        .where(col(ContactPoint.customer_id).in_(ids), ContactPoint.status == "active")
        .order_by(col(ContactPoint.id))
    ):
        seen = newest.get((customer_id, channel))
        if contact_id is not None and (seen is None or updated_at >= seen):
            found.setdefault(customer_id, {})[Channel(channel)] = contact_id
            newest[(customer_id, channel)] = updated_at
    return found


def _sent_today(session: Session, ids: Chosen, category: str, now: datetime) -> dict[str, int]:
    counted = session.exec(
        select(Notification.customer_id, func.count())
        .where(
            col(Notification.customer_id).in_(ids),
            Notification.category == category,
            col(Notification.created_at) > now - timedelta(days=1),
            Notification.state != NotificationState.SUPPRESSED.value,
        )
        .group_by(col(Notification.customer_id))
    )
    return {customer_id: int(count) for customer_id, count in counted}


def plan_batch(
    session: Session,
    rt: Runtime,
    cascade: Cascade,
    broadcast: Broadcast,
    ids: Sequence[str],
    now: datetime,
    within: Select[Any] | None = None,
) -> Rows:
    """Load the batch's customers, contacts and cap counts in three queries (an adaptive
    cascade: their engagement rows in one more); plan each in its A/B variant.

    ``within``: the same ids as a query (the batch's range of members), which the
    loading queries use instead of a list of ``len(ids)`` bound parameters.
    """
    rows = Rows()
    if not ids:
        return rows
    settings = rt.settings
    chosen: Chosen = within if within is not None else list(ids)
    people, contacts = _people(session, chosen), _contacts(session, chosen)
    category = broadcast.category
    shapes = Shapes(cascade, category, now)
    limits: dict[str, int] = {}
    for cid, person in people.items():
        limit = shapes.preferences_of(person.stored).max_per_day.get(
            category, settings.max_per_day.get(category)
        )
        if limit is not None:
            limits[cid] = limit
    counts = _sent_today(session, chosen, category, now) if limits else {}
    variants = cascade.experiment.variants if cascade.experiment else ()
    adaptive = "adaptive" in (cascade.order, *(v.order for v in variants))
    affinities = affinities_of(session, list(ids), now, settings) if adaptive else {}
    shared = Shared(
        broadcast_id=broadcast.id,
        api_key_id=broadcast.api_key_id,
        cascade=cascade,
        category=category,
        content=broadcast.content,
        ttl=timedelta(seconds=broadcast.ttl_seconds),
    )
    respect = cascade.quiet_hours == "respect"
    unknown = MemberPlan(Plan(steps=(), suppressed="unknown_customer"))
    for cid in ids:
        # A/B: the member's variant is planned (its steps); the broadcast's TTL stays.
        assigned = rt.experiments.for_cascade(session, cascade, cid, now)
        planned = _member(shapes, people, contacts, assigned, affinities.get(cid), cid, respect)
        if planned is not None:
            planned = _capped(planned, limits.get(cid), counts.get(cid, 0))
        member_rows(rows, shared, cid, planned or unknown, now)
    return rows


def _member(
    shapes: Shapes,
    people: dict[str, Person],
    contacts: dict[str, dict[Channel, int]],
    assigned: Assignment,
    affinity: Affinity | None,
    cid: str,
    respect: bool,
) -> MemberPlan | None:
    person = people.get(cid)
    if person is None:
        return None
    plan = shapes.plan_of(assigned, person.stored, contacts.get(cid, {}), affinity)
    experiment, variant = assigned.experiment, assigned.variant
    if plan.suppressed is not None:
        return MemberPlan(plan, experiment=experiment, variant=variant)
    due = shapes.due(person.stored, person.timezone) if respect else shapes.now
    return MemberPlan(plan, due, person.locale, experiment, variant)


def _capped(planned: MemberPlan, limit: int | None, sent_today: int) -> MemberPlan:
    """The member's plan, or suppressed by the daily cap of the broadcast's category."""
    if planned.plan.suppressed is not None or limit is None or sent_today < limit:
        return planned
    plan = Plan(steps=(), skipped=planned.plan.skipped, suppressed="frequency_cap")
    return replace(planned, plan=plan, due=None, locale=None)
