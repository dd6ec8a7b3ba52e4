"""The municipal award rule (以奖代补: award in lieu of subsidy, 四(一)) as versioned data.

An `AwardRule` says how large the award may be (its cap); `rule_in_force` picks the version
in force on a day. Another city's rule is another `AwardRule` answered through the hook
`onemeter_award_rule` by a small plugin of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

CENT = Decimal("0.01")


class CapBasis(Protocol):
    """What a rule sees of one eligible project: its reviewed investment and households."""

    reviewed_amount: Decimal
    households: int


@dataclass(frozen=True)
class AwardRule:
    """One version of an award rule: a code, a version, the day it takes effect, its limits.

    The award may not exceed any limit the rule states (each is an upper bound, 不超过):
    `share` of the eligible reviewed investment, `per_household` 元 per household of the
    eligible projects, and an absolute `ceiling` in 元. A rule with a different formula
    subclasses and overrides `cap`. Amounts are Decimal; the cap is rounded half up to the fen.
    """

    code: str
    version: str
    effective_from: dt.date
    label: str
    share: Decimal | None = None
    per_household: Decimal | None = None
    ceiling: Decimal | None = None

    def cap(self, eligible: Sequence[CapBasis]) -> Decimal:
        """The largest award the eligible projects may receive under this rule (元)."""
        limits: list[Decimal] = []
        if self.share is not None:
            limits.append(sum((p.reviewed_amount for p in eligible), Decimal(0)) * self.share)
        if self.per_household is not None:
            limits.append(sum(p.households for p in eligible) * self.per_household)
        if self.ceiling is not None:
            limits.append(self.ceiling)
        if not limits:
            return Decimal("0.00")
        return max(Decimal(0), min(limits)).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def key(self) -> str:
        """code@version, as stored with every computation."""
        return f"{self.code}@{self.version}"


#: 信平政办〔2021〕26号 四(一): the city awards at most 20 % of total investment; the plan is
#: dated 2021年7月7日.
PINGQIAO_2021 = AwardRule(
    code="xinyang-yijiangdaibu", version="2021.1", effective_from=dt.date(2021, 7, 7),
    label="市政府以奖代补：不超过总投资的 20%（信平政办〔2021〕26号 四(一)）",
    share=Decimal("0.20"))

#: The versions the funding plugin ships, oldest first.
DEFAULT_RULES: tuple[AwardRule, ...] = (PINGQIAO_2021,)


def rule_in_force(rules: Sequence[AwardRule], as_of: dt.date) -> AwardRule | None:
    """The latest version with `effective_from` on or before `as_of`, or None."""
    candidates = [r for r in rules if r.effective_from <= as_of]
    return max(candidates, key=lambda r: r.effective_from) if candidates else None
