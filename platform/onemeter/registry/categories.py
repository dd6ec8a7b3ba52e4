"""The plan's classification of communities (section 二) and the phase year each falls in.

Pure functions, no database: the model stores what they return so rollups can group in SQL.
"""

from __future__ import annotations

import calendar
import datetime as dt

DEVELOPER_COMMITTED = "developer_committed"
DELIVERED_LT5 = "delivered_lt5"
OLD_RENOVATION = "old_renovation"
DELIVERED_5_10 = "delivered_5_10"
DELIVERED_GT10_SCATTERED = "delivered_gt10_scattered"

#: In the plan's order (section 二 (一) 1–3, (二), (三)).
CATEGORIES = (DEVELOPER_COMMITTED, DELIVERED_LT5, OLD_RENOVATION, DELIVERED_5_10,
              DELIVERED_GT10_SCATTERED)

CATEGORY_LABELS = {
    DEVELOPER_COMMITTED: "开发建设单位出具承诺",
    DELIVERED_LT5: "建成交付未满5年",
    OLD_RENOVATION: "纳入老旧小区改造",
    DELIVERED_5_10: "建成交付5至10年",
    DELIVERED_GT10_SCATTERED: "建成交付10年以上及零星小区",
}

#: 三步走: the year of the plan's phase in which each category is retrofitted.
PHASE_OF_CATEGORY = {
    DEVELOPER_COMMITTED: 2021,
    DELIVERED_LT5: 2021,
    OLD_RENOVATION: 2021,
    DELIVERED_5_10: 2022,
    DELIVERED_GT10_SCATTERED: 2023,
}
PHASE_YEARS = (2021, 2022, 2023)

#: Ages are counted on the day the plan was issued (信平政办〔2021〕26号, 2021-07-07), not on
#: today's date: the plan classified its 189/118 communities from the survey done for it, so
#: a community's category is a fixed fact of this plan. Counting from today would move
#: communities into later phases every year and the ledger would stop matching the plan.
PLAN_REFERENCE_DATE = dt.date(2021, 7, 7)


def anniversary(day: dt.date, years: int) -> dt.date:
    """`day` plus whole `years`; 29 February falls on the 28th in a common year.

    (A period ending in a month without the corresponding day ends on that month's last day.)
    """
    year = day.year + years
    last = calendar.monthrange(year, day.month)[1]
    return day.replace(year=year, day=min(day.day, last))


def derive_category(*, developer_committed: bool, old_renovation: bool,
                    delivery_date: dt.date | None, scattered: bool = False,
                    reference: dt.date = PLAN_REFERENCE_DATE) -> str | None:
    """The plan's category of a community, or None when it cannot be told (no delivery date).

    Order follows the plan: a developer's commitment (二(一)1) and inclusion in the
    old-community renovation (二(一)3) decide before age. Ages: "未满5年" is before the fifth
    anniversary; "5~10年" runs from the fifth anniversary up to and including the tenth
    (section 一 says "超过10年" for the last group, so exactly ten years is still 5–10);
    after the tenth anniversary, or a scattered (零星) building, is the last group.
    """
    if developer_committed:
        return DEVELOPER_COMMITTED
    if old_renovation:
        return OLD_RENOVATION
    if scattered:
        return DELIVERED_GT10_SCATTERED
    if delivery_date is None:
        return None
    if reference < anniversary(delivery_date, 5):
        return DELIVERED_LT5
    if reference <= anniversary(delivery_date, 10):
        return DELIVERED_5_10
    return DELIVERED_GT10_SCATTERED


def phase_of(category: str | None) -> int | None:
    """The phase year (2021/2022/2023) of a category; None for an unknown category."""
    return PHASE_OF_CATEGORY.get(category) if category else None


def category_label(category: str | None) -> str:
    """Chinese label of a category code ("待定" when none)."""
    if not category:
        return "待定"
    return CATEGORY_LABELS.get(category, category)
