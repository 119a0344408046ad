"""How well each channel works for one customer: the estimator of the adaptive order.

Pure: no database, times are parameters. :mod:`dispatcher.engagement` keeps the counts
in the database; :func:`dispatcher.engine.plan_steps` orders a cascade with them.

Per customer and channel there are two exponentially decayed counts: attempts that
ended (``tried``: confirmed within the step's timeout, or escalated because the timeout
passed or the send failed) and, of those, the ``confirmed`` ones. An observation
``age`` seconds old weighs ``0.5 ** (age / half_life)``.

The chance that the next attempt is confirmed within its timeout is the posterior
mean under a Beta prior centred on the population's rate ``p`` for the channel, with
``k`` pseudo-attempts of weight (the prior's strength)::

    rate = (confirmed + k * p) / (tried + k)

A customer without history gets the population's rate; one with ``tried`` much larger
than ``k`` gets their own. ``p`` itself is the decayed share of all customers' attempts
on the channel, with one success and one failure added (0.5 before anything is known).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from providers.base import Channel

#: The population's rate for a channel nobody has tried yet.
UNKNOWN_RATE = 0.5
#: Expected prices closer than this are equal: the expected waiting decides between them.
COST_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Counts:
    """Decayed counts of one customer (or everyone) on one channel, as of one moment."""

    confirmed: float = 0.0
    tried: float = 0.0

    def decayed(self, age: float, half_life: float) -> Counts:
        """The counts ``age`` seconds later (a negative age changes nothing)."""
        factor = weight(age, half_life)
        return Counts(self.confirmed * factor, self.tried * factor)

    def plus(self, other: Counts) -> Counts:
        return Counts(self.confirmed + other.confirmed, self.tried + other.tried)


def weight(age: float, half_life: float) -> float:
    """What an observation ``age`` seconds old weighs now."""
    return math.pow(0.5, max(0.0, age) / half_life)


def observed(confirmed: bool) -> Counts:
    """One attempt that ended: confirmed within its timeout, or not."""
    return Counts(1.0 if confirmed else 0.0, 1.0)


def population_rate(total: Counts) -> float:
    """Everyone's share of confirmed attempts on a channel (Laplace: 0.5 with no data)."""
    return (total.confirmed + 1.0) / (total.tried + 2.0)


def estimate(own: Counts, population: float, strength: float) -> float:
    """Posterior mean of "confirmed within the timeout": own counts shrunk to the population."""
    if own.tried + strength <= 0:
        return population
    return (own.confirmed + strength * population) / (own.tried + strength)


def duration_text(seconds: float) -> str:
    """``900`` -> ``15 min``; ``7200`` -> ``2 h``; ``45`` -> ``45 s``."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds)} s"


@dataclass(frozen=True, slots=True)
class Affinity:
    """What the adaptive order knows about one customer, and how it compares steps.

    A step is ``(channel, timeout seconds)``. Its price is the message's cost plus its
    waiting, valued at ``cost_per_hour``; steps are compared by expected price per
    confirmation (``price / rate``), then by expected waiting per confirmation
    (``timeout / rate``). For tries made in sequence that each succeed independently,
    sorting by such ratios minimises the expected total (the exchange argument).
    """

    own: Mapping[Channel, Counts]  #: the customer's counts, decayed to now
    population: Mapping[Channel, float]  #: everyone's rate per channel
    costs: Mapping[Channel, float]  #: the configured price of one message
    strength: float = 5.0  #: prior pseudo-attempts
    cost_per_hour: float = 0.0  #: what an hour of waiting for a confirmation is worth
    _rates: dict[Channel, float] = field(default_factory=dict, compare=False, repr=False)

    def rate(self, channel: Channel) -> float:
        """The chance a message on ``channel`` is confirmed within its step's timeout."""
        rate = self._rates.get(channel)
        if rate is None:
            population = self.population.get(channel, UNKNOWN_RATE)
            rate = estimate(self.own.get(channel, Counts()), population, self.strength)
            rate = self._rates[channel] = min(1.0, max(rate, 1e-6))
        return rate

    def price(self, channel: Channel, timeout: float) -> float:
        """The message's cost plus the step's waiting (at most ``timeout`` seconds)."""
        return self.costs.get(channel, 0.0) + self.cost_per_hour * timeout / 3600

    def key(self, channel: Channel, timeout: float) -> tuple[float, float]:
        """(expected price, expected seconds) per confirmation: smaller goes first."""
        rate = self.rate(channel)
        return self.price(channel, timeout) / rate, timeout / rate

    def expected(self, steps: Sequence[tuple[Channel, float]]) -> tuple[float, float]:
        """Expected (price, seconds of waiting) of trying ``steps`` in order until one
        confirms: a step is reached when all before it went unconfirmed."""
        reach, price, waiting = 1.0, 0.0, 0.0
        for channel, timeout in steps:
            price += reach * self.price(channel, timeout)
            waiting += reach * timeout
            reach *= 1.0 - self.rate(channel)
        return round(price / COST_EPSILON) * COST_EPSILON, waiting

    def why(self, channel: Channel, timeout: float, signal: str) -> str:
        """The evidence behind a step's place: ``9/10 read within 15 min`` (own, decayed
        counts rounded) or the population's rate when the customer has no history."""
        within = f"{signal} within {duration_text(timeout)}"
        own = self.own.get(channel, Counts())
        if round(own.tried) >= 1:
            return f"{round(own.confirmed)}/{round(own.tried)} {within}"
        population = self.population.get(channel, UNKNOWN_RATE)
        return f"no history; {round(100 * population)}% of all {channel} messages {within}"
