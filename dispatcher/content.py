"""Message content: every locale variant rendered, the customer's chosen, SMS sized.

A request's template is rendered in *every* locale variant of the cascade when the
notification is accepted, so a variable missing from any variant is a 422 naming
it, whatever the customer's locale (the data contract does not depend on who gets
the message). The customer's locale then picks one variant: the most specific
match first (``pt-BR`` → ``pt``), else the cascade's ``default_locale``. Each
channel's part records the locale it came from; an SMS part also records its
encoding and segment count (:mod:`providers.segments`), and when the cascade caps
the SMS step with ``max_segments`` a template's ``short`` text is used instead of a
body that is too long. A part still over the cap is refused at send time
(:func:`refusal`), never sent and billed. With link tracking on (``link_base``: the
public URL), an SMS is sized as it will be sent: each URL as long as its tracked link.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.cascades import Cascade, Templates
from config.templates import ChannelTemplate, RenderError, locale_chain, render
from dispatcher.customers import FieldError
from dispatcher.links import sized_text
from dispatcher.schemas import NotificationIn
from providers.base import Channel
from providers.segments import segments

#: Key of the other locales' parts in content rendered for many customers (broadcasts).
LOCALES = "locales"
#: Error code of an SMS refused for exceeding its step's ``max_segments``.
TOO_MANY_SEGMENTS = "too_many_segments"


def render_variants(
    cascade: Cascade,
    body: NotificationIn,
    channels: list[Channel],
    link_base: str | None = None,
) -> dict[str, Any]:
    """The default variant's part per channel, plus ``locales``: locale → parts.

    Raises :class:`FieldError` (a 422) naming the variable and the variant that misses it.
    """
    variants: Mapping[str | None, Templates] = {None: {}}
    if body.template is not None:
        if body.template not in cascade.templates:
            known = ", ".join(sorted(cascade.templates)) or "none"
            raise FieldError(
                "template", f"cascade has no template {body.template!r} (known: {known})"
            )
        variants = {str(k): v for k, v in cascade.variants(body.template).items()}
    default = cascade.default_locale if body.template is not None else None
    rendered = {
        locale: _render_one(
            cascade, body, channels, templates, locale, locale == default, link_base
        )
        for locale, templates in variants.items()
    }
    parts: dict[str, Any] = dict(rendered.pop(default))
    others = {str(locale): variant for locale, variant in rendered.items()}
    if others:
        parts[LOCALES] = others
    return parts


def for_locale(rendered: Mapping[str, Any], locale: str | None) -> dict[str, dict[str, Any]]:
    """The parts for a customer's ``locale``: its most specific variant, else the default."""
    others: Mapping[str, Any] = rendered.get(LOCALES) or {}
    for tag in locale_chain(locale):
        if tag in others:
            return dict(others[tag])
    return {key: value for key, value in rendered.items() if key != LOCALES}


def render_content(
    cascade: Cascade,
    body: NotificationIn,
    channels: list[Channel],
    locale: str | None,
    link_base: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-channel content for one customer, rendered now: a missing variable is a 422."""
    return for_locale(render_variants(cascade, body, channels, link_base), locale)


def attempt_fields(part: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an attempt records about its content: locale, SMS encoding and segments."""
    part = part or {}
    return {
        "locale": part.get("locale"),
        "encoding": part.get("encoding"),
        "segments": part.get("segments"),
    }


def billed_units(attempt: Any) -> int:
    """Messages a send of this attempt is billed as: its SMS segments, else one."""
    return int(attempt.segments or 1)


def refusal(part: Mapping[str, Any] | None) -> str | None:
    """Why this content must not be sent (an SMS over its step's cap), or None."""
    if not part:
        return None
    cap, count = part.get("max_segments"), part.get("segments")
    if cap is not None and count is not None and int(count) > int(cap):
        return TOO_MANY_SEGMENTS
    return None


def _render_one(
    cascade: Cascade,
    body: NotificationIn,
    channels: list[Channel],
    templates: Templates,
    locale: str | None,
    is_default: bool,
    link_base: str | None = None,
) -> dict[str, dict[str, Any]]:
    content: dict[str, dict[str, Any]] = {}
    for channel in channels:
        part = _inline(body, channel)
        short: str | None = None
        if part is None:
            template = templates.get(channel) or templates.get("any")
            if template is None:
                raise FieldError("content", f"no content for channel {channel}")
            try:
                rendered = render(template, body.data, f"data (template {channel})")
            except RenderError as exc:
                variant = "" if is_default else f", locale {locale}"
                raise FieldError(
                    "data", f"{exc.message} in the {channel} template{variant}"
                ) from None
            part, short = {**_from_template(rendered), "locale": locale}, rendered.short
        if channel == Channel.SMS:
            tracked = link_base if cascade.tracks_links(channel) else None
            part = _sized(part, cascade.max_segments(channel), short, tracked)
        content[channel.value] = part
    return content


def _sized(
    part: dict[str, Any], cap: int | None, short: str | None, link_base: str | None = None
) -> dict[str, Any]:
    """Encoding and segments of an SMS as sent (tracked links included when ``link_base``);
    the ``short`` text when the body is over ``cap``."""

    def sent(text: str) -> str:
        return sized_text(text, link_base) if link_base else text

    size = segments(sent(part.get("text") or ""))
    if cap is not None and size.count > cap and short:
        part, size = {**part, "text": short}, segments(sent(short))
    sized = {**part, "encoding": size.encoding.value, "segments": size.count}
    return {**sized, "max_segments": cap} if cap is not None else sized


def _inline(body: NotificationIn, channel: Channel) -> dict[str, Any] | None:
    if body.content is None:
        return None
    override = body.content.channels.get(channel)
    title = (override.title if override else None) or body.content.title
    text = (override.text if override else None) or body.content.text
    html = (override.html if override else None) or body.content.html
    if not text:
        if body.template is not None:
            return None
        raise FieldError(f"content.channels.{channel}.text", f"no text for channel {channel}")
    return {"title": title, "text": text, "html": html, "template": None, "locale": None}


def _from_template(template: ChannelTemplate) -> dict[str, Any]:
    provider_template = None
    if template.template:
        provider_template = {
            "name": template.template,
            "language": template.language or "en",
            "params": list(template.params),
            "ack_button": template.ack_button,
        }
    return {
        "title": template.title,
        "text": template.body,
        "html": template.html,
        "template": provider_template,
    }
