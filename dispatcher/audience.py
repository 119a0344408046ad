"""Planning one broadcast member: pure, and the same rules as a single send.

:func:`plan_member` resolves the cascade for one customer with the functions
single sends use (:func:`~dispatcher.engine.plan_steps`, the daily cap,
:func:`~dispatcher.engine.release_time` for quiet hours); :func:`member_rows`
turns the plan into plain row dicts (notification, first attempt, history events)
that the fan-out writes with Core bulk inserts. No database, no Redis, no clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from config.cascades import Cascade
from dispatcher.affinity import Affinity
from dispatcher.attempt_rows import quiet_hours_of
from dispatcher.content import attempt_fields, for_locale
from dispatcher.customer_schemas import PreferencesIn
from dispatcher.customer_tables import ContactPoint, Customer
from dispatcher.customers import profile_from
from dispatcher.engine import Plan, plan_steps, release_time
from dispatcher.states import AttemptState, NotificationState


@dataclass(frozen=True, slots=True)
class Member:
    """Everything known about one member when its batch is planned."""

    customer_id: str
    customer: Customer | None  #: None: the id list named an unknown customer
    contacts: list[ContactPoint] = field(default_factory=list)  #: in id order
    sent_today: int = 0  #: notifications of the category in the last 24 hours
    limit: int | None = None  #: the customer's (else the global) max_per_day
    preferences: PreferencesIn | None = None  #: read once per batch (None: read here)
    affinity: Affinity | None = None  #: ``order: adaptive`` only: the customer's history


@dataclass(frozen=True, slots=True)
class MemberPlan:
    plan: Plan
    due: datetime | None = None  #: when the first attempt is due (None when suppressed)
    locale: str | None = None  #: the customer's locale: picks the content variant
    experiment: str | None = None  #: the A/B experiment the member was assigned in
    variant: str | None = None  #: ... and its variant (the plan used its steps)


@dataclass(frozen=True, slots=True)
class Shared:
    """What every member of one broadcast shares."""

    broadcast_id: str
    api_key_id: str
    cascade: Cascade
    category: str
    content: Mapping[str, Any]  #: rendered per channel, other locales under ``locales``
    ttl: timedelta
    #: Content per (locale, channels), built once and shared by the rows that use it
    #: (the bulk writer then serialises each distinct one once).
    parts: dict[tuple[str | None, tuple[str, ...]], dict[str, Any]] = field(
        default_factory=dict, compare=False
    )

    def content_for(self, locale: str | None, channels: tuple[str, ...]) -> dict[str, Any]:
        key = (locale, channels)
        found = self.parts.get(key)
        if found is None:
            content = for_locale(self.content, locale)
            found = self.parts[key] = {c: content[c] for c in channels}
        return found


@dataclass
class Rows:
    """Plain dicts for ``insert(table)`` executemany, and the doorbells to ring after."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: (attempt id, channel, notification id)
    bells: list[tuple[str, str, str]] = field(default_factory=list)


def plan_member(cascade: Cascade, member: Member, category: str, now: datetime) -> MemberPlan:
    """Opt-outs, missing contacts, the daily cap and quiet hours, as for a single send."""
    customer = member.customer
    if customer is None:
        return MemberPlan(Plan(steps=(), suppressed="unknown_customer"))
    profile = profile_from(customer, member.contacts, member.preferences)
    plan = plan_steps(cascade, profile, category, member.affinity)
    if plan.suppressed is not None:
        return MemberPlan(plan)
    if member.limit is not None and member.sent_today >= member.limit:
        return MemberPlan(Plan(steps=(), skipped=plan.skipped, suppressed="frequency_cap"))
    due = now
    if cascade.quiet_hours == "respect":
        due = release_time(now, quiet_hours_of(customer), customer.timezone)
    return MemberPlan(plan, due, customer.locale)


def _event(
    shared: Shared, nid: str, customer_id: str, type_: str, now: datetime, **detail: Any
) -> dict[str, Any]:
    attempt_id, channel = detail.pop("attempt_id", None), detail.pop("channel", None)
    return {
        "notification_id": nid,
        "attempt_id": attempt_id,
        "customer_id": customer_id,
        "type": type_,
        "channel": channel,
        "at": now,
        "source": "broadcast",
        "detail": detail,
    }


