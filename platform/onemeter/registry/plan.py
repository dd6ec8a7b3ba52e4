"""The district plan shipped as data (plan_2021_26.toml): loading it and checking its totals.

The plan's stated totals are compared with the sums of its own rows; differences are
reported, never corrected (the plan is a published document, the ledger must quote it).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from onemeter.registry.models import UTILITY_LABELS, PlanTarget

PLAN_FILE = Path(__file__).with_name("plan_2021_26.toml")
MEASURE_LABELS = {"communities": "小区数", "households": "户数"}
MEASURE_UNITS = {"communities": "个", "households": "户"}


@dataclass(frozen=True)
class PlanRow:
    """One number of the plan: a category row, or a total the plan states (category None)."""

    utility: str
    phase_year: int | None
    category: str | None
    communities: int
    households: int
    note: str = ""


@dataclass(frozen=True)
class TotalDifference:
    """A stated total that the plan's own rows do not add up to."""

    utility: str
    phase_year: int | None  # None: the whole programme
    measure: str  # "communities" or "households"
    summed: int
    stated: int
    basis: str  # what was summed, in Chinese

    @property
    def difference(self) -> int:
        return self.summed - self.stated

    def describe(self) -> str:
        """One line in Chinese, e.g. "2021年 供水 户数：…合计 26,100 户，方案所列 26,200 户，差 -100 户"."""
        when = f"{self.phase_year}年" if self.phase_year else "三年合计"
        unit = MEASURE_UNITS[self.measure]
        return (f"{when} {UTILITY_LABELS.get(self.utility, self.utility)} "
                f"{MEASURE_LABELS[self.measure]}：{self.basis} {self.summed:,} {unit}，"
                f"方案所列 {self.stated:,} {unit}，差 {self.difference:+,} {unit}")


def read_plan(path: Path = PLAN_FILE) -> tuple[str, list[PlanRow]]:
    """The plan file's source (document number) and every row, category rows then totals."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rows = [PlanRow(t["utility"], t.get("phase_year"), t.get("category"), t["communities"],
                    t["households"], t.get("note", ""))
            for key in ("target", "total") for t in data.get(key, [])]
    return data["source"], rows


def plan_totals_check(rows: Iterable[Any]) -> list[TotalDifference]:
    """Every stated total that differs from the sum of the plan's rows.

    `rows` are PlanRow or PlanTarget (anything with utility, phase_year, category,
    communities, households). A phase's stated total is compared with the
    sum of its category rows; the programme's stated total (no phase) with the sum of every
    category row, and also with the sum of the stated phase totals where a phase states one
    (the plan's own chain: 一 is meant to be the sum of 二's phases).
    """
    rows = list(rows)
    parts = [r for r in rows if r.category is not None]
    totals = [r for r in rows if r.category is None]
    differences: list[TotalDifference] = []
    for total in totals:
        for measure in ("communities", "households"):
            stated = getattr(total, measure)
            same = [r for r in parts if r.utility == total.utility and (
                total.phase_year is None or r.phase_year == total.phase_year)]
            summed = sum(getattr(r, measure) for r in same)
            if summed != stated:
                basis = "各类别之和" if total.phase_year else "各年度各类别之和"
                differences.append(TotalDifference(total.utility, total.phase_year, measure,
                                                   summed, stated, basis))
            if total.phase_year is None:
                phase_totals = {t.phase_year: getattr(t, measure) for t in totals
                                if t.utility == total.utility and t.phase_year is not None}
                if not phase_totals:
                    continue
                by_phase = sum(phase_totals.values()) + sum(
                    getattr(r, measure) for r in same if r.phase_year not in phase_totals)
                if by_phase != stated:
                    differences.append(TotalDifference(
                        total.utility, None, measure, by_phase, stated,
                        "各年度所列合计之和"))
    return differences


def load_plan(session: Session, path: Path = PLAN_FILE) -> tuple[int, int]:
    """Write the plan's rows as PlanTargets; idempotent. Returns (added, updated).

    A row is identified by source × utility × phase × category; its numbers are updated
    from the file. Rows of the same source no longer in the file are removed.
    """
    source, rows = read_plan(path)
    existing = {(t.utility, t.phase_year, t.category): t for t in session.scalars(
        sa.select(PlanTarget).where(PlanTarget.source == source))}
    added = updated = 0
    for row in rows:
        target = existing.pop((row.utility, row.phase_year, row.category), None)
        if target is None:
            session.add(PlanTarget(source=source, utility=row.utility,
                                   phase_year=row.phase_year, category=row.category,
                                   communities=row.communities, households=row.households,
                                   note=row.note))
            added += 1
        elif (target.communities, target.households, target.note) != (
                row.communities, row.households, row.note):
            target.communities, target.households = row.communities, row.households
            target.note = row.note
            updated += 1
    for stale in existing.values():
        session.delete(stale)
    session.flush()
    return added, updated


def district_targets(session: Session) -> list[PlanTarget]:
    """The district-wide targets as loaded, in the plan's order."""
    return list(session.scalars(sa.select(PlanTarget)
                                .order_by(PlanTarget.utility.desc(),
                                          PlanTarget.phase_year.is_(None),
                                          PlanTarget.phase_year, PlanTarget.category.is_(None),
                                          PlanTarget.id)))
