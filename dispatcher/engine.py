"""Pure cascade decisions: no database, no Redis, no HTTP, and ``now`` is a parameter.

* :func:`plan_steps` resolves a cascade for one customer (opt-outs, missing
  contacts, messenger group -> preferred messenger, preferred order; with
  ``order: adaptive``, the customer's history picks the messenger and the order).
* :func:`condition_met` is the stop rule for one attempt.
* :func:`release_time` postpones a step out of the customer's quiet hours.
* :func:`retry_delay` is the backoff for "not sent" retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.cascades import MESSENGER, Cascade, Member, Step
from dispatcher.affinity import Affinity
from dispatcher.states import NotificationState
from providers.base import PAID_CHANNELS, Channel, Signal


@dataclass(frozen=True, slots=True)
class Profile:
    """What the engine needs to know about a customer."""

    contacts: Mapping[Channel, int]  #: the active contact id to use per channel
    channel_order: tuple[Channel, ...] = ()
    opt_out_channels: frozenset[Channel] = frozenset()
    opt_out_categories: frozenset[str] = frozenset()
    timezone: str = "UTC"
    quiet_hours: tuple[time, time] | None = None


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One resolved step: a concrete channel and contact, its condition and timeout."""

    channel: Channel
    contact_id: int
    wait_for: Signal
    timeout: float  #: seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "contact_id": self.contact_id,
            "wait_for": self.wait_for.value,
            "timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlannedStep:
        return cls(
            channel=Channel(data["channel"]),
            contact_id=int(data["contact_id"]),
            wait_for=Signal(data["wait_for"]),
            timeout=float(data["timeout"]),
        )


@dataclass(frozen=True, slots=True)
class Skip:
    """A cascade step left out for this customer, and why."""

    step: int
    channel: str
    reason: str  #: opted_out | no_contact


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[PlannedStep, ...]
    skipped: tuple[Skip, ...] = ()
    suppressed: str | None = None  #: reason when nothing can be sent
    notes: tuple[str, ...] = field(default=())
    #: Adaptive order: why each step has its place, in plan order (ids and counts only).
    reasons: tuple[str, ...] = ()


def _usable(step: Step, profile: Profile) -> tuple[list[Member], str]:
    """The members of a step the customer can be reached on (preferred ones first, in the
    customer's order, the rest in file order), or none and the reason."""
    members = list(step.members())
    if step.channel == MESSENGER and profile.channel_order:
        rank = {channel: i for i, channel in enumerate(profile.channel_order)}
        members.sort(key=lambda m: rank.get(m.channel, len(rank)))
    usable: list[Member] = []
    reason = "no_contact"
    for member in members:
        if member.channel in profile.opt_out_channels:
            reason = "opted_out"
            continue
        if member.channel in profile.contacts:
            usable.append(member)
    return usable, "" if usable else reason


def _planned(member: Member, step: Step, profile: Profile) -> PlannedStep:
    return PlannedStep(
        channel=member.channel,
        contact_id=profile.contacts[member.channel],
        wait_for=member.wait_for or step.wait_for,
        timeout=step.timeout.total_seconds(),
    )


def plan_steps(
    cascade: Cascade, profile: Profile, category: str, affinity: Affinity | None = None
) -> Plan:
    """Resolve ``cascade`` for one customer (DESIGN §5, steps 1-4).

    With ``order: adaptive`` and the customer's ``affinity``, :func:`adaptive_order`
    picks each messenger step's member and the order of the free steps; without
    ``affinity`` the file order is used, as for ``order: static``.
    """
    if category in profile.opt_out_categories:
        return Plan(steps=(), suppressed="opted_out_category")
    choices: list[list[PlannedStep]] = []
    skipped: list[Skip] = []
    for index, step in enumerate(cascade.steps):
        members, reason = _usable(step, profile)
        if not members:
            skipped.append(Skip(index, step.channel, reason))
            continue
        choices.append([_planned(member, step, profile) for member in members])
    if not choices:
        reasons = {s.reason for s in skipped}
        return Plan(steps=(), skipped=tuple(skipped), suppressed=_suppression(reasons))
    if cascade.order == "adaptive" and affinity is not None:
        ordered, why = adaptive_order(
            choices, profile.channel_order, affinity, paid_last=cascade.paid_last
        )
        return Plan(steps=tuple(ordered), skipped=tuple(skipped), reasons=tuple(why))
    kept = [candidates[0] for candidates in choices]
    ordered = reorder(kept, profile.channel_order, paid_last=cascade.paid_last)
    return Plan(steps=tuple(ordered), skipped=tuple(skipped))


