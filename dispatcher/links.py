"""Tracked links: URLs in a message rewritten to short signed links served by Cascade.

With ``CASCADE_LINK_TRACKING=true`` every ``http(s)://`` URL in an attempt's text and
HTML becomes ``<public_url>/l/<token>``, one token per attempt and link. The token is
stateless, so sending writes nothing::

    token = base64url(attempt id (16 bytes) | link index (1 byte) | MAC (10 bytes))  # 36 chars
    MAC   = HMAC-SHA256(key, attempt id | link index)[:10]
    key   = HMAC-SHA256(receipt secret, "tracked-links")

The original URL is not stored: a click recovers it from the notification's stored
content (already rendered for this customer and channel), by finding its links again in
the same order (:func:`find_links`). That is one primary-key read of a row the click
needs anyway, against one extra insert per sent message for a table of links.

A token of the same length always makes a tracked URL of the same length, so an SMS's
segments are counted on the text as it will be sent (:func:`sized_text`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Iterator
from html import unescape

#: A URL as found in text (it ends at a space, a quote or an angle bracket).
URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
#: Punctuation that ends a sentence rather than the URL ("see https://x.example/a.").
_TRAILING = ".,;:!?)]}'\"*"
#: The link index is one byte: links after the 256th in one message stay untracked.
MAX_LINKS = 256
_MAC_BYTES = 10
#: Length of a token: base64url of 16 + 1 + 10 bytes, unpadded.
TOKEN_LENGTH = 36
#: The path tracked links are served under.
PATH = "/l/"


def link_key(receipt_secret: str) -> bytes:
    """The MAC key of link tokens, derived from the receipt secret (one purpose, one key)."""
    return hmac.new(receipt_secret.encode(), b"tracked-links", hashlib.sha256).digest()


def make_token(key: bytes, attempt_id: str, index: int) -> str:
    body = uuid.UUID(attempt_id).bytes + bytes([index])
    mac = hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()


def read_token(key: bytes, token: str) -> tuple[str, int] | None:
    """(attempt id, link index) of a genuine token; None for anything else (forged,
    truncated, another secret's). The MAC is compared in constant time."""
    if len(token) != TOKEN_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    body, mac = raw[:17], raw[17:]
    expected = hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    return str(uuid.UUID(bytes=body[:16])), body[16]


#: Closing brackets kept at a URL's end when the URL opened them (``/wiki/Foo_(bar)``).
_CLOSERS = {")": "(", "]": "[", "}": "{"}
#: A tag or comment of an HTML part; the text between them is searched like plain text.
_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.DOTALL)
#: The ``href`` of an ``<a>`` or ``<area>`` tag: the only attribute a person clicks. An
#: ``<img src>`` or ``<link href>`` is fetched when the mail is opened: never tracked.
_HREF = re.compile(
    r"""^<(?:a|area)\b[^>]*?\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""",
    re.IGNORECASE | re.DOTALL,
)
_SCHEME = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)
#: A link found in a part: (start, end) in the part as written, and its target URL.
Span = tuple[int, int, str]


def _trim(url: str) -> str:
    """``url`` without the sentence punctuation after it ("see https://x.example/a.");
    a closing bracket stays when the URL opened it."""
    while url and url[-1] in _TRAILING:
        opener = _CLOSERS.get(url[-1])
        if opener is not None and url.count(opener) >= url.count(url[-1]):
            break
        url = url[:-1]
    return url


def _text_spans(text: str, offset: int = 0, *, html: bool = False) -> Iterator[Span]:
    """The URLs of plain text (or of the text between an HTML part's tags)."""
    if "://" not in text:
        return
    for match in URL.finditer(text):
        url = _trim(match.group(0))
        if _SCHEME.match(url):
            start = offset + match.start()
            yield start, start + len(url), unescape(url) if html else url


def _html_spans(html: str) -> Iterator[Span]:
    """The links of an HTML part in document order: URLs in its text, and the whole
    ``href`` value of its ``<a>``/``<area>`` tags (entities decoded); other attributes
    (``src``, ``<link href>``, ``title``) are left alone."""
    if "://" not in html:
        return
    position = 0
    for tag in _TAG.finditer(html):
        yield from _text_spans(html[position : tag.start()], position, html=True)
        position = tag.end()
        href = _HREF.match(tag.group(0))
        if href is None:
            continue
        group = next(i for i in (1, 2, 3) if href.group(i) is not None)
        url = unescape(href.group(group)).strip()
        if _SCHEME.match(url):
            yield tag.start() + href.start(group), tag.start() + href.end(group), url
    yield from _text_spans(html[position:], position, html=True)


def _ours(url: str, own: str) -> bool:
    """Under our own public URL (not merely starting with its characters)."""
    return bool(own) and url.startswith(own) and (len(url) == len(own) or url[len(own)] in "/?#")


def find_links(text: str | None, html: str | None, own: str = "") -> list[str]:
    """The distinct target URLs of a message, in order: its text's, then its HTML's
    (``&amp;`` in an ``href`` is ``&``). URLs under ``own`` (our public URL) are ours."""
    links: dict[str, None] = {}
    for *_, url in (*_text_spans(text or ""), *_html_spans(html or "")):
        links.setdefault(url, None)
    return [url for url in links if not _ours(url, own)][:MAX_LINKS]


def tracked_url(base: str, key: bytes, attempt_id: str, index: int) -> str:
    return f"{base.rstrip('/')}{PATH}{make_token(key, attempt_id, index)}"


def _replace(part: str, spans: Iterable[Span], mapping: dict[str, str]) -> str:
    """``part`` with each span whose URL ``mapping`` has replaced by its new URL."""
    pieces, position = [], 0
    for start, end, url in spans:
        target = mapping.get(url)
        if target is not None:
            pieces += [part[position:start], target]
            position = end
    return "".join(pieces) + part[position:] if pieces else part


def rewrite(
    text: str, html: str | None, *, base: str, secret: str, attempt_id: str
) -> tuple[str, str | None]:
    """``text`` and ``html`` with each link replaced by its tracked URL. Costs one
    substring test when there is no URL."""
    links = find_links(text, html, base.rstrip("/"))
    if not links:
        return text, html
    key = link_key(secret)
    try:
        mapping = {url: tracked_url(base, key, attempt_id, i) for i, url in enumerate(links)}
    except ValueError:  # not a UUID: no attempt row made it, nothing to track
        return text, html
    return (
        _replace(text, _text_spans(text), mapping),
        _replace(html, _html_spans(html), mapping) if html else html,
    )


def sized_text(text: str, base: str) -> str:
    """``text`` with each link replaced by a stand-in as long as its tracked URL (same
    characters' encoding: base64url is GSM-7), for counting an SMS's segments."""
    links = find_links(text, None, base.rstrip("/"))
    if not links:
        return text
    stand_in = base.rstrip("/") + PATH + "x" * TOKEN_LENGTH
    return _replace(text, _text_spans(text), dict.fromkeys(links, stand_in))
