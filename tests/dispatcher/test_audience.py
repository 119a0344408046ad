"""Planning broadcast members: pure, no database, the same rules as single sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.cascade_files import load_cascades
from config.cascades import Cascade
from dispatcher.audience import Member, Rows, Shared, member_rows, plan_member
from dispatcher.customer_tables import ContactPoint, Customer
from providers.base import Channel
from tests.conftest import CASCADES

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 12:00 UTC


@pytest.fixture(name="cascade", scope="module")
def _cascade() -> Cascade:
    return load_cascades(CASCADES, set(Channel))["basic"]


def customer(cid: str = "c1", **values: Any) -> Customer:
    return Customer(id=cid, created_at=NOW, updated_at=NOW, **values)


def contact(cid: str, channel: str, contact_id: int, status: str = "active") -> ContactPoint:
    return ContactPoint(
        id=contact_id,
        customer_id=cid,
        channel=channel,
        address=f"addr-{contact_id}",
        status=status,
        created_at=NOW,
        updated_at=NOW,
    )


def member(c: Customer | None, contacts: list[ContactPoint], **extra: object) -> Member:
    return Member(c.id if c else "ghost", c, contacts, **extra)  # type: ignore[arg-type]


def test_reachable_customer_gets_the_first_step_now(cascade: Cascade):
    """Push contact, no preferences: the push step, due now."""
    planned = plan_member(cascade, member(customer(), [contact("c1", "push", 1)]), "promo", NOW)
    assert planned.plan.suppressed is None
    assert [s.channel for s in planned.plan.steps] == [Channel.PUSH]
    assert planned.due == NOW


@pytest.mark.parametrize(
    ("values", "contacts", "reason"),
    [
        ({"opt_out_categories": ["promo"]}, ["push"], "opted_out_category"),
        ({"opt_out_channels": ["push"]}, ["push"], "opted_out"),
        ({}, [], "no_contact"),
    ],
)
def test_suppressed_like_a_single_send(cascade: Cascade, values, contacts, reason):
    """Opt-outs (category or channel) and missing contacts suppress, with the reason."""
    c = customer(**values)
    found = [contact("c1", ch, i + 1) for i, ch in enumerate(contacts)]
    planned = plan_member(cascade, member(c, found), "promo", NOW)
    assert planned.plan.suppressed == reason
    assert planned.due is None


def test_unknown_customer_is_suppressed(cascade: Cascade):
    """An id list naming a customer we do not know: suppressed, not an error."""
    assert plan_member(cascade, member(None, []), "promo", NOW).plan.suppressed == (
        "unknown_customer"
    )


def test_daily_cap_reached_is_frequency_cap(cascade: Cascade):
    """max_per_day reached in the last 24 hours: frequency_cap; one below still goes."""
    c, push = customer(), [contact("c1", "push", 1)]
    capped = plan_member(cascade, member(c, push, sent_today=2, limit=2), "promo", NOW)
    assert capped.plan.suppressed == "frequency_cap"
    below = plan_member(cascade, member(c, push, sent_today=1, limit=2), "promo", NOW)
    assert below.plan.suppressed is None


def test_quiet_hours_postpone_to_their_end(cascade: Cascade):
    """12:00 UTC is 21:00 in Tokyo, inside 20:00-08:00: due at 08:00 Tokyo (23:00 UTC)."""
    c = customer(timezone="Asia/Tokyo", quiet_start="20:00", quiet_end="08:00")
    planned = plan_member(cascade, member(c, [contact("c1", "push", 1)]), "promo", NOW)
    assert planned.due == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)


def test_rows_for_a_sent_a_postponed_and_a_suppressed_member(cascade: Cascade):
    """Rows: one notification each; attempts only for the reachable; bells only for due now."""
    shared = Shared("b1", "key", cascade, "promo", {"push": {"text": "hi"}}, timedelta(hours=1))
    rows = Rows()
    now_member = plan_member(cascade, member(customer("a"), [contact("a", "push", 1)]), "p", NOW)
    member_rows(rows, shared, "a", now_member, NOW)
    quiet = customer("b", quiet_start="11:00", quiet_end="13:00")
    later = plan_member(cascade, member(quiet, [contact("b", "push", 2)]), "p", NOW)
    member_rows(rows, shared, "b", later, NOW)
    member_rows(rows, shared, "ghost", plan_member(cascade, member(None, []), "p", NOW), NOW)
    assert [(n["customer_id"], n["state"], n["reason"]) for n in rows.notifications] == [
        ("a", "accepted", None),
        ("b", "accepted", None),
        ("ghost", "suppressed", "unknown_customer"),
    ]
    assert all(n["broadcast_id"] == "b1" for n in rows.notifications)
    assert rows.notifications[0]["content"] == {"push": {"text": "hi"}}
    assert [(a["channel"], a["contact_id"], a["due_at"]) for a in rows.attempts] == [
        ("push", 1, NOW),
        ("push", 2, datetime(2026, 3, 2, 13, 0, tzinfo=UTC)),
    ]
    assert rows.bells == [(rows.attempts[0]["id"], "push", rows.notifications[0]["id"])]
    assert rows.attempts[1]["published_at"] is None
    types = [(e["customer_id"], e["type"]) for e in rows.events]
    assert ("b", "postponed") in types
    assert ("ghost", "suppressed") in types
    assert all("hi" not in str(e["detail"]) for e in rows.events)  # no message text in history
