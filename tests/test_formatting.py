"""Values are shown the local way: Beijing time, 元 with two decimals, 是/否."""

import datetime as dt
from decimal import Decimal

from onemeter.formatting import count, local_date, local_datetime, money, percent, yes_no


def test_recorded_utc_times_are_shown_in_beijing_time():
    assert local_datetime(dt.datetime(2021, 7, 7, 1, 30)) == "2021-07-07 09:30"
    assert local_datetime(None) == ""


def test_money_is_yuan_with_two_decimals_rounded_half_up_without_float():
    assert money(Decimal("300000")) == "300,000.00 元"
    assert money(Decimal("0.005")) == "0.01 元"
    assert money(Decimal("1000000.045")) == "1,000,000.05 元"
    assert money("2.675") == "2.68 元"  # float(2.675) would round down to 2.67


def test_dates_counts_and_flags_read_as_chinese():
    assert local_date(dt.date(2021, 7, 7)) == "2021年7月7日"
    assert count(42000) == "42,000"
    assert (yes_no(True), yes_no(False)) == ("是", "否")


def test_percentages_round_half_up_and_say_so_when_there_is_no_whole():
    assert percent(1, 8) == "12.5%"
    assert percent(1, 16) == "6.3%"  # 6.25 half up; float formatting would give 6.2
    assert percent(2, 3, places=2) == "66.67%"
    assert percent(5, 0) == "—"
    assert percent(Decimal("12345"), 100) == "12,345.0%"
