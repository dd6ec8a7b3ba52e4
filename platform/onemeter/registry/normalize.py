"""Normalizing household addresses (building, unit, room) into one natural key.

Spreadsheets write the same room as "三号楼 二单元 102室", "3# 2 １０２" or "3栋2单元102";
all of these must give the same key so a household is recorded once per community.
"""

from __future__ import annotations

import re
import unicodedata

_DIGITS = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
           "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_NUMERAL_RUN = re.compile("[零〇○一二两三四五六七八九十百千]+")
#: Words that only say what the number counts (楼/栋/幢/号/单元/室/户/座/#): dropped.
_COUNTERS = re.compile(r"(号楼|号院|单元|楼栋|栋|幢|座|楼|号|室|户|门|#|＃)")
_SEPARATORS = re.compile(r"[\s\-_/\\.,，。、·]+")


def chinese_numeral(text: str) -> int:
    """The value of a Chinese numeral: "三" → 3, "十二" → 12, "一百零二" → 102, "一〇二" → 102.

    A run without 十/百/千 is read digit by digit (as room numbers are spoken).
    """
    if not any(ch in _UNITS for ch in text):
        return int("".join(str(_DIGITS[ch]) for ch in text))
    total, digit = 0, None
    for ch in text:
        if ch in _DIGITS:
            digit = _DIGITS[ch]
        else:
            total += (1 if digit is None else digit) * _UNITS[ch]
            digit = None
    return total + (digit or 0)


def normalize_part(value: object) -> str:
    """One address part in canonical form: "三号楼", "3#", "３栋" → "3"; "102室" → "102".

    Full-width characters become ASCII (NFKC), Chinese numerals become digits, counter words
    and spaces go, letters are upper-cased and leading zeros of a number are dropped.
    """
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value)).strip()
    text = _NUMERAL_RUN.sub(lambda m: str(chinese_numeral(m.group())), text)
    text = _COUNTERS.sub("", text)
    text = _SEPARATORS.sub("", text).upper()
    if text.isdigit():
        text = str(int(text))
    return text


def household_key(building: object, unit: object, room: object) -> str:
    """The natural key of a household in its community: "building-unit-room", normalized."""
    return "-".join(normalize_part(part) for part in (building, unit, room))
