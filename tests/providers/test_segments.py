"""SMS segment tables: GSM-7 160/153 (extension characters count double), UCS-2 70/67."""

from __future__ import annotations

import pytest

from providers.segments import GSM7_BASIC, GSM7_EXTENSION, Encoding, segments

GSM, UCS = Encoding.GSM7, Encoding.UCS2


@pytest.mark.parametrize(
    ("text", "encoding", "units", "count"),
    [
        ("", GSM, 0, 1),
        ("a" * 160, GSM, 160, 1),
        ("a" * 161, GSM, 161, 2),
        ("a" * 306, GSM, 306, 2),  # 2 x 153
        ("a" * 307, GSM, 307, 3),
        ("€" * 80, GSM, 160, 1),  # extension: escape + character
        ("€" * 81, GSM, 162, 2),
        ("a" * 159 + "[", GSM, 161, 2),  # one extension character tips it over
        ("a" * 152 + "{" + "a" * 10, GSM, 164, 2),  # the escape pair is not split:
        ("a" * 152 + "{" + "a" * 152, GSM, 306, 3),  # 152 | 2 + 151 | 1 ... spills
        ("Hello @ £5, café à 10:00", GSM, 24, 1),  # GSM-7 covers these accents
        ("я" * 70, UCS, 70, 1),
        ("я" * 71, UCS, 71, 2),
        ("я" * 134, UCS, 134, 2),  # 2 x 67
        ("я" * 135, UCS, 135, 3),
        ("я" * 200, UCS, 200, 3),  # the 200-character Russian text
        ("a" * 159 + "ç", UCS, 160, 3),  # lower-case ç is not GSM-7: all UCS-2
        ("😀" * 35, UCS, 70, 1),  # emoji are surrogate pairs: two code units
        ("😀" * 36, UCS, 72, 2),
        ("a" * 66 + "😀", UCS, 68, 1),
        ("a" * 66 + "😀" + "aaa", UCS, 71, 2),  # the pair does not fit part one's last unit
        ("a" * 66 + "😀" + "a" * 66, UCS, 134, 3),  # 66 | 2 + 65 | 1: never split
        ("Заказ 42 😀", UCS, 11, 1),
    ],
)
def test_segment_table(text: str, encoding: Encoding, units: int, count: int):
    """Encoding, units and billed messages for each boundary of both alphabets."""
    result = segments(text)
    assert (result.encoding, result.units, result.count) == (encoding, units, count)


def test_alphabets_are_the_gsm_03_38_tables():
    """127 basic characters (the escape excluded) and the 10 of the extension table."""
    assert len(GSM7_BASIC) == 127
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
