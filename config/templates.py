"""Message templates: Jinja2 in a sandbox, strict about missing variables.

A template that refers to a variable the request did not supply is an error
(a 422 at the API), never a half-rendered message.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class ChannelTemplate(BaseModel):
    """What one channel shows: title/subject, body, optional HTML or a provider template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None = None
    body: str = ""
    html: str | None = None
    template: str | None = None  #: provider-side template name (WhatsApp)
    language: str | None = None
    params: tuple[str, ...] = ()  #: names of data fields, in order


class RenderError(Exception):
    """A template could not be rendered with the data given."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def compile_template(template: ChannelTemplate) -> list[Template]:
    """Compile every text part; raises ``TemplateSyntaxError``."""
    parts = [template.title, template.body, template.html]
    return [_ENV.from_string(part) for part in parts if part]


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
            "params": tuple(str(data[p]) for p in template.params),
        }
    )
