"""Templates render strictly, in a sandbox."""

from __future__ import annotations

import pytest

from config.templates import ChannelTemplate, RenderError, render


def test_render_fills_every_part():
    """Title, body, HTML and provider-template parameters are rendered from data."""
    template = ChannelTemplate(
        title="Order {{ id }}",
        body="Now {{ status }}",
        html="<b>{{ status }}</b>",
        template="order_update",
        params=("id", "status"),
    )
    out = render(template, {"id": 42, "status": "shipped"}, "data")
    assert (out.title, out.body, out.html, out.params) == (
        "Order 42",
        "Now shipped",
        "<b>shipped</b>",
        ("42", "shipped"),
    )


@pytest.mark.parametrize(
    ("template", "field"),
    [
        (ChannelTemplate(body="Hi {{ name }}"), "data.body"),
        (ChannelTemplate(title="{{ missing }}", body="x"), "data.title"),
        (ChannelTemplate(body="x", params=("absent",)), "data.params"),
    ],
)
def test_missing_data_is_an_error(template: ChannelTemplate, field: str):
    """A variable the data does not supply is an error naming the part, never a blank."""
    with pytest.raises(RenderError) as caught:
        render(template, {}, "data")
    assert caught.value.field == field
    assert "undefined" in caught.value.message


def test_sandbox_blocks_unsafe_attributes():
    """Template code cannot reach Python internals."""
    with pytest.raises(RenderError):
        render(ChannelTemplate(body="{{ ''.__class__.__mro__[1].__subclasses__() }}"), {}, "data")
