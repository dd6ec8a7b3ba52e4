"""资金 pages: per-project funding (tenant), payments, allocations, and finance's dashboard.

Tenant staff enter the estimate, the developer's commitment, submission for review and
payments; the finance bureau (财政局, role `finance`) reads every funding sub-district and
alone enters the fiscal review (财政评审) and the award granted (以奖代补).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, ModelView, expose, has_access
from flask_appbuilder.models.sqla.filters import FilterInFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from werkzeug.wrappers import Response
from wtforms import SelectField
from wtforms.validators import DataRequired

from onemeter.database import db
from onemeter.exports import write_report
from onemeter.formatting import local_date, local_datetime, money, yes_no
from onemeter.jobs import QueueUnavailable, enqueue_job
from onemeter.retrofit.service import beijing_today
from onemeter.security import (
    DISTRICT_VIEWER,
    FINANCE,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
)
from onemeter.tenancy import Tenant, TenantScope, current_scope, use_scope
from onemeter.views import TenantModelView, xlsx_download
from onemeter_funding.award import AwardRefused, to_fen
from onemeter_funding.jobs import RECOMPUTE
from onemeter_funding.models import (
    MANUAL,
    PAYERS,
    REVIEW_FIELDS,
    AwardAllocation,
    AwardComputation,
    AwardGrant,
    FundingPayment,
    ProjectFunding,
)
from onemeter_funding.service import (
    PLUGIN,
    funding_tenants,
    latest_computation,
    preview,
    tenant_totals,
)

_TENANT_WRITE = (*READ_PERMISSIONS, "can_add", "can_edit")
#: The plugin's own templates (funding/*.html), found through each view's blueprint.
TEMPLATES = str(Path(__file__).parent / "templates")


def _funding_tenant_ids() -> list[int]:
    """Ids of the sub-districts that enable funding: cross-tenant readers see only these."""
    return [t.id for t in funding_tenants(db.session)] or [-1]


_ENABLED_ONLY = [["tenant_id", FilterInFunction, _funding_tenant_ids]]


def parse_money(value: str | None, label: str, *, required: bool = True,
                positive: bool = False) -> Decimal | None:
    """A form's amount in 元 as Decimal (half up to the fen); ValueError says why in Chinese."""
    text = (value or "").strip().replace(",", "").replace("，", "").removesuffix("元").strip()
    if not text:
        if required:
            raise ValueError(f"请填写{label}（元）")
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{label}「{value}」不是金额，请填写数字（元，最多两位小数）") from None
    if not amount.is_finite():
        raise ValueError(f"{label}「{value}」不是金额")
    if amount < 0 or (positive and amount == 0):
        raise ValueError(f"{label}须{'大于' if positive else '不小于'} 0 元")
    if abs(amount) >= Decimal("1e12"):
        raise ValueError(f"{label}超出可登记的范围")
    return to_fen(amount)


def parse_day(value: str | None, label: str) -> dt.date:
    """A form's date (YYYY-MM-DD); ValueError says why in Chinese."""
    try:
        return dt.date.fromisoformat((value or "").strip())
    except ValueError:
        raise ValueError(f"请按 年-月-日 填写{label}（如 2021-07-07）") from None


def start_recompute(tenant_id: int, trigger: str, **params: Any) -> None:
    """Queue the recomputation (never run in the request); a Redis outage is only flashed."""
    scope = current_scope()
    # Finance reads every tenant and writes none: its JobRun alone is filed in `tenant_id`.
    filing = TenantScope(read=scope.read, write=tenant_id, orm_enforced=scope.orm_enforced,
                         label=f"funding-job:{tenant_id}")
    try:
        with use_scope(filing, db.session):
            run = enqueue_job(RECOMPUTE, tenant_id=tenant_id,
                              user_id=getattr(g.user, "id", None), queue="reports",
                              params={"trigger": trigger[:200], **params})
    except QueueUnavailable as exc:
        flash(f"{exc}；资金测算将在下次重新计算时更新", "warning")
    else:
        flash(f"已提交资金重新测算（后台任务 #{run.id}）", "info")


def _check_amounts(item: Any, labels: dict[str, str]) -> None:
    for column, label in labels.items():
        value = getattr(item, column)
        if value is not None:
            if value < 0:
                raise ValueError(f"{label}须不小于 0 元")
            setattr(item, column, to_fen(value))


