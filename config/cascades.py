"""Cascades: the YAML schema of a cascade file as frozen pydantic models.

A cascade is data, not code: a named, ordered list of steps (:class:`Step`, a channel or a
messenger group of :class:`Member`), with its templates, locales and an optional A/B
experiment. Loading and checking a file is :mod:`config.cascade_files`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.durations import Duration, parse_duration
from config.experiments import Experiment, Variant, with_variant
from config.problems import unknown_channel
from config.templates import LOCALE_PATTERN, ChannelTemplate, normalize_locale
from providers.base import PAID_CHANNELS, Channel, Signal

#: A cascade without ``ttl`` keeps trying for this long, or for the sum of its step
#: timeouts when that is longer (so every step is tried and quiet hours can postpone).
DEFAULT_TTL = timedelta(days=1)

#: The pseudo-channel of a step that picks the customer's preferred messenger.
MESSENGER = "messenger"
MESSENGERS = (Channel.TELEGRAM, Channel.WHATSAPP, Channel.VIBER, Channel.VK)


class Member(BaseModel):
    """One messenger of a group, optionally with its own wait condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    wait_for: Signal | None = None


class Step(BaseModel):
    """One step: a channel (or a messenger group), what to wait for, and how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str
    among: tuple[Channel | Member, ...] = ()
    wait_for: Signal = Signal.DELIVERED
    timeout: Duration
    #: SMS only: the most messages (segments) one SMS may be billed as; longer is refused.
    max_segments: int | None = Field(default=None, ge=1, le=255)
    #: With ``CASCADE_LINK_TRACKING`` on, false sends this step's links as written.
    track_links: bool = True

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value != MESSENGER and value not in Channel.__members__.values():
            raise ValueError(unknown_channel(value, [*(c.value for c in Channel), MESSENGER]))
        return value

    @model_validator(mode="after")
    def _group_shape(self) -> Step:
        if self.channel == MESSENGER and not self.among:
            raise ValueError("a messenger step needs 'among': the messengers to choose from")
        if self.channel != MESSENGER and self.among:
            raise ValueError("'among' is only for channel: messenger")
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be positive")
        if self.max_segments is not None and self.channel != Channel.SMS:
            raise ValueError("max_segments is only for sms steps")
        return self

    def members(self) -> tuple[Member, ...]:
        """The concrete channels this step may use, each with its wait condition."""
        if self.channel != MESSENGER:
            return (Member(channel=Channel(self.channel), wait_for=self.wait_for),)
        return tuple(
            Member(channel=m, wait_for=self.wait_for)
            if isinstance(m, Channel)
            else Member(channel=m.channel, wait_for=m.wait_for or self.wait_for)
            for m in self.among
        )


# A variant's steps are cascade steps: resolve the forward reference now Step exists.
Variant.model_rebuild(_types_namespace={"Step": Step})
Experiment.model_rebuild()

#: One template's per-channel parts (``any`` serves channels not listed).
Templates = dict[Channel | Literal["any"], ChannelTemplate]


class Cascade(BaseModel):
    """A named, ordered list of steps with a time to live."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    description: str = ""
    category: str = "transactional"
    ttl: Duration  #: default: :data:`DEFAULT_TTL` or the sum of the step timeouts
    quiet_hours: Literal["respect", "ignore"] = "respect"
    paid_last: bool = True  #: paid channels stay last even if a customer prefers them
    #: ``adaptive``: each customer's history picks the messenger and the order of the free
    #: steps (:func:`dispatcher.engine.adaptive_order`); ``static``: the file's order.
    order: Literal["static", "adaptive"] = "static"
    steps: tuple[Step, ...] = Field(min_length=1)
    templates: dict[str, Templates] = Field(default_factory=dict)
    #: The language of ``templates``: what a customer whose locale has no variant gets.
    default_locale: str = Field(default="en", pattern=LOCALE_PATTERN.pattern)
    #: Per-locale variants: locale → template name → channel → template.
    locales: dict[str, dict[str, Templates]] = Field(default_factory=dict)
    #: Data to render each template with when checking it: template name → data.
    samples: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: A/B variants of the steps (:mod:`config.experiments`); None: no experiment.
    experiment: Experiment | None = None

    @field_validator("default_locale")
    @classmethod
    def _normal_default(cls, value: str) -> str:
        return normalize_locale(value)

    @field_validator("locales")
    @classmethod
    def _normal_locales(cls, value: dict[str, dict[str, Templates]]) -> dict[str, Any]:
        normal: dict[str, dict[str, Templates]] = {}
        for tag, named in value.items():
            if not LOCALE_PATTERN.match(tag):
                raise ValueError(f"{tag!r} is not a locale (like ru, pt, pt-BR)")
            if normalize_locale(tag) in normal:
                raise ValueError(f"locale {tag!r} is given twice")
            normal[normalize_locale(tag)] = named
        return normal

    @model_validator(mode="before")
    @classmethod
    def _default_ttl(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("ttl") is not None:
            return data
        total = timedelta(0)
        for step in data.get("steps") or []:
            try:
                total += parse_duration(step.get("timeout"))
            except (AttributeError, ValueError):
                continue  # that step's own error is reported
        return {**data, "ttl": max(DEFAULT_TTL, total)}

    @property
    def experiment_name(self) -> str | None:
        """The experiment's name (the cascade's name unless given), None without one."""
        if self.experiment is None:
            return None
        return self.experiment.name or self.name

    def variant(self, name: str) -> Cascade:
        """The cascade as variant ``name`` of its experiment runs it."""
        assert self.experiment is not None
        return with_variant(self, next(v for v in self.experiment.variants if v.name == name))

    def as_assigned(self, variant: str | None) -> Cascade:
        """The cascade a notification assigned ``variant`` runs: that variant's steps, or
        the cascade as written (no variant, or one no longer in the file)."""
        if variant is None or self.experiment is None:
            return self
        if all(v.name != variant for v in self.experiment.variants):
            return self
        return self.variant(variant)

    def channels(self) -> list[Channel]:
        return [member.channel for step in self.steps for member in step.members()]

    def every_channel(self) -> list[Channel]:
        """The channels of its steps and of every variant's steps, each once."""
        variants = self.experiment.variants if self.experiment else ()
        steps = [*self.steps, *(s for v in variants for s in v.steps or ())]
        return list(dict.fromkeys(m.channel for step in steps for m in step.members()))

    def variants(self, name: str) -> dict[str, Templates]:
        """Every locale variant of template ``name``, the default first: locale → templates."""
        found = {self.default_locale: self.templates[name]} if name in self.templates else {}
        for locale, named in self.locales.items():
            if name in named:
                found[locale] = named[name]
        return found

    def max_segments(self, channel: Channel) -> int | None:
        """The cap on billed messages of the cascade's step on ``channel`` (SMS), if any."""
        for step in self.steps:
            if step.channel == channel:
                return step.max_segments
        return None

    def tracks_links(self, channel: Channel) -> bool:
        """Whether the step on ``channel`` has its links tracked (when tracking is on).

        On the send path: reads the steps without building their members."""
        for step in self.steps:
            among = [m if isinstance(m, Channel) else m.channel for m in step.among]
            if channel == step.channel or channel in among:
                return step.track_links
        return True

    def is_paid(self, channel: Channel) -> bool:
        return channel in PAID_CHANNELS
