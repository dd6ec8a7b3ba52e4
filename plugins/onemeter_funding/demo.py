"""Demo funding figures for `onemeter demo load` (synthetic, deterministic): the lead calls
`seed(session, tenants)` after the retrofit projects exist."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from onemeter.registry.models import Household
from onemeter.retrofit.models import RetrofitProject
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter_funding.award import to_fen
from onemeter_funding.models import AwardGrant, FundingPayment, ProjectFunding
from onemeter_funding.service import PLUGIN, compute_and_store, preview

#: Synthetic cost per household (元) the estimates are drawn around.
PER_HOUSEHOLD = Decimal("1450.00")


def seed(session: Session, tenants: Iterable[Tenant], *, plugin_manager: Any = None,
         today: dt.date | None = None, seed: int = 2021, commit: bool = True
         ) -> dict[str, int]:
    """Give every project of the tenants that enable funding an estimate, most accepted ones a
    fiscal review, developers' payments on some; then, with `plugin_manager`, grant 90 % of
    the cap and store one computation. Idempotent: projects with funding are left alone.
    Commits unless `commit` is False (the demo loader's hook: its caller commits). Returns
    counts (funding rows, payments, computations)."""
    rng = random.Random(seed)
    today = today or dt.date.today()
    counts = {"funding": 0, "payments": 0, "computations": 0}
    for tenant in tenants:
        if not tenant.enables(PLUGIN):
            continue
        with use_scope(TenantScope.tenant(tenant.id), session):
            households = dict(session.execute(
                sa.select(Household.community_id, sa.func.count(Household.id))
                .group_by(Household.community_id)).all())
            funded = set(session.scalars(sa.select(ProjectFunding.project_id)))
            projects = session.scalars(sa.select(RetrofitProject)
                                       .order_by(RetrofitProject.id)).all()
            for project in projects:
                if project.id in funded:
                    continue
                n = max(households.get(project.community_id, 0), 20)
                estimate = to_fen(PER_HOUSEHOLD * n * Decimal(rng.uniform(0.8, 1.25)))
                committed = to_fen(estimate * Decimal(rng.choice(["0", "0.3", "0.5", "1"])))
                row = ProjectFunding(tenant_id=tenant.id, project_id=project.id,
                                     estimated_investment=estimate,
                                     developer_committed=committed or None,
                                     review_submitted_on=dt.date(2021, 9, 1))
                if project.state == "accepted" and rng.random() < 0.8:
                    row.reviewed_amount = to_fen(estimate * Decimal(rng.uniform(0.85, 1.0)))
                    row.reviewer = "区财政局投资评审中心"
                    row.reviewed_on = dt.date(2022, 3, 15)
                    row.review_document = f"平财评〔2022〕{project.id}号"
                session.add(row)
                counts["funding"] += 1
                if committed and rng.random() < 0.7:
                    session.add(FundingPayment(
                        tenant_id=tenant.id, project_id=project.id, payer="developer",
                        amount=to_fen(committed * Decimal(rng.choice(["0.5", "1"]))),
                        paid_on=dt.date(2022, 6, 30), document=f"进账单 {project.id:05d}"))
                    counts["payments"] += 1
            session.flush()
    if commit:
        session.commit()
    if plugin_manager is not None and counts["funding"]:
        with use_scope(TenantScope.all_read_only(), session):
            cap = preview(session, plugin_manager, today).cap
        grant = AwardGrant(amount=to_fen(cap * Decimal("0.9")), as_of=today,
                           document="信财建〔2023〕演示号", entered_by="demo")
        session.add(grant)
        session.flush()
        compute_and_store(session, plugin_manager, today, grant, trigger="演示数据")
        if commit:
            session.commit()
        else:
            session.flush()
        counts["computations"] = 1
    return counts
