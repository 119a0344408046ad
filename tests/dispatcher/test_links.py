"""Tracked links without a database: finding and rewriting URLs, the signed token, the
stand-in used to size an SMS, and the table of requests that are not clicks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.capabilities import Capabilities
from config.cascade_files import CascadeConfigError, load_file
from config.settings import Settings
from dispatcher.links import (
    TOKEN_LENGTH,
    find_links,
    link_key,
    make_token,
    read_token,
    rewrite,
    sized_text,
)
from dispatcher.previews import PREVIEW_AGENTS, not_a_click
from dispatcher.runtime import build_router, capabilities
from providers.base import Channel, Signal
from providers.segments import segments

BASE = "https://cascade.example"
SECRET = "test-receipt-secret"
KEY = link_key(SECRET)
ATTEMPT = "9d42c1e0-5b7a-4f3e-9a51-0c8e2f6b7d13"
OTHER = "0f0e0d0c-0b0a-4909-8807-060504030201"


def tracked(index: int) -> str:
    return f"{BASE}/l/{make_token(KEY, ATTEMPT, index)}"


@pytest.mark.parametrize(
    ("text", "html", "links"),
    [
        ("Your parcel is at the door", None, []),
        ("See https://shop.example/o/42.", None, ["https://shop.example/o/42"]),
        (
            "Track (https://t.example/a?x=1&y=2), or http://b.example!",
            None,
            ["https://t.example/a?x=1&y=2", "http://b.example"],
        ),
        ("twice https://a.example and https://a.example", None, ["https://a.example"]),
        (
            "Open https://a.example/x",
            '<a href="https://a.example/x">x</a> <a href="https://b.example/?p=1&amp;q=2">b</a>',
            ["https://a.example/x", "https://b.example/?p=1&q=2"],
        ),
        ("ours https://cascade.example/v1/receipts stays", None, []),
        ("not a link: https:// alone, ftp://files.example", None, []),
        (  # a bracket the URL opened is part of it; one it did not open ends the sentence
            "Read https://en.wikipedia.org/wiki/Foo_(bar) now (or https://x.example/a).",
            None,
            ["https://en.wikipedia.org/wiki/Foo_(bar)", "https://x.example/a"],
        ),
        (  # an href's whole value is the link, whatever it ends with or holds
            "",
            '<a href="https://en.wikipedia.org/wiki/Foo_(bar)">w</a><a href="https://x.example/a.">'
            "a</a><a href=\"https://x.example/it's\">i</a><A HREF='https://x.example/q?a=1'>q</A>",
            [
                "https://en.wikipedia.org/wiki/Foo_(bar)",
                "https://x.example/a.",
                "https://x.example/it's",
                "https://x.example/q?a=1",
            ],
        ),
        (  # fetched when the mail is opened, or never clicked: not links
            "",
            '<img src="https://img.example/logo.png"><link href="https://css.example/s.css">'
            '<a title="https://t.example/" href="https://shop.example/o/1">o</a>',
            ["https://shop.example/o/1"],
        ),
        (  # only our own origin is ours, not a host or port that begins like it
            "https://cascade.example https://cascade.example?x https://cascade.example.evil.example/p"
            " https://cascade.example:8443/x",
            None,
            ["https://cascade.example.evil.example/p", "https://cascade.example:8443/x"],
        ),
        (  # CSS, scripts and comments are not text a person clicks
            "",
            "<style>.h{background:url(https://img.example/h.png)} @import 'https://css.example/a';"
            "</style><script>var u='https://js.example/x';</script><!-- https://c.example/ -->"
            '<STYLE type="text/css">a{b:url(https://img.example/2.png)}</STYLE>'
            "<p>Read https://shop.example/a</p>",
            ["https://shop.example/a"],
        ),
        (  # an unquoted href may hold '='; attributes need no space between them
            "",
            "<a href=https://shop.example/t?order=7>t</a><a/href='https://x.example/1'>1</a>"
            '<a x="1"href="https://x.example/2">2</a>',
            ["https://shop.example/t?order=7", "https://x.example/1", "https://x.example/2"],
        ),
        (  # a title that mentions href= is not the href; a '>' inside a quoted value is no end
            "",
            '<a title="see href=https://evil.example/t >" href="https://shop.example/real">r</a>',
            ["https://shop.example/real"],
        ),
        (  # entities: an encoded href is decoded; in text, &nbsp; &lt; &gt; &quot; end a URL
            "",
            '<a href="https&#58;//x.example/e?a=1&amp;b=2">e</a> at https://shop.example/t&nbsp;today'
            " &lt;https://shop.example/help&gt; &quot;https://q.example/x&quot;"
            " https://shop.example/s?a=1&amp;b=2.",
            [
                "https://x.example/e?a=1&b=2",
                "https://shop.example/t",
                "https://shop.example/help",
                "https://q.example/x",
                "https://shop.example/s?a=1&b=2",
            ],
        ),
        (  # Outlook's bulletproof button; our own URL in capitals is still ours
            "HTTPS://CASCADE.EXAMPLE/l/abc",
            '<v:roundrect href="https://shop.example/btn" style="x"></v:roundrect>',
            ["https://shop.example/btn"],
        ),
        (  # a long run of brackets: counted once, not once per bracket stripped
            "x https://a.example/x" + ")" * 65_000,
            None,
            ["https://a.example/x"],
        ),
    ],
    ids=[
        "none",
        "sentence-dot",
        "brackets-and-query",
        "distinct",
        "text-then-html",
        "ours",
        "no-host-or-scheme",
        "balanced-brackets",
        "whole-href",
        "not-clicked-attributes",
        "own-origin-only",
        "not-in-style-script-comments",
        "unquoted-and-unspaced-attributes",
        "href-not-in-title",
        "entities",
        "vml-button-and-own-url-in-capitals",
        "bracket-run",
    ],
)
def test_find_links(text: str, html: str | None, links: list[str]):
    """Links in order, distinct, sentence punctuation and our own URLs left out."""
    assert find_links(text, html, BASE) == links


def test_rewrite_text_and_html():
    """Each link becomes its tracked URL, one per link, the same in text and HTML."""
    text = "Order 42: https://shop.example/o/42. Help: https://help.example"
    html = '<p><a href="https://shop.example/o/42?a=1&amp;b=2">o</a> https://help.example</p>'
    new_text, new_html = rewrite(text, html, base=BASE, secret=SECRET, attempt_id=ATTEMPT)
    assert new_text == f"Order 42: {tracked(0)}. Help: {tracked(1)}"
    assert new_html == f'<p><a href="{tracked(2)}">o</a> {tracked(1)}</p>'


def test_rewrite_leaves_what_is_not_clicked_and_keeps_each_href_whole():
    """The logo stays as written (opening the mail is not a click); the href ending in a
    bracket or a dot is replaced whole, so the customer's link works."""
    html = (
        '<img src="https://img.example/logo.png"> <a href="https://en.wikipedia.org/wiki/F_(b)">'
        'w</a> <a href="https://x.example/a.">a</a>'
    )
    _, new_html = rewrite("", html, base=BASE, secret=SECRET, attempt_id=ATTEMPT)
    assert new_html == (
        f'<img src="https://img.example/logo.png"> <a href="{tracked(0)}">w</a> '
        f'<a href="{tracked(1)}">a</a>'
    )
    text, _ = rewrite(
        "Wiki: https://en.wikipedia.org/wiki/F_(b).",
        None,
        base=BASE,
        secret=SECRET,
        attempt_id=ATTEMPT,
    )
    assert text == f"Wiki: {tracked(0)}."


