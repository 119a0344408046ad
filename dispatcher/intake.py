"""Accepting a notification: validate, resolve the cascade, store rows in one transaction.

Nothing is published inside the transaction: it commits first and the doorbells ring
after, so a crash between the two loses nothing (the sweep republishes).

Requests that arrive together share one transaction (:func:`accept_round`, a
:class:`~dispatcher.batch.Batch` per API process): one commit, one history insert and
the doorbells of all of them. A round in which any request fails is rolled back and
its requests run again one by one, so a bad request answers its own error only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from config.cascades import Cascade
from config.settings import Settings
from dispatcher.attempt_rows import create_attempt
from dispatcher.content import render_content
from dispatcher.customer_tables import Customer
from dispatcher.customers import (
    FieldError,
    ensure_customer,
    preferences_of,
    profile_of,
    upsert_contacts,
)
from dispatcher.engagement import affinity_of
from dispatcher.engine import Plan, plan_steps
from dispatcher.experiments import VariantStatuses
from dispatcher.history import record
from dispatcher.idempotency import find_by_key, request_hash
from dispatcher.models import Notification
from dispatcher.publisher import Doorbell
from dispatcher.runtime import Runtime
from dispatcher.schemas import NotificationIn
from dispatcher.states import NotificationState
from dispatcher.work import unit_of_work


class IdempotencyConflict(Exception):
    """The same Idempotency-Key was used with a different body."""


@dataclass(frozen=True, slots=True)
class Request:
    """One ``POST /v1/notifications``, as the intake round takes it."""

    body: NotificationIn
    api_key_id: str
    idempotency_key: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    notification: Notification
    doorbells: list[Doorbell]
    replayed: bool = False


def accept(
    session: Session,
    body: NotificationIn,
    *,
    cascades: Mapping[str, Cascade],
    settings: Settings,
    api_key_id: str,
    idempotency_key: str | None,
    now: datetime,
    experiments: VariantStatuses | None = None,
) -> Accepted:
    """Store a new notification and its first attempt (or replay an earlier one).

    A cascade with an ``experiment`` runs the customer's variant (its steps and TTL).
    """
    digest = request_hash(body)
    if idempotency_key:
        existing = find_by_key(session, Notification, api_key_id, idempotency_key)
        if existing is not None:
            if existing.request_hash != digest:
                raise IdempotencyConflict(idempotency_key)
            return Accepted(existing, [], replayed=True)
    cascade = cascades.get(body.cascade)
    if cascade is None:
        known = ", ".join(sorted(cascades)) or "none"
        raise FieldError("cascade", f"unknown cascade {body.cascade!r} (known: {known})")
    customer = session.get(Customer, body.customer_id)
    if customer is None and not body.contacts:
        raise FieldError(
            "customer_id",
            "unknown customer: create it with PUT /v1/customers/{id} or give 'contacts'",
        )
    customer = ensure_customer(session, body.customer_id, now)
    upsert_contacts(session, customer.id, body.contacts, now, "contacts")
    category = body.category or cascade.category
    assigned = (experiments or VariantStatuses()).for_cascade(session, cascade, customer.id, now)
    cascade = assigned.cascade
    # Adaptive only: one read of the customer's engagement rows (population rates cached).
    affinity = (
        affinity_of(session, customer.id, now, settings) if cascade.order == "adaptive" else None
    )
    plan = plan_steps(cascade, profile_of(session, customer), category, affinity)
    if plan.suppressed is None and over_cap(session, customer, settings, category, now):
        plan = Plan(steps=(), skipped=plan.skipped, suppressed="frequency_cap")
    channels = [step.channel for step in plan.steps]
    notification = Notification(
        customer_id=customer.id,
        cascade=cascade.name,
        steps=[step.to_json() for step in plan.steps],
        category=category,
        content=render_content(cascade, body, channels, customer.locale, link_base(settings)),
        idempotency_key=idempotency_key,
        request_hash=digest,
        api_key_id=api_key_id,
        respect_quiet_hours=cascade.quiet_hours == "respect",
        expires_at=now + (body.ttl or cascade.ttl),
        created_at=now,
        experiment=assigned.experiment,
        variant=assigned.variant,
    )
    session.add(notification)
    session.flush()
    variant: dict[str, Any] = {}
    if assigned.experiment and assigned.variant:
        variant = {"experiment": assigned.experiment, "variant": assigned.variant}
    record(
        session,
        "accepted",
        at=now,
        source="api",
        notification=notification,
        cascade=cascade.name,
        **variant,
    )
    if plan.reasons:
        record(
            session,
            "ordered",
            at=now,
            source="engine",
            notification=notification,
            order="adaptive",
            reason=plan.reasons[0],
            steps=list(plan.reasons),
        )
    for skip in plan.skipped:
        record(
            session,
            "skipped",
            at=now,
            source="api",
            notification=notification,
            step=skip.step,
            step_channel=skip.channel,
            reason=skip.reason,
        )
    if plan.suppressed is not None:
        notification.state = NotificationState.SUPPRESSED
        notification.reason = plan.suppressed
        notification.finished_at = now
        record(
            session,
            "suppressed",
            at=now,
            source="api",
            notification=notification,
            reason=plan.suppressed,
        )
        return Accepted(notification, [])
    _, bell = create_attempt(session, notification, 0, now)
    return Accepted(notification, [bell] if bell else [])


def accept_round(rt: Runtime, requests: list[Request]) -> list[Accepted]:
    """Accept the requests of one round in one transaction; ring their doorbells after."""
    with unit_of_work(rt) as work:
        accepted = [
            accept(
                work.session,
                request.body,
                cascades=rt.cascades,
                settings=rt.settings,
                api_key_id=request.api_key_id,
                idempotency_key=request.idempotency_key,
                now=request.now,
                experiments=rt.experiments,
            )
            for request in requests
        ]
        for one in accepted:
            work.bells.extend(one.doorbells)
    return accepted


def link_base(settings: Settings) -> str | None:
    """The public URL tracked links start with, when link tracking is on."""
    return settings.public_url if settings.link_tracking else None


def over_cap(
    session: Session, customer: Customer, settings: Settings, category: str, now: datetime
) -> bool:
    """True when the customer already got ``max_per_day`` of this category in 24 hours."""
    limit = daily_limit(customer, settings, category)
    if limit is None:
        return False
    sent = session.exec(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.customer_id == customer.id,
            Notification.category == category,
            col(Notification.created_at) > now - timedelta(days=1),
            Notification.state != NotificationState.SUPPRESSED.value,
        )
    ).one()
    return int(sent) >= limit


def daily_limit(customer: Customer, settings: Settings, category: str) -> int | None:
    """The customer's own ``max_per_day`` for ``category``, else the global one."""
    return preferences_of(customer).max_per_day.get(category, settings.max_per_day.get(category))
