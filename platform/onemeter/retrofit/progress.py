"""Progress of retrofit projects: households in scope, opted out and done, per project.

One SQL query for the whole page, under the caller's tenant scope (ORM criteria and RLS).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from onemeter.registry.models import ACCOUNT_DONE, Community, Household, MeterAccount
from onemeter.retrofit.models import RetrofitProject, overdue_filter
from onemeter.tenancy import Tenant, current_scope


@dataclass(frozen=True)
class ProjectProgress:
    """One project's line on the progress page.

    `in_scope` households have an account with the project's utility; opted-out ones
    (居民自愿不改造) stay listed but leave the denominator, so `percent` is done over
    `in_scope - opted_out`.
    """

    project_id: int
    tenant_id: int
    tenant_name: str
    community_id: int
    community_name: str
    utility: str
    state: str
    deadline: dt.date | None
    category: str | None
    phase_year: int | None
    in_scope: int
    opted_out: int
    done: int
    overdue: bool

    @property
    def denominator(self) -> int:
        return self.in_scope - self.opted_out

    @property
    def percent(self) -> float:
        """Share done, for the bar's width only (counts are shown as integers)."""
        return 100.0 * self.done / self.denominator if self.denominator else 0.0


def household_counts() -> sa.Subquery:
    """Per tenant × community × utility: accounts in scope, opted out, done."""
    opted = Household.opted_out.is_(True)
    return (sa.select(
        Household.tenant_id, Household.community_id, MeterAccount.utility,
        sa.func.count(MeterAccount.id).label("in_scope"),
        sa.func.count(sa.case((opted, 1))).label("opted_out"),
        sa.func.count(sa.case((sa.and_(~opted, MeterAccount.status.in_(ACCOUNT_DONE)), 1)))
        .label("done"))
        .join(MeterAccount, sa.and_(MeterAccount.tenant_id == Household.tenant_id,
                                    MeterAccount.household_id == Household.id))
        .group_by(Household.tenant_id, Household.community_id, MeterAccount.utility)
        .subquery("household_counts"))


def project_progress(session: Session, today: dt.date, *, utilities: list[str],
                     utility: str | None = None, phase: int | None = None,
                     tenant_id: int | None = None,
                     overdue_only: bool = False) -> list[ProjectProgress]:
    """The projects of `utilities` the scope reads, overdue first, then by deadline.

    Utility staff get their own utility's projects only, whatever `utilities` says.
    """
    own = current_scope().utility
    codes = [u for u in utilities if own is None or u == own]
    if utility is not None:
        codes = [u for u in codes if u == utility]
    counts = household_counts()
    overdue = overdue_filter(today)
    query = (sa.select(
        RetrofitProject.id, RetrofitProject.tenant_id, Tenant.name, Community.id,
        Community.name, RetrofitProject.utility, RetrofitProject.state,
        RetrofitProject.deadline, Community.category, Community.phase_year,
        sa.func.coalesce(counts.c.in_scope, 0), sa.func.coalesce(counts.c.opted_out, 0),
        sa.func.coalesce(counts.c.done, 0), sa.case((overdue, 1), else_=0).label("late"))
        .join(Community, sa.and_(Community.tenant_id == RetrofitProject.tenant_id,
                                 Community.id == RetrofitProject.community_id))
        .join(Tenant, Tenant.id == RetrofitProject.tenant_id)
        .outerjoin(counts, sa.and_(counts.c.tenant_id == RetrofitProject.tenant_id,
                                   counts.c.community_id == RetrofitProject.community_id,
                                   counts.c.utility == RetrofitProject.utility))
        .where(RetrofitProject.utility.in_(codes))
        .order_by(sa.desc("late"), RetrofitProject.deadline.is_(None),
                  RetrofitProject.deadline, Tenant.name, Community.name,
                  RetrofitProject.utility))
    if phase is not None:
        query = query.where(Community.phase_year == phase)
    if tenant_id is not None:
        query = query.where(RetrofitProject.tenant_id == tenant_id)
    if overdue_only:
        query = query.where(overdue)
    return [ProjectProgress(*row[:13], overdue=bool(row[13])) for row in session.execute(query)]


def tenant_options(session: Session) -> list[tuple[int, str]]:
    """(id, name) of the active tenants the scope reads, for the sub-district filter."""
    return [(t.id, t.name) for t in session.scalars(
        sa.select(Tenant).where(Tenant.active.is_(True)).order_by(Tenant.id))
        if current_scope().read is None or t.id in current_scope().read]


@dataclass(frozen=True)
class ProgressSummary:
    """The landing page's figures for the scope: projects, overdue, households."""

    projects: int
    accepted: int
    overdue: int
    households: int
    done: int
    opted_out: int

    @property
    def percent(self) -> float:
        denominator = self.households - self.opted_out
        return 100.0 * self.done / denominator if denominator else 0.0


def progress_summary(rows: list[ProjectProgress]) -> ProgressSummary:
    """Totals of `project_progress` rows (the same scope and filters)."""
    return ProgressSummary(
        projects=len(rows), accepted=sum(1 for r in rows if r.state == "accepted"),
        overdue=sum(1 for r in rows if r.overdue),
        households=sum(r.in_scope for r in rows), done=sum(r.done for r in rows),
        opted_out=sum(r.opted_out for r in rows))
