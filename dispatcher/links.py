"""Tracked links: URLs in a message rewritten to short signed links served by Cascade.

With ``CASCADE_LINK_TRACKING=true`` every link of an attempt's text and HTML (what is a
link: :mod:`dispatcher.link_spans`) becomes ``<public_url>/l/<token>``, one token per
attempt and link. The token is stateless, so sending writes nothing::

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
import uuid
from collections.abc import Iterable

from dispatcher.link_spans import Span, html_spans, text_spans

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


def _ours(url: str, own: str) -> bool:
    """Under our own public URL (its origin, in any case; not a host that begins like it)."""
    url, own = url.lower(), own.lower()
    return bool(own) and url.startswith(own) and (len(url) == len(own) or url[len(own)] in "/?#")


def find_links(text: str | None, html: str | None, own: str = "") -> list[str]:
    """The distinct target URLs of a message, in order: its text's, then its HTML's
    (``&amp;`` in an ``href`` is ``&``). URLs under ``own`` (our public URL) are ours."""
    links: dict[str, None] = {}
    for *_, url in (*text_spans(text or ""), *html_spans(html or "")):
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
        _replace(text, text_spans(text), mapping),
        _replace(html, html_spans(html), mapping) if html else html,
    )


def sized_text(text: str, base: str) -> str:
    """``text`` with each link replaced by a stand-in as long as its tracked URL (same
    characters' encoding: base64url is GSM-7), for counting an SMS's segments."""
    links = find_links(text, None, base.rstrip("/"))
    if not links:
        return text
    stand_in = base.rstrip("/") + PATH + "x" * TOKEN_LENGTH
    return _replace(text, text_spans(text), dict.fromkeys(links, stand_in))
