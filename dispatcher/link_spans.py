"""Where the links of a message part are: spans of plain text and of HTML.

**Plain text** (SMS, messengers, an e-mail's text part): ``http(s)://`` up to a space,
quote or angle bracket, without the sentence punctuation after it; a closing bracket
stays when the URL opened it (``https://en.wikipedia.org/wiki/Foo_(bar)``).

**HTML**: the whole ``href`` of ``<a>``, ``<area>`` and Outlook's VML ``<v:roundrect>``
(a "bulletproof" button), entities decoded, and the URLs in the text between tags,
read as the reader sees it (``&nbsp;`` or ``&gt;`` ends a URL, ``&amp;`` is part of
it). Nothing inside ``<style>``, ``<script>`` or comments, and no other attribute
(``<img src>``, ``<link href>``, ``title``): the mail client fetches those when the mail
is opened, and counting them would make every opening a click.

A span is (start, end, URL): where the link is written in the part, and its target. The
scan is linear in the part's length (a part is at most 64 KB, and a click scans it again).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

#: A URL as found in text (it ends at a space, a quote or an angle bracket).
URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
#: Punctuation that ends a sentence rather than the URL ("see https://x.example/a.").
_TRAILING = ".,;:!?)]}'\"*"
#: Closing brackets kept at a URL's end when the URL opened them.
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_SCHEME = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)
#: A comment (to its end, or the part's end), or a tag, whose quoted values may hold ``>``.
_TAG = re.compile(
    r"<!--.*?(?:-->|\Z)|<[/!?]?[A-Za-z][^\s/>]*(?:\"[^\"]*\"|'[^']*'|[^'\">])*>?", re.DOTALL
)
_TAG_NAME = re.compile(r"<([A-Za-z][^\s/>]*)")
#: One attribute of a start tag: name, then an optional value, quoted or not.
_ATTRIBUTE = re.compile(r"""[\s/]*([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
#: Tags whose ``href`` a person clicks.
_LINK_TAGS = frozenset({"a", "area", "v:roundrect"})
#: Elements whose content is not text a person reads.
_RAW_TEXT = frozenset({"style", "script"})
_ENTITY = re.compile(r"&(?:#[0-9]{1,8};?|#[xX][0-9a-fA-F]{1,8};?|[A-Za-z][A-Za-z0-9]{0,31};?)")

#: A link: (start, end) where it is written in the part, and its target URL.
Span = tuple[int, int, str]


def trim(url: str) -> str:
    """``url`` without the sentence punctuation after it; a closing bracket stays when
    the URL opened it. Brackets are counted once (a URL can be 64 KB long)."""
    unclosed = {
        closer: url.count(opener) - url.count(closer) for closer, opener in _CLOSERS.items()
    }
    end = len(url)
    while end and url[end - 1] in _TRAILING:
        char = url[end - 1]
        if char in unclosed:
            if unclosed[char] >= 0:
                break  # the URL opened this bracket: it is part of the URL
            unclosed[char] += 1
        end -= 1
    return url[:end]


def text_spans(text: str, offset: int = 0) -> Iterator[Span]:
    """The URLs of plain text."""
    if "://" not in text:
        return
    for match in URL.finditer(text):
        url = trim(match.group(0))
        if _SCHEME.match(url):
            start = offset + match.start()
            yield start, start + len(url), url


def _readable(raw: str) -> tuple[str, list[int]]:
    """``raw`` HTML text with its entities decoded, and where each decoded character (and
    the end) is in ``raw``: an entity's characters all sit at its ``&``."""
    text: list[str] = []
    origin: list[int] = []
    position = 0
    for entity in _ENTITY.finditer(raw):
        decoded = unescape(entity.group(0))
        if decoded == entity.group(0):
            continue  # not an entity: literal text
        text += [raw[position : entity.start()], decoded]
        origin += [*range(position, entity.start()), *[entity.start()] * len(decoded)]
        position = entity.end()
    text.append(raw[position:])
    origin += [*range(position, len(raw)), len(raw)]
    return "".join(text), origin


def _html_text_spans(raw: str, offset: int) -> Iterator[Span]:
    """The URLs of the text between two tags, as a reader sees it (entities decoded)."""
    if "://" not in raw:
        return
    if "&" not in raw:
        yield from text_spans(raw, offset)
        return
    text, origin = _readable(raw)
    for start, end, url in text_spans(text):
        yield offset + origin[start], offset + origin[end], url


def _href(tag: str, position: int) -> tuple[int, int, str] | None:
    """The ``href`` of a link tag whose attributes start at ``position``: where its value
    is in ``tag``, and the URL."""
    while position < len(tag):
        attribute = _ATTRIBUTE.match(tag, position)
        if attribute is None or attribute.end() == position:
            return None
        position = attribute.end()
        value = attribute.group(2)
        if attribute.group(1).lower() != "href" or value is None:
            continue
        start, end = attribute.start(2), attribute.end(2)
        if value[:1] in ("'", '"'):
            start, end = start + 1, end - 1
        url = unescape(tag[start:end]).strip()
        return (start, end, url) if _SCHEME.match(url) else None  # the first href counts
    return None


def html_spans(html: str) -> Iterator[Span]:
    """The links of an HTML part in document order (see the module doc)."""
    if "://" not in html:
        return
    position = 0
    while (tag := _TAG.search(html, position)) is not None:
        yield from _html_text_spans(html[position : tag.start()], position)
        position = tag.end()
        name = _TAG_NAME.match(tag.group(0))
        element = name.group(1).lower() if name else ""
        if element in _RAW_TEXT:  # skip to its end tag: CSS and scripts are not text
            close = re.compile(rf"</{element}\b", re.IGNORECASE).search(html, position)
            position = close.start() if close else len(html)
            continue
        found = _href(tag.group(0), name.end()) if name and element in _LINK_TAGS else None
        if found is not None:
            yield tag.start() + found[0], tag.start() + found[1], found[2]
    yield from _html_text_spans(html[position:], position)
