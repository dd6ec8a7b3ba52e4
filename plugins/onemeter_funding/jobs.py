"""The recomputation job (runs in the RQ worker): the award, allocation and backstop, stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app

from onemeter.database import db
from onemeter.retrofit.service import beijing_today
from onemeter.tenancy import TenantScope, use_scope
from onemeter_funding.models import AwardGrant
from onemeter_funding.service import compute_and_store, latest_grant

#: The job kind, declared through `onemeter_job_kinds`.
RECOMPUTE = "funding.recompute"


def recompute(ctx: Any, as_of: str | None = None, grant_id: int | None = None,
              trigger: str = "") -> dict[str, Any]:
    """Recompute the district's award on `as_of` (default: today in Beijing) with the grant
    `grant_id` (default: the latest entered) and store it; returns the computation's id.

    The JobRun belongs to the sub-district whose change triggered it, but the award is
    district-wide: the job reads every funding tenant and writes each tenant's lines in
    that tenant's scope. Its counts name the computation only, nothing of other tenants.
    """
    day = dt.date.fromisoformat(as_of) if as_of else beijing_today()
    # Progress goes in its own transaction: report before this one writes (SQLite has one
    # writer at a time); the runner records the counts returned when the job ends.
    ctx.progress(0, 1, message=f"测算 {day.isoformat()}")
    session = db.session
    with use_scope(TenantScope.all_read_only(), session):
        grant = session.get(AwardGrant, grant_id) if grant_id else latest_grant(session, day)
    pm = current_app.extensions["onemeter_plugins"]
    computation = compute_and_store(session, pm, day, grant, trigger=trigger or "后台任务")
    return {"计算编号": computation.id}
