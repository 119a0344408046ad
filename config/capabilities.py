"""What each channel can confirm with the providers this process has configured.

A cascade step may wait only for a signal its channel can report. What a channel
can report depends on its providers' settings, not only on the channel: Telegram
reports reading only when its messages carry a "Got it" button. The router builds
:class:`Capabilities` from the configured providers; the cascade check asks it,
and names the setting that would turn a missing signal on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from providers.base import CHANNEL_SIGNALS, Channel, Signal


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Per available channel, the signals every one of its providers can report."""

    signals: Mapping[Channel, frozenset[Signal]]
    #: (channel, signal) → the setting that would let the channel report the signal.
    hints: Mapping[tuple[Channel, Signal], str] = field(default_factory=dict)

    @classmethod
    def static(cls, channels: Collection[Channel] = tuple(Channel)) -> Capabilities:
        """What ``channels`` report with default provider settings (``CHANNEL_SIGNALS``)."""
        return cls({channel: CHANNEL_SIGNALS[channel] for channel in channels})

    @classmethod
    def coerce(cls, given: Capabilities | Collection[Channel] | None) -> Capabilities | None:
        """Accept the older form, a set of available channels."""
        if given is None or isinstance(given, Capabilities):
            return given
        return cls.static(given)

    def with_signal(self, signal: Signal, *, enabled: bool, hint: str) -> Capabilities:
        """Every available channel reports ``signal`` when ``enabled`` (e.g. link tracking
        adds ``clicked``); otherwise a step waiting for it is refused naming ``hint``."""
        if enabled:
            signals = {channel: have | {signal} for channel, have in self.signals.items()}
            return Capabilities(signals, self.hints)
        hints = {**{(channel, signal): hint for channel in self.signals}, **self.hints}
        return Capabilities(self.signals, hints)

    def available(self) -> set[Channel]:
        return set(self.signals)

    def can(self, channel: Channel, signal: Signal) -> bool:
        return signal in self.signals.get(channel, CHANNEL_SIGNALS[channel])

    def refusal(self, channel: Channel, signal: Signal) -> str:
        """Why a step on ``channel`` cannot wait for ``signal``, naming what would fix it."""
        can = ", ".join(
            sorted(s.value for s in self.signals.get(channel, CHANNEL_SIGNALS[channel]))
        )
        hint = self.hints.get((channel, signal))
        if hint:
            return f"{channel} cannot report '{signal}' unless {hint} (it can report: {can})"
        return f"{channel} cannot report '{signal}' (it can report: {can})"
