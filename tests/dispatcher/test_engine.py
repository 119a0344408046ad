"""The pure engine as tables: (cascade, profile, category) -> plan; conditions; quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from config.cascades import Cascade
from dispatcher.engine import (
    PlannedStep,
    Profile,
    condition_met,
    finished_state,
    plan_steps,
    release_time,
    retry_delay,
)
from dispatcher.states import TRANSITIONS, AttemptState, NotificationState, can_move
from providers.base import Channel, Signal

P, T, W, V, K, E, S = (
    Channel.PUSH,
    Channel.TELEGRAM,
    Channel.WHATSAPP,
    Channel.VIBER,
    Channel.VK,
    Channel.EMAIL,
    Channel.SMS,
)

ORDER_STATUS: dict[str, Any] = {
    "name": "order_status",
    "ttl": "6h",
    "steps": [
        {"channel": "push", "wait_for": "read", "timeout": "2m"},
        {
            "channel": "messenger",
            "among": ["whatsapp", "viber", {"channel": "telegram", "wait_for": "sent"}],
            "wait_for": "read",
            "timeout": "15m",
        },
        {"channel": "email", "wait_for": "delivered", "timeout": "30m"},
        {"channel": "sms", "wait_for": "delivered", "timeout": "10m"},
    ],
}
CASCADE = Cascade.model_validate(ORDER_STATUS)
ALL = {P: 1, T: 2, W: 3, V: 4, E: 5, S: 6}


def chain(plan: Any) -> list[tuple[str, str, float]]:
    return [(s.channel.value, s.wait_for.value, s.timeout) for s in plan.steps]


@pytest.mark.parametrize(
    ("profile", "expected", "skipped"),
    [
        (
            Profile(contacts=ALL),
            [
                ("push", "read", 120),
                ("whatsapp", "read", 900),
                ("email", "delivered", 1800),
                ("sms", "delivered", 600),
            ],
            [],
        ),
        (
            Profile(contacts=ALL, opt_out_channels=frozenset({P})),
            [("whatsapp", "read", 900), ("email", "delivered", 1800), ("sms", "delivered", 600)],
            [(0, "opted_out")],
        ),
        (
            Profile(contacts={T: 2, E: 5, S: 6}),
            [("telegram", "sent", 900), ("email", "delivered", 1800), ("sms", "delivered", 600)],
            [(0, "no_contact")],
        ),
        (
            Profile(contacts=ALL, channel_order=(V, W)),
            [
                ("viber", "read", 900),
                ("push", "read", 120),
                ("email", "delivered", 1800),
                ("sms", "delivered", 600),
            ],
            [],
        ),
        (
            Profile(contacts={P: 1, V: 4, T: 2, S: 6}, channel_order=(K, T)),
            [("telegram", "sent", 900), ("push", "read", 120), ("sms", "delivered", 600)],
            [(2, "no_contact")],
        ),
        (
            Profile(contacts=ALL, channel_order=(E, W)),
            [
                ("email", "delivered", 1800),
                ("whatsapp", "read", 900),
                ("push", "read", 120),
                ("sms", "delivered", 600),
            ],
            [],
        ),
        (
            Profile(contacts=ALL, channel_order=(S, P)),
            [
                ("push", "read", 120),
                ("whatsapp", "read", 900),
                ("email", "delivered", 1800),
                ("sms", "delivered", 600),
            ],
            [],
        ),
        (
            Profile(contacts={W: 3, V: 4}, opt_out_channels=frozenset({W})),
            [("viber", "read", 900)],
            [(0, "no_contact"), (2, "no_contact"), (3, "no_contact")],
        ),
    ],
    ids=[
        "all",
        "push-opt-out",
        "no-push-telegram-only",
        "prefers-viber",
        "prefers-vk-then-telegram",
        "prefers-email",
        "sms-stays-last",
        "group-skips-opted-out-member",
    ],
)
def test_plan_steps(profile: Profile, expected: list[Any], skipped: list[tuple[int, str]]):
    """Opt-outs, missing contacts, the messenger group and preferred order resolve as designed."""
    plan = plan_steps(CASCADE, profile, "transactional")
    assert plan.suppressed is None
    assert chain(plan) == expected
    assert [(s.step, s.reason) for s in plan.skipped] == skipped


def test_paid_first_when_the_cascade_allows_it():
    """With paid_last: false, a customer who prefers SMS gets it first."""
    cascade = Cascade.model_validate({**ORDER_STATUS, "paid_last": False})
    plan = plan_steps(cascade, Profile(contacts=ALL, channel_order=(S,)), "transactional")
    assert [s.channel for s in plan.steps] == [S, P, W, E]


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        (
            Profile(contacts=ALL, opt_out_categories=frozenset({"transactional"})),
            "opted_out_category",
        ),
        (Profile(contacts={}), "no_contact"),
        (Profile(contacts={E: 5}, opt_out_channels=frozenset({E})), "opted_out"),
    ],
)
def test_suppressed(profile: Profile, reason: str):
    """Nothing to send: suppressed with the reason, no steps."""
    plan = plan_steps(CASCADE, profile, "transactional")
    assert (plan.steps, plan.suppressed) == ((), reason)


def test_planned_step_json_round_trip():
    """Frozen steps survive the database as JSON."""
    step = PlannedStep(channel=W, contact_id=7, wait_for=Signal.READ, timeout=900.0)
    assert PlannedStep.from_json(step.to_json()) == step


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wait_for", "sent", "delivered", "read", "clicked", "met"),
    [
        (Signal.SENT, None, None, None, None, False),
        (Signal.SENT, NOW, None, None, None, True),
        (Signal.DELIVERED, NOW, None, None, None, False),
        (Signal.DELIVERED, NOW, NOW, None, None, True),
        (Signal.DELIVERED, NOW, None, NOW, None, True),
        (Signal.READ, NOW, NOW, None, None, False),
        (Signal.READ, None, None, NOW, None, True),
        (Signal.READ, NOW, None, None, NOW, True),  # a click implies it was read
        (Signal.CLICKED, NOW, NOW, NOW, None, False),  # read is not a click
        (Signal.CLICKED, NOW, None, None, NOW, True),
    ],
)
def test_condition_met(
    wait_for: Signal, sent: Any, delivered: Any, read: Any, clicked: Any, met: bool
):
    """A step is satisfied by its own signal or a stronger one."""
    assert (
        condition_met(
            wait_for, sent_at=sent, delivered_at=delivered, read_at=read, clicked_at=clicked
        )
        is met
    )


def test_finished_state():
    """The notification ends in the state named by the satisfied condition."""
    assert [finished_state(s) for s in Signal] == [
        NotificationState.SENT,
        NotificationState.DELIVERED,
        NotificationState.READ,
        NotificationState.CLICKED,
    ]


@pytest.mark.parametrize(
    ("now", "quiet", "zone", "expected"),
    [
        (NOW, None, "UTC", NOW),
        # 23:30 UTC = 02:30 Moscow, inside 22:00-08:00: released at 08:00 Moscow = 05:00 UTC
        (
            datetime(2026, 1, 1, 23, 30, tzinfo=UTC),
            (time(22), time(8)),
            "Europe/Moscow",
            datetime(2026, 1, 2, 5, 0, tzinfo=UTC),
        ),
        # 18:30 UTC = 21:30 Moscow: before the window
        (
            datetime(2026, 1, 1, 18, 30, tzinfo=UTC),
            (time(22), time(8)),
            "Europe/Moscow",
            datetime(2026, 1, 1, 18, 30, tzinfo=UTC),
        ),
        # 19:30 UTC = 22:30 Moscow: inside, released next morning
        (
            datetime(2026, 1, 1, 19, 30, tzinfo=UTC),
            (time(22), time(8)),
            "Europe/Moscow",
            datetime(2026, 1, 2, 5, 0, tzinfo=UTC),
        ),
        # a daytime window that does not wrap midnight
        (
            datetime(2026, 1, 1, 13, 0, tzinfo=UTC),
            (time(12), time(14)),
            "UTC",
            datetime(2026, 1, 1, 14, 0, tzinfo=UTC),
        ),
        (NOW, (time(9), time(9)), "UTC", NOW),
        (
            datetime(2026, 1, 1, 23, 0, tzinfo=UTC),
            (time(22), time(8)),
            "Nowhere/Else",
            datetime(2026, 1, 2, 8, 0, tzinfo=UTC),
        ),
    ],
    ids=[
        "none",
        "inside-wrapping",
        "before",
        "inside-evening",
        "daytime",
        "empty",
        "unknown-zone-utc",
    ],
)
def test_release_time(now: datetime, quiet: Any, zone: str, expected: datetime):
    """Quiet hours postpone to their end in the customer's local time."""
    assert release_time(now, quiet, zone) == expected