def adaptive_order(
    choices: Sequence[Sequence[PlannedStep]],
    preferred: Sequence[Channel],
    affinity: Affinity,
    *,
    paid_last: bool,
) -> tuple[list[PlannedStep], list[str]]:
    """The steps for ``order: adaptive``, and why each has its place.

    ``choices`` holds, per cascade step, the members the customer can be reached on
    (one for a plain step). A messenger step the customer states no preference for takes
    the member whose plan has the lowest expected cost, then waiting
    (:meth:`~dispatcher.affinity.Affinity.expected`); the first member wins ties.
    Preferred channels come first in the customer's order; the other free steps follow
    by expected cost, then waiting, per confirmation (file order on ties); paid steps go
    last when ``paid_last``, else keep their places.
    """
    picked = [candidates[0] for candidates in choices]
    for index, candidates in enumerate(choices):
        if len(candidates) < 2 or candidates[0].channel in preferred:
            continue
        best = None
        for candidate in candidates:
            trial = [*picked[:index], candidate, *picked[index + 1 :]]
            ordered = _by_affinity(trial, preferred, affinity, paid_last=paid_last)
            score = affinity.expected([(s.channel, s.timeout) for s in ordered])
            if best is None or score < best[0]:
                best = (score, candidate)
        picked[index] = best[1] if best is not None else candidates[0]
    ordered = _by_affinity(picked, preferred, affinity, paid_last=paid_last)
    reasons = [_reason(step, preferred, affinity) for step in ordered]
    reasons[0] = reasons[0].replace(":", " first:", 1)
    return ordered, reasons


def _by_affinity(
    steps: Sequence[PlannedStep],
    preferred: Sequence[Channel],
    affinity: Affinity,
    *,
    paid_last: bool,
) -> list[PlannedStep]:
    rank = {channel: i for i, channel in enumerate(preferred)}
    listed = sorted((s for s in steps if s.channel in rank), key=lambda s: rank[s.channel])
    rest = [s for s in steps if s.channel not in rank]
    free = iter(
        sorted(
            (s for s in rest if s.channel not in PAID_CHANNELS),
            key=lambda s: affinity.key(s.channel, s.timeout),
        )
    )
    # Paid steps keep their slots among the rest; the free ones fill the others in order.
    rest = [s if s.channel in PAID_CHANNELS else next(free) for s in rest]
    result = listed + rest
    if paid_last:
        result = [s for s in result if s.channel not in PAID_CHANNELS] + [
            s for s in result if s.channel in PAID_CHANNELS
        ]
    return result


def _reason(step: PlannedStep, preferred: Sequence[Channel], affinity: Affinity) -> str:
    if step.channel in preferred:
        return f"{step.channel}: the customer's preferred order"
    evidence = affinity.why(step.channel, step.timeout, step.wait_for.value)
    if step.channel in PAID_CHANNELS:
        return f"{step.channel}: paid ({evidence})"
    return f"{step.channel}: {evidence}"


def _suppression(reasons: set[str]) -> str:
    """``opted_out`` when the customer could be reached but said no, else ``no_contact``."""
    return "opted_out" if "opted_out" in reasons else "no_contact"


def reorder(
    steps: Sequence[PlannedStep], order: Sequence[Channel], *, paid_last: bool
) -> list[PlannedStep]:
    """Customer-listed channels first in their order, the rest in cascade order.

    Each step keeps its own timeout and wait condition. Paid channels stay last
    when ``paid_last`` (a customer preferring SMS does not make SMS the first try).
    """
    rank = {channel: i for i, channel in enumerate(order)}
    listed = sorted((s for s in steps if s.channel in rank), key=lambda s: rank[s.channel])
    unlisted = [s for s in steps if s.channel not in rank]
    result = listed + unlisted
    if paid_last:
        result = [s for s in result if s.channel not in PAID_CHANNELS] + [
            s for s in result if s.channel in PAID_CHANNELS
        ]
    return result


def condition_met(
    wait_for: Signal,
    *,
    sent_at: datetime | None,
    delivered_at: datetime | None,
    read_at: datetime | None,
    clicked_at: datetime | None = None,
) -> bool:
    """The stop rule for one attempt: has it reached what its step waits for?

    A click on a tracked link implies the message was read (and delivered)."""
    if wait_for is Signal.CLICKED:
        return clicked_at is not None
    if wait_for is Signal.READ:
        return read_at is not None or clicked_at is not None
    if wait_for is Signal.DELIVERED:
        return delivered_at is not None or read_at is not None or clicked_at is not None
    return any(at is not None for at in (sent_at, delivered_at, read_at, clicked_at))


def finished_state(wait_for: Signal) -> NotificationState:
    """The notification state when a step waiting for ``wait_for`` is satisfied."""
    return {
        Signal.CLICKED: NotificationState.CLICKED,
        Signal.READ: NotificationState.READ,
        Signal.DELIVERED: NotificationState.DELIVERED,
        Signal.SENT: NotificationState.SENT,
    }[wait_for]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def release_time(now: datetime, quiet_hours: tuple[time, time] | None, timezone: str) -> datetime:
    """``now``, or the end of the customer's quiet hours if ``now`` falls inside them.

    Quiet hours may wrap midnight (22:00-08:00). Times are the customer's local time.
    """
    if quiet_hours is None:
        return now
    start, end = quiet_hours
    if start == end:
        return now
    local = now.astimezone(_zone(timezone))
    current = local.time().replace(tzinfo=None)
    wraps = start > end
    inside = (start <= current or current < end) if wraps else (start <= current < end)
    if not inside:
        return now
    release = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if release <= local:
        release += timedelta(days=1)
    return release.astimezone(now.tzinfo)


def retry_delay(tries: int, base: float, retry_after: float | None) -> float:
    """Seconds before retrying a "not sent" attempt: exponential, at least what was asked."""
    delay = base * float(2 ** max(0, tries - 1))
    return max(delay, retry_after or 0.0)