class ProjectFundingView(TenantModelView):
    """项目资金: one per retrofit project; finance enters the fiscal review on its page."""

    datamodel = SQLAInterface(ProjectFunding)
    route_base = "/funding/projects"
    template_folder = TEMPLATES
    show_template = "funding/project_show.html"
    om_roles = {TENANT_ADMIN: _TENANT_WRITE, TENANT_STAFF: _TENANT_WRITE,
                FINANCE: (*READ_PERMISSIONS, "can_review"),
                DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS}
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_export",
                        "can_review"]
    base_filters = _ENABLED_ONLY
    base_order = ("id", "desc")
    list_title = "项目资金"
    show_title = "项目资金详情"
    add_title = "登记项目资金"
    edit_title = "修改项目资金"
    list_columns = ["tenant", "project", "estimated_investment", "reviewed_amount",
                    "developer_committed", "developer_paid", "reviewed_on", "reviewer"]
    show_columns = ["tenant", "project", "estimated_investment", "developer_committed",
                    "developer_paid", "review_submitted_on", "reviewed_amount", "reviewer",
                    "reviewed_on", "review_document", "note"]
    add_columns = ["project", "estimated_investment", "developer_committed",
                   "review_submitted_on", "note"]
    edit_columns = ["estimated_investment", "developer_committed", "review_submitted_on",
                    "note"]
    search_columns = ["project", "reviewer", "reviewed_on", "note"]
    label_columns = {"tenant": "办事处", "project": "改造项目",
                     "estimated_investment": "投资估算", "developer_committed": "开发建设单位承诺出资",
                     "developer_paid": "开发建设单位已出资", "review_submitted_on": "送审日期",
                     "reviewed_amount": "财政评审投资", "reviewer": "评审人",
                     "reviewed_on": "评审日期", "review_document": "评审文书", "note": "备注"}
    description_columns = {"estimated_investment": "元，两位小数",
                           "developer_committed": "元；原则上由原开发建设单位承担（四(一)）",
                           "review_submitted_on": "报送区财政局评审的日期"}
    formatters_columns = {"estimated_investment": money, "developer_committed": money,
                          "developer_paid": money, "reviewed_amount": money,
                          "review_submitted_on": local_date, "reviewed_on": local_date,
                          "note": lambda v: v or ""}
    _labels = {"estimated_investment": "投资估算", "developer_committed": "开发建设单位承诺出资"}

    def pre_add(self, item: ProjectFunding) -> None:
        _check_amounts(item, self._labels)
        session = self.datamodel.session
        project_id = item.project_id or getattr(item.project, "id", None)
        with session.no_autoflush:
            taken = project_id is not None and session.scalar(
                sa.select(ProjectFunding.id).where(ProjectFunding.project_id == project_id))
        if taken:
            raise ValueError(f"改造项目「{item.project}」已登记资金，请在原记录上修改")

    def pre_update(self, item: ProjectFunding) -> None:
        _check_amounts(item, self._labels)
        state = sa.inspect(item)
        if any(state.attrs[f].history.has_changes() for f in REVIEW_FIELDS):
            raise ValueError("财政评审由区财政局录入，办事处不能修改")

    def post_add(self, item: ProjectFunding) -> None:
        start_recompute(item.tenant_id, f"登记项目资金 #{item.id}")

    def post_update(self, item: ProjectFunding) -> None:
        start_recompute(item.tenant_id, f"修改项目资金 #{item.id}")

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The project's funding: figures, payments, its line of the latest computation, and
        for finance the fiscal-review form."""
        pk = self._deserialize_pk_if_composite(pk)
        item = self.visible_or_404(pk)
        widgets = self._show(pk)
        session = self.datamodel.session
        payments = (session.query(FundingPayment)
                    .filter(FundingPayment.project_id == item.project_id)
                    .order_by(FundingPayment.paid_on, FundingPayment.id).all())
        computation = latest_computation(session)
        line = None
        if computation is not None:
            line = (session.query(AwardAllocation)
                    .filter(AwardAllocation.computation_id == computation.id,
                            AwardAllocation.project_id == item.project_id).first())
        can_review = self.appbuilder.sm.has_access("can_review", self.class_permission_name)
        return self.render_template(
            self.show_template, pk=pk, title=self.show_title, widgets=widgets,
            related_views=self._related_views, item=item, payments=payments,
            computation=computation, line=line, can_review=can_review, money=money,
            local_date=local_date, local_datetime=local_datetime, payers=PAYERS)

    @expose("/review/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("review")
    def review(self, pk: int) -> Response:
        """财政评审: the finance bureau enters the reviewed investment, reviewer, date, document.

        Finance reads every tenant and writes none; the review alone is written in the
        project's tenant (write guard and row-level security see exactly that tenant).
        """
        item = self.visible_or_404(pk)
        back = redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))
        form = request.form
        try:
            amount = parse_money(form.get("reviewed_amount"), "财政评审投资")
            reviewed_on = parse_day(form.get("reviewed_on"), "评审日期")
            if reviewed_on > beijing_today():
                raise ValueError("评审日期不能晚于今天")
            reviewer = (form.get("reviewer") or "").strip()
            document = (form.get("review_document") or "").strip()
            if not reviewer:
                raise ValueError("请填写评审人")
            if not document:
                raise ValueError("请填写评审文书（文号或报告名称）")
        except ValueError as exc:
            flash(f"财政评审未保存：{exc}", "danger")
            return back
        session = self.datamodel.session
        scope = current_scope()
        tenant_id = item.tenant_id
        with use_scope(TenantScope(read=scope.read, write=tenant_id,
                                   orm_enforced=scope.orm_enforced,
                                   label=f"fiscal-review:{tenant_id}"), session):
            item.reviewed_amount, item.reviewed_on = amount, reviewed_on
            item.reviewer, item.review_document = reviewer[:100], document[:255]
            session.commit()
        flash(f"财政评审已保存：{money(amount)}", "success")
        start_recompute(tenant_id, f"财政评审 项目资金 #{pk}")
        return back


class FundingPaymentView(TenantModelView):
    """资金到位: payments towards a project, dated and documented, by payer."""

    datamodel = SQLAInterface(FundingPayment)
    route_base = "/funding/payments"
    om_roles = {TENANT_ADMIN: TenantModelView.om_roles[TENANT_ADMIN],
                TENANT_STAFF: TenantModelView.om_roles[TENANT_STAFF],
                FINANCE: READ_PERMISSIONS, DISTRICT_VIEWER: READ_PERMISSIONS,
                PLATFORM_ADMIN: READ_PERMISSIONS}
    base_filters = _ENABLED_ONLY
    base_order = ("paid_on", "desc")
    list_title = show_title = "资金到位"
    add_title = "登记到位资金"
    edit_title = "修改到位资金"
    list_columns = ["tenant", "project", "payer", "amount", "paid_on", "document", "source",
                    "reference"]
    show_columns = [*list_columns, "comment"]
    add_columns = edit_columns = ["project", "payer", "amount", "paid_on", "document",
                                  "comment"]
    search_columns = ["project", "payer", "paid_on", "document", "reference"]
    label_columns = {"tenant": "办事处", "project": "改造项目", "payer": "出资方",
                     "amount": "金额", "paid_on": "到位日期", "document": "票据或文书",
                     "source": "登记来源", "reference": "关联文书（案号等）", "comment": "说明"}
    formatters_columns = {"amount": money, "paid_on": local_date,
                          "payer": lambda p: PAYERS.get(p, p),
                          "source": lambda s: "手工登记" if s == MANUAL else f"{s} 插件"}
    add_form_extra_fields = edit_form_extra_fields = {
        "payer": SelectField("出资方", choices=list(PAYERS.items()),
                             validators=[DataRequired()])}

    def pre_add(self, item: FundingPayment) -> None:
        if item.payer not in PAYERS:
            raise ValueError("出资方须为：" + "、".join(PAYERS.values()))
        if item.amount is None or item.amount <= 0:
            raise ValueError("金额须大于 0 元")
        item.amount = to_fen(item.amount)
        if not (item.document or "").strip():
            raise ValueError("请填写票据或文书")
        if item.source is None:
            item.source = MANUAL

    def pre_update(self, item: FundingPayment) -> None:
        if item.source != MANUAL:
            raise ValueError(f"此笔款项由「{item.source}」插件登记（{item.reference or ''}），"
                             "不能在此修改")
        self.pre_add(item)

    def pre_delete(self, item: FundingPayment) -> None:
        if item.source != MANUAL:
            raise ValueError(f"此笔款项由「{item.source}」插件登记，不能在此删除")

    def post_add(self, item: FundingPayment) -> None:
        start_recompute(item.tenant_id, f"登记到位资金 #{item.id}")

    def post_update(self, item: FundingPayment) -> None:
        start_recompute(item.tenant_id, f"修改到位资金 #{item.id}")


class AwardAllocationView(TenantModelView):
    """奖补分配: each project's line of each computation (read-only; the job writes them)."""

    datamodel = SQLAInterface(AwardAllocation)
    route_base = "/funding/allocations"
    om_roles = {role: READ_PERMISSIONS for role in (TENANT_ADMIN, TENANT_STAFF, FINANCE,
                                                    DISTRICT_VIEWER, PLATFORM_ADMIN)}
    base_permissions = ["can_list", "can_show", "can_export"]
    base_filters = _ENABLED_ONLY
    base_order = ("id", "desc")
    list_title = show_title = "奖补分配与财政兜底"
    list_columns = ["computation", "tenant", "project", "eligible", "reason", "reviewed_amount",
                    "developer_paid", "award", "backstop"]
    show_columns = list_columns
    search_columns = ["computation", "project", "eligible", "reason"]
    label_columns = {"computation": "测算", "tenant": "办事处", "project": "改造项目",
                     "eligible": "计入奖补", "reason": "不计入原因",
                     "reviewed_amount": "财政评审投资", "developer_paid": "开发建设单位已出资",
                     "award": "以奖代补分配", "backstop": "区财政兜底"}
    formatters_columns = {"eligible": yes_no, "reason": lambda v: v or "",
                          "reviewed_amount": lambda v: money(v) if v is not None else "未评审",
                          "developer_paid": money, "award": money,
                          "backstop": lambda v: money(v) if v is not None else "待评审"}


