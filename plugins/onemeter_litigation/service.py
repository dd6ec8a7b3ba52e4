"""Opening cases on referral, taking a case's steps, passing recoveries on, and the rollups.

Every write here runs in the caller's transaction and tenant scope; the caller commits. The
core's change log records each row written (cases, links, events, shares) on its own.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from onemeter.formatting import money
from onemeter.registry.models import Community, Developer
from onemeter.retrofit.models import ProjectEvent, RetrofitProject
from onemeter.retrofit.service import beijing_today
from onemeter.tenancy import Tenant
from onemeter_litigation.models import (
    CLOSED,
    CaseEvent,
    CaseProject,
    LitigationCase,
    RecoveryShare,
)
from onemeter_litigation.stages import (
    DEADLINE_STATES,
    INITIAL_STATE,
    STEPS,
    StepRefused,
    advance,
    check,
    split_by_largest_remainder,
)

#: The plugin's entry-point name: what `tenants/<code>.toml` lists to enable it.
PLUGIN = "litigation"
#: Shown as the developer of a case whose community has none recorded.
UNKNOWN_DEVELOPER = "（未登记开发建设单位）"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def tenant_enables(session: Session, tenant_id: int) -> bool:
    """Whether sub-district `tenant_id` enables this plugin."""
    return bool(enabling_tenants(session, [tenant_id]))


def enabling_tenants(session: Session, tenant_ids: list[int]) -> list[int]:
    """Those of `tenant_ids` that enable this plugin, in the given order (one query: the
    district's rollup asks for 100 sub-districts on every page view)."""
    wanted = set(tenant_ids)
    enabled = {t.id for t in session.scalars(sa.select(Tenant).where(Tenant.id.in_(wanted)))
               if t.enables(PLUGIN)} if wanted else set()
    return [t for t in tenant_ids if t in enabled]


def open_or_join_case(session: Session, project_id: int, tenant_id: int,
                      developer_id: int | None, *, now: dt.datetime | None = None
                      ) -> LitigationCase | None:
    """File project `project_id` under its developer's open case, opening one if none.

    Called from the referral hook. Returns None (and writes nothing) when the sub-district
    does not enable the plugin. A project already filed stays in its case. Projects whose
    community has no developer recorded get a case of their own.
    """
    if not tenant_enables(session, tenant_id):
        return None
    now = now or _utcnow()
    link = session.scalar(sa.select(CaseProject).where(CaseProject.project_id == project_id))
    if link is not None:
        return link.case
    case = None
    if developer_id is not None:
        case = session.scalar(sa.select(LitigationCase).where(
            LitigationCase.developer_id == developer_id, LitigationCase.state != CLOSED))
    kind = "join_case"
    if case is None:
        developer = session.get(Developer, developer_id) if developer_id is not None else None
        case = LitigationCase(
            tenant_id=tenant_id, developer_id=developer_id,
            developer_name=developer.name if developer else UNKNOWN_DEVELOPER,
            legal_representative=developer.legal_representative if developer else None,
            state=INITIAL_STATE, opened_at=now, amount_recovered=decimal.Decimal("0.00"))
        session.add(case)
        session.flush()
        kind = "open_case"
    session.add(CaseProject(tenant_id=tenant_id, case_id=case.id, project_id=project_id,
                            referred_at=now))
    project = session.get(RetrofitProject, project_id)
    session.add(CaseEvent(tenant_id=tenant_id, case_id=case.id, at=now, step=kind,
                          from_state=case.state, to_state=case.state, project_id=project_id,
                          comment=f"改造项目「{project}」依法提起诉讼" if project else None))
    session.flush()
    session.expire(case, ["links"])
    return case


def file_earlier_referrals(session: Session, tenant_id: int) -> int:
    """Open or join cases for the tenant's projects referred to litigation that have none.

    For referrals made before the sub-district enabled the plugin, or written without the
    hook (the demo district). In referral order, each at its referral time. Returns how many
    projects were filed; 0 when the tenant does not enable the plugin.
    """
    if not tenant_enables(session, tenant_id):
        return 0
    filed = sa.select(CaseProject.project_id)
    rows = session.execute(
        sa.select(RetrofitProject.id, Community.developer_id, sa.func.min(ProjectEvent.at))
        .join(ProjectEvent, ProjectEvent.project_id == RetrofitProject.id)
        .join(Community, Community.id == RetrofitProject.community_id)
        .where(RetrofitProject.tenant_id == tenant_id,
               ProjectEvent.transition == "refer_to_litigation",
               RetrofitProject.id.not_in(filed))
        .group_by(RetrofitProject.id, Community.developer_id)
        .order_by(sa.func.min(ProjectEvent.at), RetrofitProject.id)).all()
    for project_id, developer_id, referred_at in rows:
        open_or_join_case(session, project_id, tenant_id, developer_id, now=referred_at)
    return len(rows)


def _plugin_manager(plugin_manager: Any) -> Any:
    if plugin_manager is not None:
        return plugin_manager
    if has_app_context():
        return current_app.extensions.get("onemeter_plugins")
    return None


def take_step(session: Session, case: LitigationCase, name: str, user: Any, *,
              today: dt.date | None = None, now: dt.datetime | None = None,
              store_attachment: Callable[[], str] | None = None,
              plugin_manager: Any = None, **inputs: Any) -> CaseEvent:
    """Take step `name` on `case` as `user` with `inputs`, and record it.

    Checks stage, role and inputs (`stages.check`; StepRefused with the Chinese reason,
    nothing written), stores the attachment (`store_attachment` returns its key; called
    only once the checks passed), moves the stage through `CaseStages`, updates the case's
    fields, writes a `CaseEvent`, and for 记录执行回款 splits the amount over the linked
    projects to the fen and calls `onemeter_developer_payment_recovered` once per project.
    The caller commits (or rolls back on StepRefused).
    """
    today = today or beijing_today()
    now = now or _utcnow()
    # Two clerks on the same case: the second waits and sees the first one's stage and
    # amounts (PostgreSQL row lock; SQLite serializes writers anyway).
    session.refresh(case, with_for_update=True)
    roles = frozenset(r.name for r in (getattr(user, "roles", None) or []))
    cleaned = check(case, name, roles, getattr(user, "tenant_id", None), inputs, today)
    spec = STEPS[name]
    links = list(session.scalars(sa.select(CaseProject).where(CaseProject.case_id == case.id)
                                 .order_by(CaseProject.id)))
    amount = cleaned.get("amount")
    if name == "record_recovery":
        if case.amount_awarded is None:
            raise StepRefused("尚未记录判决金额，不能记录执行回款")
        total = (case.amount_recovered or decimal.Decimal(0)) + amount
        if total > case.amount_awarded:
            raise StepRefused(f"累计回款{money(total)}将超过判决金额{money(case.amount_awarded)}，"
                              f"已回款{money(case.amount_recovered)}")
        if not links:
            raise StepRefused("本案没有关联的改造项目，回款无法分配")
    attachment = store_attachment() if store_attachment is not None else None
    before, after = advance(case, spec)
    if spec.target is not None:
        case.deadline = (cleaned.get("deadline") or cleaned.get("hearing_on")
                         if after in DEADLINE_STATES else None)
    if name == "file_lawsuit":
        case.court, case.case_number = cleaned["court"], cleaned["case_number"]
        case.filed_on = cleaned["occurred_on"]
    elif name == "record_judgment":
        case.judgment_on, case.amount_awarded = cleaned["occurred_on"], amount
    elif name == "apply_enforcement" and cleaned.get("case_number"):
        case.enforcement_case_number = cleaned["case_number"]
    elif name == "record_recovery":
        case.amount_recovered = (case.amount_recovered or decimal.Decimal(0)) + amount
    elif name == "close_case":
        case.closed_on = cleaned.get("occurred_on") or today
    event = CaseEvent(
        tenant_id=case.tenant_id, case_id=case.id, at=now, user_id=getattr(user, "id", None),
        actor=getattr(user, "username", None), step=name, from_state=before, to_state=after,
        department=cleaned.get("department"), result=cleaned.get("result"),
        occurred_on=cleaned.get("occurred_on"),
        deadline=cleaned.get("deadline") or cleaned.get("hearing_on"),
        court=cleaned.get("court"), case_number=cleaned.get("case_number"), amount=amount,
        document=cleaned.get("document"), attachment=attachment,
        comment=cleaned.get("comment"))
    session.add(event)
    session.flush()
    if name == "record_recovery":
        _pass_on_recovery(session, case, event, links, plugin_manager)
    return event


def _pass_on_recovery(session: Session, case: LitigationCase, event: CaseEvent,
                      links: list[CaseProject], plugin_manager: Any) -> None:
    """Split the recovery over the case's projects and tell the funding side, per project."""
    shares = split_by_largest_remainder(event.amount, [1] * len(links))
    reference = "；".join(x for x in (case.case_number, event.document) if x)
    pm = _plugin_manager(plugin_manager)
    for link, share in zip(links, shares, strict=True):
        if share == 0:
            continue  # a fen split over more projects than fen: nothing for this one
        session.add(RecoveryShare(tenant_id=case.tenant_id, event_id=event.id,
                                  project_id=link.project_id, amount=share))
        if pm is not None:
            pm.hook.onemeter_developer_payment_recovered(
                tenant_id=case.tenant_id, project_id=link.project_id, amount=share,
                paid_on=event.occurred_on, reference=reference, source=PLUGIN)
    session.flush()


def case_overdue_filter(today: dt.date) -> sa.ColumnElement[bool]:
    """The SQL form of `stages.is_overdue`: a dated stage whose date passed before `today`."""
    return sa.and_(LitigationCase.state.in_(sorted(DEADLINE_STATES)),
                   LitigationCase.deadline.is_not(None), LitigationCase.deadline < today)


def case_figures(session: Session, tenant_ids: list[int], today: dt.date
                 ) -> dict[int, dict[str, Any]]:
    """Per tenant (of `tenant_ids` the scope reads): open, overdue, awarded, recovered."""
    is_open = LitigationCase.state != CLOSED
    rows = session.execute(
        sa.select(LitigationCase.tenant_id,
                  sa.func.count().filter(is_open),
                  sa.func.count().filter(sa.and_(is_open, case_overdue_filter(today))),
                  sa.func.coalesce(sa.func.sum(LitigationCase.amount_awarded), 0),
                  sa.func.coalesce(sa.func.sum(LitigationCase.amount_recovered), 0))
        .where(LitigationCase.tenant_id.in_(tenant_ids or [-1]))
        .group_by(LitigationCase.tenant_id))
    cent = decimal.Decimal("0.01")
    return {t: {"open": n_open, "overdue": n_overdue,
                "awarded": decimal.Decimal(str(awarded)).quantize(cent),
                "recovered": decimal.Decimal(str(recovered)).quantize(cent)}
            for t, n_open, n_overdue, awarded, recovered in rows}
