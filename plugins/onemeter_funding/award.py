"""Eligibility, award cap, allocation to the fen and the treasury backstop: pure arithmetic.

Nothing here touches the database: `onemeter_funding.service` gathers the figures and stores
the result. Money is Decimal throughout, rounded half up to the fen (ROUND_HALF_UP).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from math import floor

from onemeter_funding.rules import CENT, AwardRule

#: The retrofit state in which the utility has accepted the project (procedure.py, 五).
ACCEPTED = "accepted"


class AwardRefused(ValueError):
    """The award cannot be computed or granted as asked; `str(exc)` says why in Chinese."""


def to_fen(value: Decimal | int | str) -> Decimal:
    """A money amount rounded half up to the fen."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def local_day(value: dt.date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


@dataclass
class ProjectFigures:
    """What the award needs to know about one retrofit project on the day computed."""

    project_id: int
    tenant_id: int
    state: str
    state_label: str = ""
    accepted_on: dt.date | None = None
    reviewed_amount: Decimal | None = None
    reviewed_on: dt.date | None = None
    developer_paid: Decimal = Decimal("0.00")
    households: int = 0
    label: str = ""


@dataclass
class ProjectResult:
    """One project's outcome: eligible or why not, award allocated, treasury backstop."""

    figures: ProjectFigures
    reasons: list[str]
    award: Decimal = Decimal("0.00")
    backstop: Decimal | None = None

    @property
    def eligible(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str:
        return "；".join(self.reasons)


@dataclass
class AwardResult:
    """The award computed for a set of projects under one rule on one day."""

    as_of: dt.date
    rule: AwardRule
    eligible_total: Decimal
    cap: Decimal
    granted: Decimal
    allocated: Decimal
    projects: list[ProjectResult] = field(default_factory=list)
    note: str = ""

    @property
    def eligible_count(self) -> int:
        return sum(1 for p in self.projects if p.eligible)

    @property
    def backstop_total(self) -> Decimal:
        return sum((p.backstop or Decimal(0) for p in self.projects), Decimal("0.00"))


def ineligibility(project: ProjectFigures, as_of: dt.date) -> list[str]:
    """Why a project does not count towards the award on `as_of` (empty: it counts).

    It counts when the utility has accepted it (completed and handed over, 接收) and its
    investment has passed the fiscal review (财政评审), both on or before `as_of`.
    """
    reasons = []
    if project.state != ACCEPTED:
        reasons.append(f"改造尚未完成并经专营单位接收（当前：{project.state_label or project.state}）")
    elif project.accepted_on is not None and project.accepted_on > as_of:
        reasons.append(f"截至{local_day(as_of)}尚未接收（{local_day(project.accepted_on)}接收）")
    if project.reviewed_amount is None:
        reasons.append("投资未经财政评审")
    elif project.reviewed_on is not None and project.reviewed_on > as_of:
        reasons.append(f"截至{local_day(as_of)}尚未完成财政评审"
                       f"（{local_day(project.reviewed_on)}评审）")
    elif project.reviewed_amount <= 0:
        reasons.append("财政评审金额为 0")
    return reasons


def allocate(amount: Decimal, weights: Mapping[Hashable, Decimal]) -> dict[Hashable, Decimal]:
    """Split `amount` over the keys in proportion to `weights`, exact to the fen.

    Largest-remainder method: every part is first rounded down to the fen, then the fen
    left over go one each to the largest remainders (ties to the smaller key), so the parts
    always sum to `amount` (rounded half up to the fen). All-zero weights split evenly.
    """
    if not weights:
        if to_fen(amount) != 0:
            raise AwardRefused("没有可分配的项目")
        return {}
    total_fen = int(to_fen(amount) / CENT)
    if total_fen < 0:
        raise AwardRefused("分配金额不能为负数")
    if any(w < 0 for w in weights.values()):
        raise AwardRefused("分配权重不能为负数")
    keys = sorted(weights, key=lambda k: (str(type(k)), k))  # type: ignore[return-value]
    weight = {k: Fraction(weights[k]) for k in keys}
    whole = sum(weight.values())
    if whole == 0:
        weight, whole = {k: Fraction(1) for k in keys}, Fraction(len(keys))
    exact = {k: Fraction(total_fen) * weight[k] / whole for k in keys}
    fen = {k: floor(exact[k]) for k in keys}
    left = total_fen - sum(fen.values())
    for k in sorted(keys, key=lambda k: exact[k] - fen[k], reverse=True)[:left]:
        fen[k] += 1
    return {k: Decimal(fen[k]) * CENT for k in keys}


def backstop(reviewed: Decimal | None, developer_paid: Decimal, award: Decimal
             ) -> Decimal | None:
    """区财政兜底 (treasury backstop): reviewed investment − developer paid − award, never
    negative; None while the investment has not been reviewed."""
    if reviewed is None:
        return None
    return max(Decimal("0.00"), to_fen(reviewed - developer_paid - award))


def compute_award(projects: Sequence[ProjectFigures], rule: AwardRule | None, as_of: dt.date,
                  granted: Decimal | int | str = 0, *, strict: bool = True) -> AwardResult:
    """Eligibility, cap, allocation of the award granted, and backstop for every project.

    The cap is the rule's cap over the eligible projects (0 when none is eligible). A grant
    above the cap is refused (`strict`), or — when recomputing after the figures changed —
    only the cap is allocated and the note says so. Raises AwardRefused with the reason.
    """
    if rule is None:
        raise AwardRefused(f"{local_day(as_of)}没有生效的以奖代补规则")
    granted = to_fen(granted)
    if granted < 0:
        raise AwardRefused("奖补金额不能为负数")
    results = [ProjectResult(p, ineligibility(p, as_of)) for p in projects]
    eligible = [r for r in results if r.eligible]
    eligible_total = sum((r.figures.reviewed_amount for r in eligible), Decimal("0.00"))
    cap = rule.cap([r.figures for r in eligible]) if eligible else Decimal("0.00")
    note, allocated = "", granted
    if granted > cap:
        if strict:
            raise AwardRefused(f"奖补金额 {granted:,.2f} 元超过上限 {cap:,.2f} 元"
                               f"（{rule.label}，符合条件的评审投资 {eligible_total:,.2f} 元）")
        allocated = cap
        note = f"已录入的奖补金额 {granted:,.2f} 元超过现行上限 {cap:,.2f} 元，仅按上限分配"
    parts = allocate(allocated, {r.figures.project_id: r.figures.reviewed_amount
                                 for r in eligible}) if eligible else {}
    for r in results:
        r.award = parts.get(r.figures.project_id, Decimal("0.00"))
        r.backstop = backstop(r.figures.reviewed_amount, r.figures.developer_paid, r.award)
    return AwardResult(as_of=as_of, rule=rule, eligible_total=eligible_total, cap=cap,
                       granted=granted, allocated=sum(parts.values(), Decimal("0.00")),
                       projects=results, note=note)