class AwardComputationView(ModelView):
    """测算记录: every computation with its day, rule (code and version) and totals."""

    datamodel = SQLAInterface(AwardComputation)
    route_base = "/funding/computations"
    om_roles = {FINANCE: ("can_list", "can_show"), DISTRICT_VIEWER: ("can_list", "can_show")}
    base_permissions = ["can_list", "can_show"]
    base_order = ("id", "desc")
    list_title = show_title = "测算记录"
    list_columns = ["id", "as_of", "rule_code", "rule_version", "eligible_total", "cap",
                    "granted", "allocated", "eligible_count", "project_count", "computed_at"]
    show_columns = [*list_columns, "rule_label", "note", "trigger"]
    label_columns = {"id": "编号", "as_of": "测算日", "rule_code": "规则", "rule_version": "版本",
                     "rule_label": "规则说明", "eligible_total": "符合条件的评审投资",
                     "cap": "奖补上限", "granted": "已录入奖补", "allocated": "已分配奖补",
                     "eligible_count": "符合条件项目", "project_count": "项目总数",
                     "computed_at": "计算时间", "note": "说明", "trigger": "触发"}
    formatters_columns = {"as_of": local_date, "eligible_total": money, "cap": money,
                          "granted": money, "allocated": money, "computed_at": local_datetime}


