"""Cascades: the YAML schema, the loader and its validation.

A cascade file is data, not code: ``yaml.safe_load`` plus frozen pydantic
models. Every problem found is reported with the file, the line when known, and
the field path, and a wrong file fails at startup, never at send time.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from config.capabilities import Capabilities
from config.cascade_rules import cascade_problems
from config.durations import Duration, parse_duration
from config.experiments import Experiment, Variant, variant_problems, with_variant
from config.problems import (
    CascadeConfigError as CascadeConfigError,  # re-exported: callers catch it from here
)
from config.problems import (
    Problem,
    in_order,
    line_of,
    schema_problems,
    unknown_channel,
)
from config.templates import (
    LOCALE_PATTERN,
    ChannelTemplate,
    RenderError,
    compile_template,
    normalize_locale,
    render,
    sample_data,
    variables,
)
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


def load_file(path: Path, available: Capabilities | Collection[Channel] | None = None) -> Cascade:
    """Load and validate one cascade file; raise :class:`CascadeConfigError`.

    ``available``: what the configured providers can send and report (a bare set of
    channels means default provider settings); None checks signals against the defaults
    and skips the provider check.
    """
    capabilities = Capabilities.coerce(available)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise CascadeConfigError([Problem(path, "(file)", f"cannot read: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise CascadeConfigError(
            [Problem(path, "(yaml)", f"not valid YAML: {reason}", line)]
        ) from None
    if not isinstance(data, dict):
        raise CascadeConfigError(
            [Problem(path, "(file)", "expected a mapping with name and steps")]
        )
    try:
        cascade = Cascade.model_validate(data)
    except ValidationError as exc:
        # Report the schema errors and, on the steps that did parse, the cross-field rules
        # too: one pass shows every problem of the file.
        problems = schema_problems(path, node, data, exc, _known_keys)
        partial = _partial(data)
        if partial is not None:
            problems += _rule_problems(path, node, *partial, capabilities)
        raise CascadeConfigError(in_order(problems)) from None
    problems = _rule_problems(path, node, cascade, list(range(len(cascade.steps))), capabilities)
    if problems:
        raise CascadeConfigError(in_order(problems))
    return cascade


def _known_keys(parts: list[str | int]) -> Collection[str]:
    """The keys allowed where ``parts`` points (for "did you mean")."""
    if len(parts) == 1:
        return Cascade.model_fields
    if parts[0] == "steps" and len(parts) == 3:
        return Step.model_fields
    if parts[0] == "steps" and len(parts) == 5 and parts[2] == "among":
        return Member.model_fields
    if parts[0] == "templates" and len(parts) == 4:
        return ChannelTemplate.model_fields
    if parts[0] == "experiment":
        return _experiment_keys(parts[1:])
    return ()


def _experiment_keys(parts: list[str | int]) -> Collection[str]:
    """The keys allowed under ``experiment`` where ``parts`` points."""
    if len(parts) == 1:
        return Experiment.model_fields
    if len(parts) == 3:
        return Variant.model_fields
    if len(parts) == 5 and parts[2] == "steps":
        return Step.model_fields
    return ()


def _partial(data: dict[str, Any]) -> tuple[Cascade, list[int]] | None:
    """The cascade made of the steps that parsed (and the top-level fields that did), with
    each kept step's index in the file; None when no step parsed."""
    raw_steps = data.get("steps")
    kept: list[int] = []
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps if isinstance(raw_steps, list) else []):
        try:
            steps.append(Step.model_validate(raw))
            kept.append(index)
        except ValidationError:
            continue
    if not steps:
        return None
    rest = {k: v for k, v in data.items() if k in Cascade.model_fields and k != "steps"}
    for _ in range(len(rest) + 1):
        try:
            return Cascade.model_validate({**rest, "name": "partial", "steps": steps}), kept
        except ValidationError as exc:
            for error in exc.errors():
                rest.pop(str(error["loc"][0]), None)  # drop what failed: it is reported
    return None


