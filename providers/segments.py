"""SMS segments: which encoding a text needs and how many messages it is billed as.

An SMS carries 140 bytes. Text that fits the GSM 03.38 7-bit alphabet travels as
GSM-7: 160 characters in one message, 153 per part once it is split (the other
7 go to the concatenation header). Characters of the GSM extension table (``€ [ ] { }
\\ ^ ~ |`` and form feed) are sent as an escape plus a character: two septets each.
Any other character forces UCS-2 for the whole message: 70 UTF-16 code units alone,
67 per part; an emoji outside the Basic Multilingual Plane is a surrogate pair, two
code units. Parts are filled greedily and an escape pair or a surrogate pair is never
split across two parts, as handsets and gateways do.

==========================  ========  ==========  ========
text                        encoding  units       segments
==========================  ========  ==========  ========
160 x ``a``                 gsm7      160         1
161 x ``a``                 gsm7      161         2
80 x ``€``                  gsm7      160         1
70 x ``я``                  ucs2      70          1
200 x ``я``                 ucs2      200         3
35 x 😀                     ucs2      70          1
==========================  ========  ==========  ========
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The GSM 03.38 default alphabet (one septet each); 0x1B, the escape, is left out.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The GSM 03.38 extension table: escape + character, two septets each.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


class Encoding(enum.StrEnum):
    """How an SMS text travels."""

    GSM7 = "gsm7"  #: 7-bit default alphabet (with its extension table)
    UCS2 = "ucs2"  #: UTF-16 code units


#: (units in a single message, units per part of a concatenated one)
LIMITS: dict[Encoding, tuple[int, int]] = {Encoding.GSM7: (160, 153), Encoding.UCS2: (70, 67)}


@dataclass(frozen=True, slots=True)
class Segments:
    """The encoding a text needs, its length in that encoding's units, and its parts."""

    encoding: Encoding
    units: int  #: septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int  #: messages billed; an empty text is still one


def _unit_costs(text: str) -> tuple[Encoding, list[int]]:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return Encoding.GSM7, [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return Encoding.UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def segments(text: str) -> Segments:
    """Encoding, length and number of billed messages of ``text``."""
    encoding, costs = _unit_costs(text)
    single, part = LIMITS[encoding]
    units = sum(costs)
    if units <= single:
        return Segments(encoding, units, 1)
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:  # an escape or a surrogate pair is never split
            count, used = count + 1, 0
        used += cost
    return Segments(encoding, units, count)