def test_rewrite_keeps_entities_around_links_and_odd_attributes_intact():
    """What surrounds a link stays as written: the entity after it, the title that
    mentions a URL, the CSS; an unquoted href with '=' is replaced whole."""
    html = (
        '<style>b{background:url(https://img.example/b.png)}</style><p title="https://t.example/">'
        "Track: https://shop.example/t&nbsp;today, &lt;https://shop.example/help&gt;</p>"
        "<a href=https://shop.example/t?order=7>o</a>"
    )
    _, new_html = rewrite("", html, base=BASE, secret=SECRET, attempt_id=ATTEMPT)
    assert new_html == (
        '<style>b{background:url(https://img.example/b.png)}</style><p title="https://t.example/">'
        f"Track: {tracked(0)}&nbsp;today, &lt;{tracked(1)}&gt;</p>"
        f"<a href={tracked(2)}>o</a>"
    )


@pytest.mark.parametrize(
    ("text", "html"),
    [("no links here", None), ("no links", "<b>none</b>"), ("", None)],
)
def test_rewrite_without_links_changes_nothing(text: str, html: str | None):
    """No URL: the very same strings come back."""
    new_text, new_html = rewrite(text, html, base=BASE, secret=SECRET, attempt_id=ATTEMPT)
    assert new_text is text
    assert new_html is html