def _rule_problems(
    path: Path,
    node: yaml.Node | None,
    cascade: Cascade,
    kept: list[int],
    capabilities: Capabilities | None,
) -> list[Problem]:
    """Cross-field rules, templates and available channels; step indices as in the file."""

    def where(parts: list[str | int]) -> list[str | int]:
        if len(parts) > 1 and parts[0] == "steps" and isinstance(parts[1], int):
            return ["steps", kept[parts[1]], *parts[2:]]
        return parts

    problems = []
    for parts, message in cascade_problems(cascade, capabilities):
        at = where(parts)
        problems.append(Problem(path, ".".join(str(p) for p in at), message, line_of(node, at)))
    problems += _check_templates(path, cascade, node)
    for index, channel in _unavailable(cascade, capabilities):
        at = where(["steps", index, "channel"])
        message = f"no provider is configured for {channel} and the sandbox is off"
        problems.append(Problem(path, ".".join(map(str, at)), message, line_of(node, at)))
    for parts, message in variant_problems(cascade, capabilities):
        problems.append(Problem(path, ".".join(map(str, parts)), message, line_of(node, parts)))
    return problems


def _check_templates(path: Path, cascade: Cascade, node: yaml.Node | None) -> list[Problem]:
    """Compile every variant, then render it with the template's sample data.

    The sample is the cascade's ``samples`` entry for the template, else stand-ins for
    the variables of the default variant: a locale variant that needs other data
    fails here, naming itself, instead of at send time.
    """
    problems = []
    for name in cascade.templates:
        compiled: list[tuple[str, list[str], ChannelTemplate]] = []
        for locale, per_channel in cascade.variants(name).items():
            where = ["templates", name] if locale == cascade.default_locale else []
            for channel, template in per_channel.items():
                parts = [*(where or ["locales", locale, name]), str(channel)]
                try:
                    compile_template(template)
                except TemplateSyntaxError as exc:
                    message = f"template syntax: {exc.message}"
                    problems.append(Problem(path, ".".join(parts), message, line_of(node, parts)))
                    continue
                compiled.append((locale, parts, template))
        given = cascade.samples.get(name)
        source = f"samples.{name}" if given is not None else "the default's variables"
        defaults = [t for locale, _, t in compiled if locale == cascade.default_locale]
        sample = given if given is not None else sample_data(set().union(*map(variables, defaults)))
        for locale, parts, template in compiled:
            field = ".".join(parts)
            try:
                render(template, sample, field)
            except RenderError as exc:
                message = f"locale {locale} does not render with {source}: {exc.message}"
                problems.append(Problem(path, field, message, line_of(node, parts)))
    return problems


def _unavailable(cascade: Cascade, capabilities: Capabilities | None) -> list[tuple[int, Channel]]:
    """(step index, channel) of each channel without a provider (and no sandbox)."""
    if capabilities is None:
        return []
    available = capabilities.available()
    return [
        (index, member.channel)
        for index, step in enumerate(cascade.steps)
        for member in step.members()
        if member.channel not in available
    ]


def load_cascades(
    directory: Path, available: Capabilities | Collection[Channel] | None = None
) -> dict[str, Cascade]:
    """Load every ``*.yaml``/``*.yml`` in ``directory``; all problems at once."""
    if not directory.is_dir():
        raise CascadeConfigError([Problem(directory, "(directory)", "no such directory")])
    cascades: dict[str, Cascade] = {}
    experiments: dict[str, str] = {}  #: experiment name -> the cascade running it
    problems: list[Problem] = []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        try:
            cascade = load_file(path, available)
        except CascadeConfigError as exc:
            problems.extend(exc.problems)
            continue
        if cascade.name in cascades:
            problems.append(Problem(path, "name", f"cascade {cascade.name!r} is defined twice"))
        experiment = cascade.experiment_name
        if experiment is not None and experiment in experiments:
            message = (
                f"experiment {experiment!r} is also run by cascade {experiments[experiment]!r}"
            )
            problems.append(Problem(path, "experiment.name", message))
        if experiment is not None:
            experiments[experiment] = cascade.name
        cascades[cascade.name] = cascade
    if not files:
        problems.append(Problem(directory, "(directory)", "no cascade files (*.yaml) found"))
    if problems:
        raise CascadeConfigError(problems)
    return cascades
