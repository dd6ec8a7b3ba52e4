"""以奖代补 arithmetic (onemeter_funding.award): cap, allocation to the fen, backstop.

Property tests (hypothesis) over arbitrary projects and grants, plus the plan's own case.
No database: the arithmetic is pure.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onemeter_funding.award import (
    AwardRefused,
    ProjectFigures,
    allocate,
    backstop,
    compute_award,
    ineligibility,
)
from onemeter_funding.rules import DEFAULT_RULES, PINGQIAO_2021, AwardRule, rule_in_force

AS_OF = dt.date(2023, 12, 31)
money = st.decimals(min_value=Decimal("0"), max_value=Decimal("99999999.99"), places=2,
                    allow_nan=False, allow_infinity=False)
projects = st.lists(st.builds(
    ProjectFigures,
    project_id=st.integers(1, 10**6), tenant_id=st.integers(1, 4),
    state=st.sampled_from(["accepted", "accepted", "registered", "completed"]),
    reviewed_amount=st.one_of(st.none(), money),
    reviewed_on=st.one_of(st.none(), st.dates(dt.date(2021, 1, 1), dt.date(2024, 12, 31))),
    developer_paid=money, households=st.integers(0, 2000)),
    max_size=30, unique_by=lambda p: p.project_id)
rules = st.sampled_from([
    PINGQIAO_2021,
    AwardRule("share", "1", dt.date(2021, 1, 1), "10%", share=Decimal("0.1")),
    AwardRule("household", "1", dt.date(2021, 1, 1), "每户 300 元", per_household=Decimal(300)),
    AwardRule("mixed", "1", dt.date(2021, 1, 1), "20%，每户 500 元，最高 100 万",
              share=Decimal("0.2"), per_household=Decimal(500), ceiling=Decimal(1_000_000)),
])


@settings(max_examples=300, deadline=None)
@given(projects=projects, rule=rules, wanted=money)
def test_award_never_exceeds_the_cap_and_backstop_is_never_negative(
        projects: list[ProjectFigures], rule: AwardRule, wanted: Decimal) -> None:
    result = compute_award(projects, rule, AS_OF, wanted, strict=False)
    assert result.allocated <= result.cap
    assert result.allocated == min(wanted, result.cap)
    assert sum((p.award for p in result.projects), Decimal(0)) == result.allocated
    for line in result.projects:
        assert line.award >= 0
        if not line.eligible:
            assert line.award == 0 and line.reason
        if line.backstop is not None:
            assert line.backstop >= 0
            assert line.backstop == max(Decimal(0), line.figures.reviewed_amount
                                        - line.figures.developer_paid - line.award)
    if rule is PINGQIAO_2021:
        assert result.cap <= result.eligible_total * Decimal("0.2") + Decimal("0.005")


@settings(max_examples=300, deadline=None)
@given(amount=money, weights=st.dictionaries(st.integers(1, 10**6), money, min_size=1,
                                             max_size=40))
def test_allocations_always_sum_exactly_to_the_fen(amount: Decimal,
                                                   weights: dict[int, Decimal]) -> None:
    parts = allocate(amount, weights)
    assert set(parts) == set(weights)
    assert sum(parts.values(), Decimal(0)) == amount
    assert all(p >= 0 and p == p.quantize(Decimal("0.01")) for p in parts.values())
    whole = sum(weights.values())
    if whole:
        for key, part in parts.items():  # largest remainder: within one fen of the exact share
            assert abs(part - amount * weights[key] / whole) < Decimal("0.01")


@given(projects=projects, rule=rules)
def test_a_grant_above_the_cap_is_refused_in_chinese(projects: list[ProjectFigures],
                                                     rule: AwardRule) -> None:
    cap = compute_award(projects, rule, AS_OF, 0).cap
    with pytest.raises(AwardRefused, match="超过上限"):
        compute_award(projects, rule, AS_OF, cap + Decimal("0.01"))
    assert compute_award(projects, rule, AS_OF, cap).allocated == cap


def test_the_plans_rule_caps_the_award_at_twenty_percent_of_reviewed_accepted_investment(
        ) -> None:
    figures = [
        ProjectFigures(1, 1, "accepted", reviewed_amount=Decimal("1000000.00"),
                       reviewed_on=dt.date(2022, 3, 1), developer_paid=Decimal("300000.00")),
        ProjectFigures(2, 2, "accepted", reviewed_amount=Decimal("333333.33"),
                       reviewed_on=dt.date(2022, 3, 1)),
        ProjectFigures(3, 1, "completed", state_label="改造完成待移交",
                       reviewed_amount=Decimal("500000.00"), reviewed_on=dt.date(2022, 3, 1)),
        ProjectFigures(4, 3, "accepted"),
    ]
    rule = rule_in_force(DEFAULT_RULES, AS_OF)
    result = compute_award(figures, rule, AS_OF, Decimal("266666.67"))
    assert result.eligible_total == Decimal("1333333.33")
    assert result.cap == Decimal("266666.67")  # 20 %, half up to the fen
    lines = {p.figures.project_id: p for p in result.projects}
    assert lines[1].award + lines[2].award == Decimal("266666.67")
    assert lines[1].award == Decimal("200000.00") and lines[2].award == Decimal("66666.67")
    assert lines[1].backstop == Decimal("500000.00")  # 1,000,000 − 300,000 − 200,000
    assert lines[3].reason == "改造尚未完成并经专营单位接收（当前：改造完成待移交）"
    assert lines[4].reason == "投资未经财政评审" and lines[4].backstop is None


def test_eligibility_is_judged_on_the_day_computed() -> None:
    project = ProjectFigures(1, 1, "accepted", accepted_on=dt.date(2022, 5, 1),
                             reviewed_amount=Decimal(100), reviewed_on=dt.date(2022, 6, 1))
    assert ineligibility(project, dt.date(2022, 6, 1)) == []
    assert ineligibility(project, dt.date(2022, 5, 31)) == [
        "截至2022年5月31日尚未完成财政评审（2022年6月1日评审）"]
    assert ineligibility(project, dt.date(2022, 4, 30))[0] == \
        "截至2022年4月30日尚未接收（2022年5月1日接收）"


def test_the_rule_in_force_depends_on_the_day() -> None:
    later = AwardRule("xinyang-yijiangdaibu", "2025.1", dt.date(2025, 1, 1), "15%",
                      share=Decimal("0.15"))
    versions = (*DEFAULT_RULES, later)
    assert rule_in_force(versions, dt.date(2021, 7, 6)) is None
    assert rule_in_force(versions, dt.date(2021, 7, 7)) is PINGQIAO_2021
    assert rule_in_force(versions, dt.date(2024, 12, 31)) is PINGQIAO_2021
    assert rule_in_force(versions, dt.date(2025, 1, 1)) is later
    with pytest.raises(AwardRefused, match="没有生效的以奖代补规则"):
        compute_award([], None, dt.date(2021, 7, 6))


def test_backstop_is_zero_when_the_developer_paid_more_than_the_review() -> None:
    assert backstop(Decimal("100.00"), Decimal("150.00"), Decimal("0")) == Decimal("0.00")
    assert backstop(None, Decimal("1"), Decimal("0")) is None
    assert allocate(Decimal("100.00"), {1: Decimal(1), 2: Decimal(1), 3: Decimal(1)}) == {
        1: Decimal("33.34"), 2: Decimal("33.33"), 3: Decimal("33.33")}
