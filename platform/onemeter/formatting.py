"""Local (zh_CN) display of values: dates, money in 元 with two decimals, counts, yes/no.

Timestamps the platform records are naive UTC; they are shown in Beijing time.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
CENT = decimal.Decimal("0.01")


def local_datetime(value: dt.datetime | None) -> str:
    """2021-07-07 17:00 for a naive-UTC timestamp (empty for None)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def local_date(value: dt.date | None) -> str:
    """2021年7月7日."""
    return "" if value is None else f"{value.year}年{value.month}月{value.day}日"


def money(value: decimal.Decimal | int | str | None) -> str:
    """1,234,567.80 元 — Decimal, rounded half up to the fen; never via float."""
    if value is None or value == "":
        return ""
    amount = decimal.Decimal(str(value)).quantize(CENT, rounding=decimal.ROUND_HALF_UP)
    return f"{amount:,.2f} 元"


def count(value: int | None) -> str:
    """42,000."""
    return "" if value is None else f"{value:,}"


def yes_no(value: Any) -> str:
    return "是" if value else "否"


def percent(part: int | decimal.Decimal | None, whole: int | decimal.Decimal | None,
            places: int = 1) -> str:
    """37.5% for part/whole, rounded half up without float; "—" when there is no whole."""
    if part is None or not whole:
        return "—"
    ratio = decimal.Decimal(part) * 100 / decimal.Decimal(whole)
    step = decimal.Decimal(1).scaleb(-places)
    return f"{ratio.quantize(step, rounding=decimal.ROUND_HALF_UP):,}%"
