"""Funding figures from the database, the stored award computation, recorded payments.

The arithmetic is in `onemeter_funding.award`; this module reads the projects of every
sub-district that enables the plugin, asks the hook for the rule in force, and writes the
computation (district-wide header, one tenant-owned line per project).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from onemeter.formatting import BEIJING
from onemeter.registry.models import Community, Household
from onemeter.retrofit.models import ProjectEvent, RetrofitProject
from onemeter.retrofit.procedure import state_label
from onemeter.tenancy import Tenant, TenantScope, current_scope, use_scope
from onemeter.utilities import utility_label
from onemeter_funding.award import (
    ACCEPTED,
    AwardRefused,
    AwardResult,
    ProjectFigures,
    compute_award,
    to_fen,
)
from onemeter_funding.models import (
    AwardAllocation,
    AwardComputation,
    AwardGrant,
    FundingPayment,
    ProjectFunding,
)

PLUGIN = "funding"
ZERO = Decimal("0.00")


def beijing_day(value: dt.datetime | None) -> dt.date | None:
    """The Beijing calendar day of a naive-UTC timestamp."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC).astimezone(BEIJING).date()


def funding_tenants(session: Session) -> list[Tenant]:
    """Active sub-districts whose tenants/*.toml enables the funding plugin, by id."""
    return [t for t in session.query(Tenant).order_by(Tenant.id) if t.enables(PLUGIN)]


def _read_all(session: Session) -> Any:
    scope = current_scope()
    return use_scope(TenantScope.all_read_only(orm_enforced=scope.orm_enforced), session)


def developer_paid(session: Session, project_ids: list[int] | None = None,
                   as_of: dt.date | None = None) -> dict[int, Decimal]:
    """Project id → what the developer has paid (on or before `as_of`), under the scope."""
    query = (sa.select(FundingPayment.project_id, sa.func.sum(FundingPayment.amount))
             .where(FundingPayment.payer == "developer").group_by(FundingPayment.project_id))
    if as_of is not None:
        query = query.where(FundingPayment.paid_on <= as_of)
    if project_ids is not None:
        query = query.where(FundingPayment.project_id.in_(project_ids or [-1]))
    return {pid: to_fen(total or 0) for pid, total in session.execute(query)}


def project_figures(session: Session, as_of: dt.date,
                    tenant_ids: list[int] | None = None) -> list[ProjectFigures]:
    """Every retrofit project of the funding tenants (or of `tenant_ids`) as on `as_of`.

    Reads what the current scope allows; the job and the finance pages read all tenants.
    """
    if tenant_ids is None:
        tenant_ids = [t.id for t in funding_tenants(session)]
    accepted = (sa.select(ProjectEvent.project_id, sa.func.max(ProjectEvent.at).label("at"))
                .where(ProjectEvent.to_state == ACCEPTED).group_by(ProjectEvent.project_id)
                .subquery())
    households = (sa.select(Household.community_id, sa.func.count(Household.id).label("n"))
                  .where(Household.opted_out.is_(False)).group_by(Household.community_id)
                  .subquery())
    rows = session.execute(
        sa.select(RetrofitProject.id, RetrofitProject.tenant_id, RetrofitProject.state,
                  RetrofitProject.utility, Community.name, accepted.c.at,
                  ProjectFunding.reviewed_amount, ProjectFunding.reviewed_on, households.c.n)
        .join(Community, Community.id == RetrofitProject.community_id)
        .outerjoin(accepted, accepted.c.project_id == RetrofitProject.id)
        .outerjoin(ProjectFunding, ProjectFunding.project_id == RetrofitProject.id)
        .outerjoin(households, households.c.community_id == RetrofitProject.community_id)
        .where(RetrofitProject.tenant_id.in_(tenant_ids or [-1]))
        .order_by(RetrofitProject.tenant_id, RetrofitProject.id)).all()
    paid = developer_paid(session, None, as_of)
    return [ProjectFigures(
        project_id=pid, tenant_id=tid, state=state, state_label=state_label(state),
        accepted_on=beijing_day(at), reviewed_amount=reviewed, reviewed_on=reviewed_on,
        developer_paid=paid.get(pid, ZERO), households=int(n or 0),
        label=f"{name}（{utility_label(utility)}）")
        for pid, tid, state, utility, name, at, reviewed, reviewed_on, n in rows]


def latest_grant(session: Session, as_of: dt.date | None = None) -> AwardGrant | None:
    """The most recently entered grant (for `as_of`: the latest dated on or before it)."""
    query = session.query(AwardGrant)
    if as_of is not None:
        query = query.filter(AwardGrant.as_of <= as_of)
    return query.order_by(AwardGrant.id.desc()).first()


def latest_computation(session: Session, as_of: dt.date | None = None
                       ) -> AwardComputation | None:
    """The most recent computation (for `as_of`: the latest made for a day up to it)."""
    query = session.query(AwardComputation)
    if as_of is not None:
        query = query.filter(AwardComputation.as_of <= as_of)
    return query.order_by(AwardComputation.id.desc()).first()


def preview(session: Session, plugin_manager: Any, as_of: dt.date,
            granted: Decimal | int | str = 0, *, strict: bool = True) -> AwardResult:
    """The award as it would be computed now (nothing written): cap and eligibility.

    Raises AwardRefused when no rule is in force or (with `strict`) the grant exceeds the cap.
    """
    with _read_all(session):
        figures = project_figures(session, as_of)
    rule = plugin_manager.hook.onemeter_award_rule(as_of=as_of)
    return compute_award(figures, rule, as_of, granted, strict=strict)