def test_token_round_trip():
    """A token names its attempt and link, is short and URL-safe."""
    token = make_token(KEY, ATTEMPT, 7)
    assert len(token) == TOKEN_LENGTH
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert read_token(KEY, token) == (ATTEMPT, 7)


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD = make_token(KEY, ATTEMPT, 0)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_encode(_raw(GOOD)[:16] + b"\x01" + _raw(GOOD)[17:]), id="other link"),
        pytest.param(_encode(_raw(make_token(KEY, OTHER, 0))[:17] + _raw(GOOD)[17:]), id="other"),
        pytest.param(make_token(link_key("another-secret"), ATTEMPT, 0), id="other secret"),
        pytest.param(GOOD[:-1], id="truncated"),
        pytest.param(GOOD[:-2] + ("AA" if GOOD[-2:] != "AA" else "BB"), id="mac changed"),
        pytest.param("!" * TOKEN_LENGTH, id="not base64"),
        pytest.param("", id="empty"),
    ],
)
def test_forged_tokens_are_refused(token: str):
    """Anything but a token we signed reads as None."""
    assert read_token(KEY, token) is None


def test_sms_is_sized_with_its_tracked_links():
    """The stand-in has the tracked URL's length, so segments match what is sent."""
    text = "Your code is ready: https://s.example/c?id=1 " + "x" * 90
    sent, _ = rewrite(text, None, base=BASE, secret=SECRET, attempt_id=ATTEMPT)
    assert len(sized_text(text, BASE)) == len(sent)
    assert segments(sized_text(text, BASE)) == segments(sent)
    assert segments(text).count == 1
    assert segments(sent).count == 2


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SENT = NOW - timedelta(minutes=5)
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile"


@pytest.mark.parametrize(
    ("method", "agent", "sent_at", "reason"),
    [
        ("GET", BROWSER, SENT, None),
        ("HEAD", BROWSER, SENT, "method"),
        ("OPTIONS", BROWSER, SENT, "method"),
        ("GET", None, SENT, "no_user_agent"),
        ("GET", "  ", SENT, "no_user_agent"),
        ("GET", BROWSER, NOW - timedelta(milliseconds=999), "too_soon"),
        ("GET", BROWSER, NOW - timedelta(seconds=1), None),
        ("GET", BROWSER, None, "too_soon"),
        ("GET", "TelegramBot (like TwitterBot)", SENT, "preview_agent"),
        ("GET", "WhatsApp/2.23.20.0 A", SENT, "preview_agent"),
        ("GET", "facebookexternalhit/1.1", SENT, "preview_agent"),
        (
            "GET",
            "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
            SENT,
            "preview_agent",
        ),
        (
            "GET",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            SENT,
            "preview_agent",
        ),
        ("GET", "Mozilla/5.0 (Windows NT 10.0) BingPreview/1.0b", SENT, "preview_agent"),
        ("GET", "Mozilla/5.0 (Trend Micro InterScan URL check)", SENT, "preview_agent"),
        (
            "GET",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)",
            SENT,
            "preview_agent",
        ),
    ],
)
def test_not_a_click(method: str, agent: str | None, sent_at: datetime | None, reason: str | None):
    """HEAD/OPTIONS, no or a preview User-Agent, within a second of the send: not clicks."""
    assert not_a_click(method, agent, sent_at, NOW) == reason