@pytest.mark.parametrize(
    ("tries", "retry_after", "expected"),
    [(1, None, 5.0), (2, None, 10.0), (3, None, 20.0), (1, 30.0, 30.0), (3, 1.0, 20.0)],
)
def test_retry_delay(tries: int, retry_after: float | None, expected: float):
    """Exponential from the base, never shorter than the provider asked."""
    assert retry_delay(tries, 5.0, retry_after) == expected


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (AttemptState.PENDING, AttemptState.SENDING, True),
        (AttemptState.PENDING, AttemptState.SENT, False),
        (AttemptState.SENDING, AttemptState.UNKNOWN, True),
        (AttemptState.SENDING, AttemptState.PENDING, True),
        (AttemptState.UNKNOWN, AttemptState.SENDING, False),
        (AttemptState.UNKNOWN, AttemptState.PENDING, False),
        (AttemptState.UNKNOWN, AttemptState.DELIVERED, True),
        (AttemptState.SENT, AttemptState.ESCALATED, True),
        (AttemptState.FAILED, AttemptState.PENDING, False),
        (AttemptState.CANCELLED, AttemptState.PENDING, False),
    ],
)
def test_attempt_transitions(current: AttemptState, target: AttemptState, allowed: bool):
    """The state machine: an unknown outcome can never go back to being sent."""
    assert can_move(current, target) is allowed


def test_terminal_states_have_no_exit():
    """Read, escalated and cancelled attempts are final."""
    assert {s for s, targets in TRANSITIONS.items() if not targets} == {
        AttemptState.READ,
        AttemptState.ESCALATED,
        AttemptState.CANCELLED,
    }


def test_database_moves_obey_the_table(runtime):
    """lifecycle.apply refuses a transition the state machine does not allow."""
    from sqlmodel import Session

    from dispatcher.lifecycle import apply
    from dispatcher.models import Attempt, Notification
    from dispatcher.transitions import Transition
    from dispatcher.work import Work

    attempt = Attempt(
        id="a",
        notification_id="n",
        step=0,
        channel="sms",
        wait_for="sent",
        timeout_seconds=1,
        due_at=NOW,
        created_at=NOW,
    )
    illegal = Transition(AttemptState.UNKNOWN, {"state": AttemptState.SENDING.value}, "x")
    notification = Notification(customer_id="c", cascade="basic", category="t", expires_at=NOW)
    notification = Notification(customer_id="c", cascade="basic", category="t", expires_at=NOW)
    with Session(runtime.engine) as session, pytest.raises(ValueError, match="unknown -> sending"):
        apply(Work(session, NOW), notification, attempt, illegal, source="test")
