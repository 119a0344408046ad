"""Message templates: Jinja2 in a sandbox, strict about missing variables.

A template that refers to a variable the request did not supply is an error
(a 422 at the API), never a half-rendered message. Templates come in locale
variants; :func:`locale_chain` is the fallback order for a customer's locale
(``pt-BR`` → ``pt``, then the cascade's default).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from config.problems import not_a_bool

#: A BCP 47-style tag as customers and cascade files give it: ``ru``, ``pt-BR``, ``pt_BR``.
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class ChannelTemplate(BaseModel):
    """What one channel shows: title/subject, body, optional HTML or a provider template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None = None
    body: str = ""
    html: str | None = None
    short: str | None = None  #: SMS: a shorter body, used when ``body`` exceeds max_segments
    template: str | None = None  #: provider-side template name (WhatsApp)
    language: str | None = None  #: the provider template's language code (``en_US``, ``ru``)
    params: tuple[str, ...] = ()  #: names of data fields, in order
    #: The index of the approved template's quick-reply button that confirms reading
    #: (WhatsApp): Cascade sets its payload to the signed ``ack:`` reference.
    ack_button: Annotated[int | None, BeforeValidator(not_a_bool)] = Field(default=None, ge=0, le=9)

    @model_validator(mode="after")
    def _button_needs_a_template(self) -> ChannelTemplate:
        if self.ack_button is not None and not self.template:
            raise ValueError("ack_button names a button of the approved template: set template")
        return self


class RenderError(Exception):
    """A template could not be rendered with the data given."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def compile_template(template: ChannelTemplate) -> list[Template]:
    """Compile every text part; raises ``TemplateSyntaxError``."""
    parts = [template.title, template.body, template.html, template.short]
    return [_ENV.from_string(part) for part in parts if part]


def variables(template: ChannelTemplate) -> set[str]:
    """The data names a template uses (its text parts and its provider-template params)."""
    names = set(template.params)
    for part in (template.title, template.body, template.html, template.short):
        if part:
            names |= meta.find_undeclared_variables(_ENV.parse(part))
    return names


def normalize_locale(tag: str) -> str:
    """``pt_BR`` and ``PT-br`` are both ``pt-br``: locales compare case-insensitively."""
    return tag.strip().replace("_", "-").lower()


def locale_chain(tag: str | None) -> list[str]:
    """The variants to try for a customer's locale, most specific first.

    ``pt-BR`` → ``["pt-br", "pt"]``; ``zh-Hant-TW`` → ``["zh-hant-tw", "zh-hant", "zh"]``;
    None or an empty tag → ``[]`` (the cascade's default variant).
    """
    if not tag or not tag.strip():
        return []
    parts = normalize_locale(tag).split("-")
    return ["-".join(parts[:end]) for end in range(len(parts), 0, -1)]


def render(template: ChannelTemplate, data: dict[str, Any], field: str) -> ChannelTemplate:
    """Render all parts of ``template`` with ``data``; raise :class:`RenderError`."""

    def one(part: str | None, name: str) -> str | None:
        if part is None:
            return None
        try:
            return _ENV.from_string(part).render(**data)
        except UndefinedError as exc:
            raise RenderError(f"{field}.{name}", f"missing data: {exc.message}") from None
        except TemplateError as exc:
            raise RenderError(f"{field}.{name}", str(exc)) from None

    for param in template.params:
        if param not in data:
            raise RenderError(f"{field}.params", f"missing data: {param!r} is undefined")
    return template.model_copy(
        update={
            "title": one(template.title, "title"),
            "body": one(template.body, "body") or "",
            "html": one(template.html, "html"),
            "short": one(template.short, "short"),
            "params": tuple(str(data[p]) for p in template.params),
        }
    )


class Sample:
    """Stand-in data for rendering a template when the cascade gives no ``samples``.

    Any attribute, item or number conversion works, so only what the data cannot
    explain fails: a variable the default variant does not use, a syntax the sandbox
    refuses, a filter that raises.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __str__(self) -> str:
        return f"<{self._name}>"

    def __getattr__(self, attr: str) -> Sample:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Sample(f"{self._name}.{attr}")

    def __getitem__(self, key: object) -> Sample:
        return Sample(f"{self._name}[{key}]")

    def __iter__(self) -> Any:
        return iter(())

    def __int__(self) -> int:
        return 1

    def __float__(self) -> float:
        return 1.0

    def __round__(self, ndigits: int | None = None) -> int:
        return 1

    def __format__(self, spec: str) -> str:
        return str(self)


def sample_data(names: set[str]) -> dict[str, Any]:
    """One :class:`Sample` per data name."""
    return {name: Sample(name) for name in sorted(names)}