class FundingDashboardView(BaseView):
    """资金总览 (finance): every funding sub-district's investment, developer share,
    backstop, award cap and grant, eligible and not; the grant form and recomputation."""

    route_base = "/funding/dashboard"
    template_folder = TEMPLATES
    default_view = "dashboard"
    om_roles = {FINANCE: ("can_list", "can_grant", "can_export"),
                DISTRICT_VIEWER: ("can_list", "can_export")}
    base_permissions = ["can_list", "can_grant", "can_export"]

    def _tenants(self) -> list[Tenant]:
        return funding_tenants(db.session)

    def _job_tenant(self) -> int:
        """The sub-district a district-wide recomputation's JobRun is filed under."""
        tenants = self._tenants()
        if not tenants:
            abort(404)
        return tenants[0].id

    @expose("/")
    @has_access
    @permission_name("list")
    def dashboard(self) -> Any:
        session = db.session
        tenants = self._tenants()
        totals = tenant_totals(session, [t.id for t in tenants])
        computation = latest_computation(session)
        ineligible = []
        if computation is not None:
            ineligible = (session.query(AwardAllocation)
                          .filter(AwardAllocation.computation_id == computation.id,
                                  AwardAllocation.eligible.is_(False),
                                  AwardAllocation.tenant_id.in_([t.id for t in tenants] or [-1]))
                          .order_by(AwardAllocation.tenant_id, AwardAllocation.project_id)
                          .limit(500).all())
        grants = session.query(AwardGrant).order_by(AwardGrant.id.desc()).limit(10).all()
        keys = ("projects", "estimated", "reviewed", "committed", "paid", "award", "backstop",
                "eligible", "ineligible")
        overall = {k: sum((totals[t.id][k] for t in tenants),
                          Decimal("0.00") if isinstance(totals[tenants[0].id][k], Decimal)
                          else 0) if tenants else 0 for k in keys}
        return self.render_template(
            "funding/dashboard.html", title="资金总览", tenants=tenants, totals=totals,
            overall=overall, computation=computation, ineligible=ineligible, grants=grants,
            can_grant=self.appbuilder.sm.has_access("can_grant", self.class_permission_name),
            today=beijing_today().isoformat(), money=money, local_date=local_date,
            local_datetime=local_datetime)

    @expose("/grant", methods=["POST"])
    @has_access
    @permission_name("grant")
    def grant(self) -> Response:
        """录入以奖代补: the award granted, checked against the cap on that day, then recomputed."""
        back = redirect(url_for(f"{self.__class__.__name__}.dashboard"))
        session = db.session
        try:
            amount = parse_money(request.form.get("amount"), "奖补金额")
            as_of = parse_day(request.form.get("as_of"), "测算日")
            pm = current_app.extensions["onemeter_plugins"]
            result = preview(session, pm, as_of, amount, strict=True)
        except (ValueError, AwardRefused) as exc:
            session.rollback()
            flash(f"奖补金额未保存：{exc}", "danger")
            return back
        grant = AwardGrant(amount=amount, as_of=as_of,
                           document=(request.form.get("document") or "").strip()[:255] or None,
                           entered_by=getattr(g.user, "username", None))
        session.add(grant)
        session.commit()
        flash(f"已录入以奖代补 {money(amount)}（上限 {money(result.cap)}，{result.rule.label}）",
              "success")
        start_recompute(self._job_tenant(), f"财政局录入奖补 #{grant.id}",
                        as_of=as_of.isoformat(), grant_id=grant.id)
        return back

    @expose("/recompute", methods=["POST"])
    @has_access
    @permission_name("grant")
    def recompute(self) -> Response:
        """重新测算 on a chosen day (an older day uses the rule then in force)."""
        back = redirect(url_for(f"{self.__class__.__name__}.dashboard"))
        try:
            as_of = parse_day(request.form.get("as_of"), "测算日")
        except ValueError as exc:
            flash(str(exc), "danger")
            return back
        pm = current_app.extensions["onemeter_plugins"]
        if pm.hook.onemeter_award_rule(as_of=as_of) is None:
            flash(f"{local_date(as_of)}没有生效的以奖代补规则，未测算", "danger")
            return back
        start_recompute(self._job_tenant(), "财政局重新测算", as_of=as_of.isoformat())
        return back

    @expose("/export/")
    @has_access
    @permission_name("export")
    def export(self) -> Response:
        """The latest computation, one row per project, as .xlsx in the government layout."""
        session = db.session
        computation = latest_computation(session)
        tenants = {t.id: t.name for t in self._tenants()}
        rows = []
        if computation is not None:
            lines = (session.query(AwardAllocation)
                     .filter(AwardAllocation.computation_id == computation.id,
                             AwardAllocation.tenant_id.in_(list(tenants) or [-1]))
                     .order_by(AwardAllocation.tenant_id, AwardAllocation.project_id).all())
            rows = [[tenants.get(a.tenant_id, ""), str(a.project), yes_no(a.eligible),
                     a.reason or "", a.reviewed_amount, a.developer_paid, a.award, a.backstop]
                    for a in lines]
        title = "以奖代补测算表" + (
            f"（{local_date(computation.as_of)}，{computation.rule_code}@"
            f"{computation.rule_version}，上限 {money(computation.cap)}，"
            f"已分配 {money(computation.allocated)}）" if computation else "（尚未测算）")
        body = write_report(title, ["办事处", "改造项目", "计入奖补", "不计入原因",
                                    "财政评审投资（元）", "开发建设单位已出资（元）",
                                    "以奖代补分配（元）", "区财政兜底（元）"], rows,
                            unit="平桥区财政局", sheet="以奖代补")
        return xlsx_download(body, f"funding-{dt.date.today():%Y%m%d}.xlsx")


def register(registrar: Any) -> None:
    """Add the funding pages (called from the plugin's `onemeter_register_views`)."""
    category = "资金"
    registrar.add_view(FundingDashboardView, "资金总览", category=category,
                       icon="fa-line-chart", category_icon="fa-yen")
    registrar.add_view(ProjectFundingView, "项目资金", category=category, icon="fa-yen")
    registrar.add_view(FundingPaymentView, "资金到位", category=category, icon="fa-money")
    registrar.add_view(AwardAllocationView, "奖补分配与兜底", category=category,
                       icon="fa-pie-chart")
    registrar.add_view(AwardComputationView, "测算记录", category=category, icon="fa-history")


__all__ = ["PLUGIN", "register"]