def member_rows(
    rows: Rows, shared: Shared, customer_id: str, planned: MemberPlan, now: datetime
) -> None:
    """Append one member's notification, first attempt and events to ``rows``."""
    plan, nid = planned.plan, str(uuid.uuid4())
    suppressed = plan.suppressed is not None
    channels = tuple(step.channel.value for step in plan.steps)
    content = shared.content_for(planned.locale, channels)
    rows.notifications.append(
        {
            "id": nid,
            "customer_id": customer_id,
            "cascade": shared.cascade.name,
            "steps": [step.to_json() for step in plan.steps],
            "category": shared.category,
            "content": content,
            "idempotency_key": None,
            "request_hash": None,
            "api_key_id": shared.api_key_id,
            "state": (
                NotificationState.SUPPRESSED if suppressed else NotificationState.ACCEPTED
            ).value,
            "reason": plan.suppressed,
            "respect_quiet_hours": shared.cascade.quiet_hours == "respect",
            "expires_at": now + shared.ttl,
            "created_at": now,
            "finished_at": now if suppressed else None,
            "cost": 0.0,
            "broadcast_id": shared.broadcast_id,
            "experiment": planned.experiment,
            "variant": planned.variant,
        }
    )
    events = rows.events
    events.append(
        _event(
            shared,
            nid,
            customer_id,
            "accepted",
            now,
            cascade=shared.cascade.name,
            broadcast_id=shared.broadcast_id,
            **(
                {"experiment": planned.experiment, "variant": planned.variant}
                if planned.variant
                else {}
            ),
        )
    )
    if plan.reasons:
        events.append(
            _event(
                shared,
                nid,
                customer_id,
                "ordered",
                now,
                order="adaptive",
                reason=plan.reasons[0],
                steps=list(plan.reasons),
            )
        )
    for skip in plan.skipped:
        events.append(
            _event(
                shared,
                nid,
                customer_id,
                "skipped",
                now,
                step=skip.step,
                step_channel=skip.channel,
                reason=skip.reason,
            )
        )
    if suppressed or planned.due is None:
        events.append(_event(shared, nid, customer_id, "suppressed", now, reason=plan.suppressed))
        return
    first, attempt_id, due = plan.steps[0], str(uuid.uuid4()), planned.due
    part = content.get(first.channel.value)
    step = first.to_json()
    cascade = shared.cascade.name
    rows.attempts.append(_attempt_row(attempt_id, nid, cascade, step, due, now, part))
    if due > now:
        events.append(
            _event(
                shared,
                nid,
                customer_id,
                "postponed",
                now,
                attempt_id=attempt_id,
                channel=first.channel.value,
                reason="quiet_hours",
                until=due.isoformat(),
            )
        )
    else:
        rows.bells.append((attempt_id, first.channel.value, nid))


def _attempt_row(
    attempt_id: str,
    nid: str,
    cascade: str,
    step: Mapping[str, Any],
    due: datetime,
    now: datetime,
    part: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        **attempt_fields(part),
        "id": attempt_id,
        "notification_id": nid,
        "step": 0,
        "channel": step["channel"],
        "provider": None,
        "contact_id": step["contact_id"],
        "wait_for": step["wait_for"],
        "timeout_seconds": step["timeout"],
        "state": AttemptState.PENDING.value,
        "idempotency_key": str(uuid.uuid4()),
        "provider_message_id": None,
        "due_at": due,
        "published_at": now if due <= now else None,
        "claimed_at": None,
        "started_at": None,
        "claim_token": None,
        "sent_at": None,
        "delivered_at": None,
        "read_at": None,
        "escalate_at": None,
        "finished_at": None,
        "tries": 0,
        "cost": 0.0,
        "error_code": None,
        "error_detail": None,
        "created_at": now,
        "notification_created_at": now,
        "cascade": cascade,
    }
