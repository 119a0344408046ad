"""The adaptive order's estimator and ordering rules, pure: counts in, rates and a plan out."""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Mapping
from typing import Any

import pytest

from bench.engagement import simulate
from config.cascade_rules import cascade_problems
from config.cascades import Cascade
from config.settings import DEFAULT_COSTS
from dispatcher.affinity import (
    Affinity,
    Counts,
    duration_text,
    estimate,
    observed,
    population_rate,
    weight,
)
from dispatcher.engine import Profile, plan_steps
from providers.base import Channel

P, T, W, V, E, S = (
    Channel.PUSH,
    Channel.TELEGRAM,
    Channel.WHATSAPP,
    Channel.VIBER,
    Channel.EMAIL,
    Channel.SMS,
)
DAY = 86400.0

STEPS: list[dict[str, Any]] = [
    {"channel": "push", "wait_for": "read", "timeout": "5m"},
    {
        "channel": "messenger",
        "among": ["whatsapp", "viber"],
        "wait_for": "read",
        "timeout": "15m",
    },
    {"channel": "email", "wait_for": "read", "timeout": "1h"},
    {"channel": "sms", "wait_for": "delivered", "timeout": "10m"},
]
ADAPTIVE = Cascade.model_validate({"name": "a", "order": "adaptive", "steps": STEPS})
ALL = Profile(contacts={P: 1, W: 2, V: 3, E: 4, S: 5})
EVEN = {channel: 0.5 for channel in Channel}


def affinity(own: Mapping[Channel, tuple[float, float]], **kw: Any) -> Affinity:
    counts = {channel: Counts(c, n) for channel, (c, n) in own.items()}
    kw.setdefault("cost_per_hour", 0.01)
    return Affinity(counts, kw.pop("population", EVEN), kw.pop("costs", DEFAULT_COSTS), **kw)


def channels(cascade: Cascade, profile: Profile, found: Affinity | None) -> list[str]:
    return [s.channel.value for s in plan_steps(cascade, profile, "transactional", found).steps]


def test_decay_halves_per_half_life():
    """An observation one half-life old weighs 1/2, two 1/4; the future is not heavier."""
    assert weight(DAY, DAY) == pytest.approx(0.5)
    assert weight(2 * DAY, DAY) == pytest.approx(0.25)
    assert weight(-DAY, DAY) == 1.0
    assert Counts(8, 10).decayed(3 * DAY, DAY) == Counts(1, 1.25)


def test_no_history_is_the_population_rate():
    """A customer with no (or fully decayed) history gets the population's rate."""
    assert estimate(Counts(), 0.62, 5.0) == pytest.approx(0.62)
    assert estimate(Counts(9, 10).decayed(100 * DAY, DAY), 0.62, 5.0) == pytest.approx(0.62)


def test_little_history_is_shrunk_much_history_is_own():
    """2/2 read moves the estimate part way from the population; 90/100 is nearly 0.9."""
    little = estimate(Counts(2, 2), 0.3, 5.0)
    assert little == pytest.approx((2 + 1.5) / 7)
    assert 0.3 < little < 0.6
    assert estimate(Counts(90, 100), 0.3, 5.0) == pytest.approx(91.5 / 105)
    assert estimate(Counts(90, 100), 0.3, 0.0) == pytest.approx(0.9)


def test_population_rate_is_laplace_smoothed():
    assert population_rate(Counts()) == 0.5
    assert population_rate(Counts(7, 8)) == pytest.approx(0.8)
    assert observed(True) == Counts(1, 1)
    assert observed(False) == Counts(0, 1)


def test_reader_of_viber_gets_viber_first_with_the_counts_as_reason():
    """Push ignored 30 times, viber read: viber first (though it costs 0.003), and the
    reason gives the real counts."""
    found = affinity({P: (0, 30), V: (9, 10)})
    plan = plan_steps(ADAPTIVE, ALL, "transactional", found)
    assert [s.channel for s in plan.steps] == [V, P, E, S]
    assert plan.reasons[0] == "viber first: 9/10 read within 15 min"
    assert plan.reasons[1] == "push: 0/30 read within 5 min"
    assert plan.reasons[3].startswith("sms: paid (no history; 50% of all sms messages delivered")


def test_messenger_member_is_the_one_the_customer_reads():
    """Reads WhatsApp, ignores Viber: the messenger step takes WhatsApp though it costs more,
    and goes before a push almost never read (an hour of waiting is worth 0.01)."""
    own = {P: (0.0, 20.0), W: (10.0, 10.0), V: (0.0, 10.0)}
    population = {**EVEN, P: 0.2}
    found = affinity(own, population=population)
    assert channels(ADAPTIVE, ALL, found) == ["whatsapp", "push", "email", "sms"]
    # A push read half the time is worth its 5 minutes before a paid WhatsApp message.
    assert channels(ADAPTIVE, ALL, affinity({**own, P: (10, 20)}, population=population))[:2] == [
        "push",
        "whatsapp",
    ]
    # Waiting worth nothing: free steps first by cost; whatsapp still beats viber.
    free = affinity(own, population=population, cost_per_hour=0.0)
    assert channels(ADAPTIVE, ALL, free) == ["push", "email", "whatsapp", "sms"]
    # Without history, the cheaper member at the same (population) rate: viber.
    assert channels(ADAPTIVE, ALL, affinity({})) == ["push", "viber", "email", "sms"]