@pytest.mark.parametrize("marker", PREVIEW_AGENTS)
def test_every_listed_agent_is_filtered(marker: str):
    """Each listed agent, in any case, inside a longer User-Agent, is not a click."""
    assert not_a_click("GET", f"Mozilla/5.0 ({marker.upper()}/1.0)", SENT, NOW) == "preview_agent"


def test_capabilities_add_clicked_only_when_tracking_is_on():
    """Link tracking lets every available channel report 'clicked'; off, the refusal
    names the setting."""
    base = Capabilities.static([Channel.EMAIL, Channel.SMS])
    on = base.with_signal(Signal.CLICKED, enabled=True, hint="CASCADE_LINK_TRACKING=true")
    off = base.with_signal(Signal.CLICKED, enabled=False, hint="CASCADE_LINK_TRACKING=true")
    assert on.can(Channel.SMS, Signal.CLICKED)
    assert on.can(Channel.EMAIL, Signal.CLICKED)
    assert on.can(Channel.SMS, Signal.DELIVERED)
    assert not off.can(Channel.SMS, Signal.CLICKED)
    assert "unless CASCADE_LINK_TRACKING=true" in off.refusal(Channel.SMS, Signal.CLICKED)


def test_push_reports_clicked_without_link_tracking():
    """A push is tapped, not followed: the app reports 'clicked' whether or not links are
    tracked, so a push step may always wait for it; other channels need tracking."""
    off = Capabilities.static([Channel.PUSH, Channel.EMAIL]).with_signal(
        Signal.CLICKED, enabled=False, hint="CASCADE_LINK_TRACKING=true"
    )
    assert off.can(Channel.PUSH, Signal.CLICKED)
    assert not off.can(Channel.EMAIL, Signal.CLICKED)


def test_wait_for_clicked_needs_tracked_links(tmp_path: Path):
    """A step that waits for 'clicked' but turns its links off is refused, named."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nsteps:\n"
        "  - {channel: email, wait_for: clicked, timeout: 1m, track_links: false}\n"
    )
    on = Capabilities.static().with_signal(Signal.CLICKED, enabled=True, hint="")
    with pytest.raises(CascadeConfigError) as raised:
        load_file(path, on)
    assert "steps.0.wait_for: cannot wait for 'clicked' with track_links: false" in str(
        raised.value
    )


def test_wait_for_clicked_needs_link_tracking(tmp_path: Path):
    """Without link tracking a step waiting for 'clicked' fails at startup, naming the
    setting that would allow it; with it, the same file loads."""
    path = tmp_path / "clicks.yaml"
    path.write_text("name: clicks\nsteps:\n  - {channel: email, wait_for: clicked, timeout: 1m}\n")
    for tracking in (False, True):
        settings = Settings(_env_file=None, link_tracking=tracking, cascades_dir=tmp_path)
        checked = capabilities(settings, build_router(settings, None))
        if tracking:
            assert load_file(path, checked).steps[0].wait_for is Signal.CLICKED
            continue
        with pytest.raises(CascadeConfigError) as raised:
            load_file(path, checked)
        assert "email cannot report 'clicked' unless CASCADE_LINK_TRACKING=true" in str(
            raised.value
        )
