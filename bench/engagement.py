"""Simulation: static, A/B and adaptive order on a synthetic population (issue 8).

``python -m bench.engagement [--customers 2000] [--notifications 20] [--seed 8]``;
not part of the test suite. Every order is planned by the real
:func:`dispatcher.engine.plan_steps`; the adaptive one learns through the real
estimator (:mod:`dispatcher.affinity`: decayed counts, the population's rate as prior),
fed with the simulated outcomes as :mod:`dispatcher.engagement` would store them.

The cascade (costs and the adaptive order's settings: their defaults)::

    push (read, 5 min) -> messenger among [whatsapp, viber, vk] (read, 15 min)
    -> email (read, 1 h) -> sms (delivered, 10 min)

The population (seeded; each customer drawn independently; no stated preferences):

* contacts: push 60%, whatsapp 70%, viber 40%, vk 50%, email 90%, sms 100%;
* one of the customer's messengers (uniformly) is their favourite;
* chance to read a message: favourite messenger ~ Beta(8, 2) (mean 0.80), other
  messengers ~ Beta(1, 6) (0.14), push ~ Beta(2, 3) (0.40), email ~ Beta(1.5, 6)
  (0.20); an SMS is delivered with chance 0.98;
* delay before reading, when read: lognormal, sigma 1, with a per-customer median drawn
  uniformly from messengers 1-10 min, push 1-5 min, email 10-120 min; SMS delivery
  median 10 s;
* a step is confirmed when the message is read (SMS: delivered) within its timeout.

Each customer gets ``--notifications`` notifications, one a day. Orders compared:

* static: the file's order (the messenger step takes the first messenger listed that
  the customer has);
* A/B: half the customers (``dispatcher.experiments.assign``: SHA-256) get the file's
  order, half the messenger step first with vk listed first;
* adaptive: ``order: adaptive``, the population's rates refreshed once a day.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.cascade_rules import cascade_problems
from config.cascades import Cascade
from config.settings import DEFAULT_COSTS, Settings
from dispatcher.affinity import Affinity, Counts, observed, population_rate
from dispatcher.engine import Plan, Profile, plan_steps
from dispatcher.experiments import assign
from providers.base import Channel

DAY = 86400.0
#: The settings' defaults: half-life, prior strength and the value of an hour of waiting.
HALF_LIFE, STRENGTH, COST_PER_HOUR = (
    float(Settings.model_fields[f"engagement_{name}"].default)
    for name in ("half_life", "prior_strength", "cost_per_hour")
)
EXPERIMENT = "messenger_first"

STEPS: list[dict[str, Any]] = [
    {"channel": "push", "wait_for": "read", "timeout": "5m"},
    {
        "channel": "messenger",
        "among": ["whatsapp", "viber", "vk"],
        "wait_for": "read",
        "timeout": "15m",
    },
    {"channel": "email", "wait_for": "read", "timeout": "1h"},
    {"channel": "sms", "wait_for": "delivered", "timeout": "10m"},
]
STATIC = Cascade.model_validate({"name": "static", "steps": STEPS})
VARIANT_B = Cascade.model_validate(
    {
        "name": "variant_b",
        "steps": [
            {**STEPS[1], "among": ["vk", "whatsapp", "viber"]},
            STEPS[0],
            *STEPS[2:],
        ],
    }
)
ADAPTIVE = Cascade.model_validate({"name": "adaptive", "order": "adaptive", "steps": STEPS})
# The cross-field rules a cascade file must pass (wait conditions each channel can report).
assert not [p for c in (STATIC, VARIANT_B, ADAPTIVE) for p in cascade_problems(c)]

P, W, V, K, E, S = (
    Channel.PUSH,
    Channel.WHATSAPP,
    Channel.VIBER,
    Channel.VK,
    Channel.EMAIL,
    Channel.SMS,
)
MESSENGERS = (W, V, K)
HAS_CONTACT = {P: 0.6, W: 0.7, V: 0.4, K: 0.5, E: 0.9, S: 1.0}
MEDIAN_DELAY = {P: (60, 300), W: (60, 600), V: (60, 600), K: (60, 600), E: (600, 7200)}


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    profile: Profile
    read: dict[Channel, float]  #: chance to read (SMS: to be delivered)
    median: dict[Channel, float]  #: seconds


def population(count: int, rng: random.Random) -> list[Customer]:
    """The synthetic customers (distributions in the module docstring)."""
    customers = []
    for n in range(count):
        channels = [c for c, share in HAS_CONTACT.items() if rng.random() < share]
        messengers = [c for c in MESSENGERS if c in channels]
        favourite = rng.choice(messengers) if messengers else None
        read = {
            P: rng.betavariate(2, 3),
            E: rng.betavariate(1.5, 6),
            S: 0.98,
            **{
                m: rng.betavariate(8, 2) if m == favourite else rng.betavariate(1, 6)
                for m in MESSENGERS
            },
        }
        median = {c: rng.uniform(*bounds) for c, bounds in MEDIAN_DELAY.items()}
        median[S] = 10.0
        contacts = {c: i for i, c in enumerate(channels)}
        customers.append(Customer(f"c{n}", Profile(contacts=contacts), read, median))
    return customers


def variant(customer_id: str) -> str:
    """A or B, 50/50, stable per customer (:func:`dispatcher.experiments.assign`)."""
    return assign(customer_id, EXPERIMENT, [("A", 1.0), ("B", 1.0)])


@dataclass
class Tally:
    notifications: int = 0
    confirmed: int = 0
    reached_sms: int = 0
    cost: float = 0.0
    times: list[float] = field(default_factory=list)

    def row(self, name: str) -> list[str]:
        per = self.cost / self.confirmed if self.confirmed else float("nan")
        median = statistics.median(self.times) / 60 if self.times else float("nan")
        return [
            name,
            f"{per:.5f}",
            f"{100 * self.reached_sms / self.notifications:.1f}%",
            f"{median:.1f} min",
            f"{100 * self.confirmed / self.notifications:.1f}%",
        ]


@dataclass
class Learner:
    """Engagement counts as the database keeps them, per customer and channel."""

    own: dict[tuple[str, Channel], tuple[Counts, float]] = field(default_factory=dict)
    rates: dict[Channel, float] = field(default_factory=dict)

    def add(self, customer_id: str, channel: Channel, confirmed: bool, at: float) -> None:
        counts, as_of = self.own.get((customer_id, channel), (Counts(), at))
        counts = counts.decayed(at - as_of, HALF_LIFE).plus(observed(confirmed))
        self.own[(customer_id, channel)] = (counts, at)

    def refresh(self, now: float) -> None:
        totals: dict[Channel, Counts] = {}
        for (_, channel), (counts, as_of) in self.own.items():
            totals[channel] = totals.get(channel, Counts()).plus(
                counts.decayed(now - as_of, HALF_LIFE)
            )
        self.rates = {channel: population_rate(total) for channel, total in totals.items()}

    def affinity(self, customer: Customer, now: float) -> Affinity:
        own = {
            channel: counts.decayed(now - as_of, HALF_LIFE)
            for channel in customer.profile.contacts
            if (found := self.own.get((customer.id, channel))) is not None
            for counts, as_of in [found]
        }
        return Affinity(own, self.rates, DEFAULT_COSTS, STRENGTH, COST_PER_HOUR)


Draws = dict[Channel, tuple[bool, float]]


def draws(customer: Customer, rng: random.Random) -> Draws:
    """Per channel: would this notification be read (SMS: delivered), and after how long."""
    return {
        channel: (
            rng.random() < customer.read[channel],
            rng.lognormvariate(0.0, 1.0) * customer.median[channel],
        )
        for channel in (P, W, V, K, E, S)
    }


def deliver(plan: Plan, drawn: Draws, tally: Tally) -> list[tuple[Channel, bool]]:
    """Try the planned steps in order; returns each tried channel and whether it confirmed."""
    tally.notifications += 1
    elapsed, tried = 0.0, []
    for step in plan.steps:
        tally.cost += DEFAULT_COSTS[step.channel]
        tally.reached_sms += step.channel is S
        read, delay = drawn[step.channel]
        confirmed = read and delay <= step.timeout
        tried.append((step.channel, confirmed))
        if confirmed:
            tally.confirmed += 1
            tally.times.append(elapsed + delay)
            break
        elapsed += step.timeout
    return tried


Planner = Callable[[Customer, float], Plan]


def simulate(customers: int, notifications: int, seed: int) -> dict[str, Tally]:
    """Run every order on the same population and the same random draws; one tally each."""
    people = population(customers, random.Random(seed))
    learner = Learner()
    planners: dict[str, Planner] = {
        "static": lambda c, _: plan_steps(STATIC, c.profile, "transactional"),
        "a/b": lambda c, _: plan_steps(
            STATIC if variant(c.id) == "A" else VARIANT_B, c.profile, "transactional"
        ),
        "adaptive": lambda c, now: plan_steps(
            ADAPTIVE, c.profile, "transactional", learner.affinity(c, now)
        ),
    }
    tallies = {name: Tally() for name in planners}
    for day in range(notifications):
        now = day * DAY
        learner.refresh(now)
        for customer in people:
            # The same draws for every order: the orders differ, not the luck.
            drawn = draws(customer, random.Random(f"{seed}:{customer.id}:{day}"))
            for name, planner in planners.items():
                tried = deliver(planner(customer, now), drawn, tallies[name])
                if name == "adaptive":
                    for channel, confirmed in tried:
                        learner.add(customer.id, channel, confirmed, now)
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engagement", description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--notifications", type=int, default=20, help="per customer, one a day")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    print(__doc__.split("\n\n", 2)[2].strip())  # the distributions, as run
    started = time.monotonic()
    tallies = simulate(args.customers, args.notifications, args.seed)
    print(
        f"\n{args.customers} customers x {args.notifications} notifications, seed {args.seed}, "
        f"{time.monotonic() - started:.1f} s\n"
    )
    head = ["order", "cost per confirmed", "reaching SMS", "median time to confirmed", "confirmed"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, tally in tallies.items():
        print("| " + " | ".join(tally.row(name)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
