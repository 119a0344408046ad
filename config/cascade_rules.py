"""Cross-field rules of a cascade file, all reported at once as (field path, message).

The schema (:mod:`config.cascades`) checks each field; these check fields against each
other: a channel twice, a signal a channel cannot report, a TTL shorter than the steps,
templates and locale variants that do not cover every channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from config.capabilities import Capabilities
from config.durations import format_duration
from providers.base import Channel, Signal

if TYPE_CHECKING:
    from config.cascades import Cascade
    from config.templates import ChannelTemplate


def cascade_problems(
    cascade: Cascade, capabilities: Capabilities | None = None
) -> list[tuple[list[str | int], str]]:
    """Cross-field rules, all reported at once as (field path, message); the signals a
    step waits for are checked against ``capabilities`` (default provider settings when
    None)."""
    capabilities = capabilities or Capabilities.static()
    problems: list[tuple[list[str | int], str]] = []
    seen: set[Channel] = set()
    for index, step in enumerate(cascade.steps):
        for member in step.members():
            if member.channel in seen:
                problems.append((["steps", index, "channel"], f"{member.channel} appears twice"))
            seen.add(member.channel)
            wait_for = member.wait_for or step.wait_for
            if wait_for is Signal.CLICKED and not step.track_links:
                message = "cannot wait for 'clicked' with track_links: false (no tracked links)"
                problems.append((["steps", index, "wait_for"], message))
            elif not capabilities.can(member.channel, wait_for):
                message = capabilities.refusal(member.channel, wait_for)
                problems.append((["steps", index, "wait_for"], message))
    total = sum((step.timeout for step in cascade.steps), timedelta(0))
    if cascade.ttl < total:
        problems.append(
            (
                ["ttl"],
                f"{format_duration(cascade.ttl)} is shorter than the sum of the step timeouts "
                f"({format_duration(total)}): later steps would never be tried",
            )
        )
    for name, per_channel in cascade.templates.items():
        for channel in cascade.channels():
            if channel not in per_channel and "any" not in per_channel:
                problems.append((["templates", name], f"no template for channel {channel}"))
        problems += _provider_template_problems(["templates", name], per_channel)
    for locale, named in cascade.locales.items():
        for name, per_channel in named.items():
            problems += _provider_template_problems(["locales", locale, name], per_channel)
    problems += _locale_problems(cascade)
    return problems


#: Template fields that name a provider-side (approved) template: WhatsApp only.
_PROVIDER_TEMPLATE_FIELDS = ("template", "language", "params", "ack_button")


def _provider_template_problems(
    path: list[str | int], per_channel: Mapping[Channel | Literal["any"], ChannelTemplate]
) -> list[tuple[list[str | int], str]]:
    """A provider template's fields on another channel would be ignored: say so."""
    problems: list[tuple[list[str | int], str]] = []
    for channel, template in per_channel.items():
        if channel == Channel.WHATSAPP:
            continue
        for field in _PROVIDER_TEMPLATE_FIELDS:
            if field in template.model_fields_set:
                message = (
                    f"only whatsapp has approved templates: {field} would be ignored on {channel}"
                )
                problems.append(([*path, str(channel), field], message))
    return problems


def _locale_problems(cascade: Cascade) -> list[tuple[list[str | int], str]]:
    """Each locale variant names a template the default has, and covers every channel."""
    problems: list[tuple[list[str | int], str]] = []
    if cascade.default_locale in cascade.locales:
        problems.append(
            (
                ["locales", cascade.default_locale],
                f"{cascade.default_locale} is the default_locale: its text is 'templates'",
            )
        )
    for locale, named in cascade.locales.items():
        for name, per_channel in named.items():
            if name not in cascade.templates:
                problems.append(
                    (
                        ["locales", locale, name],
                        f"template {name!r} has no default variant in 'templates'",
                    )
                )
            for channel in cascade.channels():
                if channel not in per_channel and "any" not in per_channel:
                    problems.append(
                        (
                            ["locales", locale, name],
                            f"locale {locale} does not cover channel {channel}",
                        )
                    )
    for name in cascade.samples:
        if name not in cascade.templates:
            problems.append((["samples", name], f"no template {name!r} to sample"))
    return problems