def compute_and_store(session: Session, plugin_manager: Any, as_of: dt.date,
                      grant: AwardGrant | None, *, trigger: str = "",
                      strict: bool = False) -> AwardComputation:
    """Compute the award for every funding tenant on `as_of` and store it; flushes.

    Reads every tenant, writes the district header, then each tenant's lines under that
    tenant's own write scope (so the write guard and row-level security apply as usual).
    The caller commits. Raises AwardRefused (no rule in force; grant over the cap if strict).
    """
    granted = grant.amount if grant is not None else ZERO
    result = preview(session, plugin_manager, as_of, granted, strict=strict)
    computation = AwardComputation(
        as_of=as_of, rule_code=result.rule.code, rule_version=result.rule.version,
        rule_label=result.rule.label, grant_id=grant.id if grant is not None else None,
        granted=result.granted, cap=result.cap, allocated=result.allocated,
        eligible_total=result.eligible_total, eligible_count=result.eligible_count,
        project_count=len(result.projects), note=result.note or None,
        trigger=(trigger or None) and trigger[:255])
    session.add(computation)
    session.flush()
    by_tenant: dict[int, list] = defaultdict(list)
    for line in result.projects:
        by_tenant[line.figures.tenant_id].append(line)
    scope = current_scope()
    for tenant_id, lines in sorted(by_tenant.items()):
        with use_scope(TenantScope(read=frozenset({tenant_id}), write=tenant_id,
                                   orm_enforced=scope.orm_enforced,
                                   label=f"funding-recompute:{tenant_id}"), session):
            session.add_all(AwardAllocation(
                tenant_id=tenant_id, computation_id=computation.id,
                project_id=line.figures.project_id, eligible=line.eligible,
                reason=line.reason[:500] or None, reviewed_amount=line.figures.reviewed_amount,
                developer_paid=line.figures.developer_paid, award=line.award,
                backstop=line.backstop) for line in lines)
            session.flush()
    return computation


def record_recovered_payment(session: Session, tenant_id: int, project_id: int,
                             amount: Decimal, paid_on: dt.date, reference: str,
                             source: str) -> FundingPayment | None:
    """A developer payment recovered by another plugin (the courts); None when the tenant
    does not enable funding. Flushes in the caller's transaction and scope."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or not tenant.enables(PLUGIN):
        return None
    if not isinstance(amount, Decimal) or amount <= 0:
        raise AwardRefused(f"追回金额须为大于 0 的金额（元），收到：{amount!r}")
    project = session.get(RetrofitProject, project_id)
    if project is None or project.tenant_id != tenant_id:
        raise AwardRefused(f"改造项目 {project_id} 不存在或不属于该办事处")
    payment = FundingPayment(
        tenant_id=tenant_id, project_id=project_id, payer="developer", amount=to_fen(amount),
        paid_on=paid_on, document=reference or "—", source=source or "unknown",
        reference=reference, comment=f"由「{source}」插件登记的开发建设单位追回款")
    session.add(payment)
    session.flush()
    return payment


def tenant_totals(session: Session, tenant_ids: list[int], as_of: dt.date | None = None
                  ) -> dict[int, dict[str, Any]]:
    """Per tenant: projects, estimate, reviewed investment, developer committed and paid,
    and from the latest computation the award, backstop and eligible/ineligible counts."""
    totals: dict[int, dict[str, Any]] = {
        t: {"projects": 0, "estimated": ZERO, "reviewed": ZERO, "committed": ZERO,
            "paid": ZERO, "award": ZERO, "backstop": ZERO, "eligible": 0, "ineligible": 0}
        for t in tenant_ids}
    ids = tenant_ids or [-1]
    for tid, n in session.execute(
            sa.select(RetrofitProject.tenant_id, sa.func.count(RetrofitProject.id))
            .where(RetrofitProject.tenant_id.in_(ids)).group_by(RetrofitProject.tenant_id)):
        totals[tid]["projects"] = n
    reviewed = sa.case((ProjectFunding.reviewed_on <= as_of, ProjectFunding.reviewed_amount),
                       else_=None) if as_of else ProjectFunding.reviewed_amount
    for tid, est, rev, com in session.execute(
            sa.select(ProjectFunding.tenant_id, sa.func.sum(ProjectFunding.estimated_investment),
                      sa.func.sum(reviewed), sa.func.sum(ProjectFunding.developer_committed))
            .where(ProjectFunding.tenant_id.in_(ids)).group_by(ProjectFunding.tenant_id)):
        totals[tid].update(estimated=to_fen(est or 0), reviewed=to_fen(rev or 0),
                           committed=to_fen(com or 0))
    query = (sa.select(FundingPayment.tenant_id, sa.func.sum(FundingPayment.amount))
             .where(FundingPayment.payer == "developer", FundingPayment.tenant_id.in_(ids))
             .group_by(FundingPayment.tenant_id))
    if as_of is not None:
        query = query.where(FundingPayment.paid_on <= as_of)
    for tid, paid in session.execute(query):
        totals[tid]["paid"] = to_fen(paid or 0)
    computation = latest_computation(session, as_of)
    if computation is not None:
        for tid, award, back, eligible, n in session.execute(
                sa.select(AwardAllocation.tenant_id, sa.func.sum(AwardAllocation.award),
                          sa.func.sum(AwardAllocation.backstop),
                          sa.func.sum(sa.case((AwardAllocation.eligible, 1), else_=0)),
                          sa.func.count(AwardAllocation.id))
                .where(AwardAllocation.computation_id == computation.id,
                       AwardAllocation.tenant_id.in_(ids))
                .group_by(AwardAllocation.tenant_id)):
            totals[tid].update(award=to_fen(award or 0), backstop=to_fen(back or 0),
                               eligible=int(eligible or 0), ineligible=n - int(eligible or 0))
    return totals