def test_paid_steps_stay_last_even_when_they_are_the_only_thing_read():
    """SMS delivered 10/10, everything else ignored: SMS is still last (paid_last default)."""
    ignored = {P: (0, 10), V: (0, 10), W: (0, 10), E: (0, 10), S: (10, 10)}
    assert channels(ADAPTIVE, ALL, affinity(ignored))[-1] == "sms"


def test_paid_last_false_keeps_the_paid_step_in_its_place():
    """With paid_last: false the SMS step keeps its file slot; the free ones reorder around it."""
    steps = [STEPS[0], STEPS[3], STEPS[1], STEPS[2]]
    cascade = Cascade.model_validate(
        {"name": "a", "order": "adaptive", "paid_last": False, "steps": steps}
    )
    found = affinity({P: (0, 30), V: (9, 10)})
    assert channels(cascade, ALL, found) == ["viber", "sms", "push", "email"]


def test_customer_preference_wins_over_history():
    """A customer who prefers push gets push first, whatever the counts say."""
    profile = Profile(contacts=ALL.contacts, channel_order=(P, W))
    found = affinity({P: (0, 10), W: (0, 10), V: (10, 10)})
    plan = plan_steps(ADAPTIVE, profile, "transactional", found)
    assert [s.channel.value for s in plan.steps] == ["push", "whatsapp", "email", "sms"]
    assert plan.reasons[0] == "push first: the customer's preferred order"


def test_ties_keep_the_file_order():
    """Equal steps (same cost, rate and timeout) keep the order of the file."""
    steps = [
        {"channel": "vk", "wait_for": "read", "timeout": "5m"},
        {"channel": "push", "wait_for": "read", "timeout": "5m"},
        {"channel": "telegram", "wait_for": "sent", "timeout": "5m"},
    ]
    cascade = Cascade.model_validate({"name": "a", "order": "adaptive", "steps": steps})
    profile = Profile(contacts={Channel.VK: 1, P: 2, T: 3})
    assert channels(cascade, profile, affinity({})) == ["vk", "push", "telegram"]


def test_the_test_cascade_passes_the_file_rules():
    """The cascades built here are ones a file could hold (each wait condition reportable)."""
    assert cascade_problems(ADAPTIVE) == []


def test_static_order_and_missing_affinity_use_the_file_order():
    """order: static ignores the counts; adaptive without counts (no read) is static too."""
    static = Cascade.model_validate({"name": "s", "steps": STEPS})
    found = affinity({P: (0, 10), V: (9, 10)})
    assert channels(static, ALL, found) == ["push", "whatsapp", "email", "sms"]
    assert channels(ADAPTIVE, ALL, None) == ["push", "whatsapp", "email", "sms"]
    assert plan_steps(static, ALL, "transactional", found).reasons == ()


def test_expected_cost_and_waiting_of_a_plan():
    """Each step is reached when all before it went unconfirmed."""
    found = affinity(
        {}, population={P: 0.5, S: 0.9}, costs={P: 0.0, S: 0.05}, strength=0.0, cost_per_hour=0.0
    )
    cost, waiting = found.expected([(P, 300.0), (S, 600.0)])
    assert cost == pytest.approx(0.5 * 0.05)
    assert waiting == pytest.approx(300 + 0.5 * 600)


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45 s"), (900, "15 min"), (7200, "2 h"), (86400, "1 d")]
)
def test_duration_text(seconds: float, text: str):
    assert duration_text(seconds) == text


def test_simulation_adaptive_costs_less_and_is_not_slower():
    """A small run of bench.engagement: adaptive cheaper per confirmation than static, and
    its median time to confirmation no worse."""
    tallies = simulate(customers=150, notifications=8, seed=3)
    static, adaptive = tallies["static"], tallies["adaptive"]
    assert adaptive.cost / adaptive.confirmed < static.cost / static.confirmed
    assert adaptive.reached_sms < static.reached_sms
    assert statistics.median(adaptive.times) <= statistics.median(static.times)


def test_sorting_by_price_per_confirmation_is_the_cheapest_order():
    """Over random customers, the adaptive order of the free steps has the lowest expected
    price of every permutation (checked by brute force)."""
    rng = random.Random(5)
    free = [(P, 300.0), (W, 900.0), (V, 900.0), (E, 3600.0)]
    for _ in range(200):
        own = {c: (rng.uniform(0, 10), 10.0) for c, _ in free}
        found = affinity(own, population={c: rng.random() for c, _ in free})
        ordered = sorted(free, key=lambda step: found.key(*step))
        best = min(found.expected(list(p))[0] for p in itertools.permutations(free))
        assert found.expected(ordered)[0] == pytest.approx(best)
