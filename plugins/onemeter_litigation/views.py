"""诉讼 pages: the case list and case page (timeline, steps per stage and role, documents),
the district's overview of every case by stage, the Excel export, and a read-only REST API.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, g, redirect, request, send_file, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from flask_appbuilder.urltools import get_filter_args, get_order_args
from markupsafe import Markup
from werkzeug.wrappers import Response

from onemeter.database import db
from onemeter.exports import write_report
from onemeter.formatting import local_date, local_datetime, money
from onemeter.retrofit.procedure import state_label as project_state_label
from onemeter.retrofit.service import beijing_today
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
)
from onemeter.tenancy import Tenant, current_scope
from onemeter.uploads import UploadRefused, mimetype_of, resolve_key, store_upload
from onemeter.utilities import utility_label
from onemeter.views import API_READ, TenantModelRestApi, TenantModelView, xlsx_download
from onemeter_litigation.models import CaseEvent, CaseProject, LitigationCase, RecoveryShare
from onemeter_litigation.service import PLUGIN, case_overdue_filter, take_step
from onemeter_litigation.stages import (
    EVENT_LABELS,
    INPUT_LABELS,
    STATES,
    STEPS,
    TRACING_DEPARTMENTS,
    StepRefused,
    available_steps,
    state_label,
)

TEMPLATES = str(Path(__file__).parent / "templates")


def _tenant_names() -> dict[int, str]:
    """Tenant id → name (tenants are platform data, readable by every signed-in user)."""
    if "lit_tenant_names" not in g.__dict__:
        g.lit_tenant_names = {t.id: t.name for t in db.session.query(Tenant)}
    return g.lit_tenant_names


def _tenant_name(tenant_id: int | None) -> str:
    return _tenant_names().get(tenant_id, "") if tenant_id is not None else ""


class CaseView(TenantModelView):
    """诉讼案件: one file per developer in the sub-district; stages move on the case page."""

    datamodel = SQLAInterface(LitigationCase)
    route_base = "/litigation/cases"
    template_folder = TEMPLATES
    list_template = "litigation/case_list.html"
    show_template = "litigation/case_show.html"
    om_roles = {
        TENANT_ADMIN: (*READ_PERMISSIONS, "can_edit", "can_step"),
        TENANT_STAFF: (*READ_PERMISSIONS, "can_edit", "can_step"),
        DISTRICT_VIEWER: READ_PERMISSIONS,
        PLATFORM_ADMIN: READ_PERMISSIONS,
    }
    base_permissions = ["can_list", "can_show", "can_edit", "can_export", "can_step"]
    list_title = "诉讼案件"
    show_title = "诉讼案件详情"
    edit_title = "修改诉讼案件"
    base_order = ("id", "desc")
    list_columns = ["tenant_id", "developer_name", "legal_representative", "state", "deadline",
                    "overdue_flag", "court", "case_number", "amount_awarded", "amount_recovered",
                    "project_count"]
    show_columns = ["tenant_id", "developer_name", "legal_representative", "state",
                    "next_action", "deadline", "court", "case_number", "filed_on",
                    "judgment_on", "amount_awarded", "enforcement_case_number",
                    "amount_recovered", "closed_on", "opened_at", "comment"]
    edit_columns = ["legal_representative", "comment"]
    search_columns = ["developer_name", "legal_representative", "state", "court",
                      "case_number", "deadline"]
    label_columns = {
        "tenant_id": "办事处", "developer_name": "开发建设单位",
        "legal_representative": "法定代表人", "state": "阶段", "next_action": "下一步",
        "deadline": "期限（催告期限/开庭日期）", "court": "受理法院", "case_number": "案号",
        "filed_on": "立案日期", "judgment_on": "判决日期", "amount_awarded": "判决金额",
        "enforcement_case_number": "执行案号", "amount_recovered": "已追回金额",
        "closed_on": "结案日期", "opened_at": "立卷时间", "comment": "备注",
        "project_count": "关联改造项目数", "overdue_flag": "逾期",
    }
    formatters_columns = {
        "tenant_id": _tenant_name, "state": state_label, "deadline": local_date,
        "filed_on": local_date, "judgment_on": local_date, "closed_on": local_date,
        "opened_at": local_datetime, "amount_awarded": money, "amount_recovered": money,
        "comment": lambda v: v or "", "court": lambda v: v or "",
        "case_number": lambda v: v or "", "enforcement_case_number": lambda v: v or "",
        "overdue_flag": lambda v: Markup('<span class="label label-danger">已逾期</span>')
        if v else "",
    }

    def pre_update(self, item: LitigationCase) -> None:
        if item.legal_representative and len(item.legal_representative.strip()) > 50:
            raise ValueError("法定代表人姓名不能超过 50 个字")

    @expose("/list/")
    @has_access
    def list(self) -> Response:
        """The cases, with the number overdue today above the list."""
        self.update_redirect()
        widgets = self._list()
        overdue = self.datamodel.session.scalar(
            sa.select(sa.func.count(LitigationCase.id))
            .where(case_overdue_filter(beijing_today()))) or 0
        return self.render_template(self.list_template, title=self.list_title,
                                    widgets=widgets, overdue=overdue)

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The case: fields, linked projects, timeline with documents, the user's steps."""
        pk = self._deserialize_pk_if_composite(pk)
        case = self.visible_or_404(pk)
        widgets = self._show(pk)
        session = self.datamodel.session
        events = list(session.scalars(sa.select(CaseEvent).where(CaseEvent.case_id == case.id)
                                      .order_by(CaseEvent.at, CaseEvent.id)))
        links = list(session.scalars(sa.select(CaseProject).where(
            CaseProject.case_id == case.id).order_by(CaseProject.id)))
        shares = list(session.scalars(
            sa.select(RecoveryShare).join(CaseEvent, CaseEvent.id == RecoveryShare.event_id)
            .where(CaseEvent.case_id == case.id).order_by(RecoveryShare.id)))
        can_step = (self.appbuilder.sm.has_access("can_step", self.class_permission_name)
                    and current_scope().write == case.tenant_id)
        roles = frozenset(r.name for r in (getattr(g.user, "roles", None) or []))
        actions = (available_steps(case, roles, getattr(g.user, "tenant_id", None))
                   if can_step else [])
        today = beijing_today()
        return self.render_template(
            self.show_template, pk=pk, title=self.show_title, widgets=widgets,
            related_views=self._related_views, case=case, events=events, links=links,
            shares=shares, actions=actions, event_labels=EVENT_LABELS, state_label=state_label,
            project_state_label=project_state_label, utility_label=utility_label,
            overdue=case.overdue_on(today), local_date=local_date,
            local_datetime=local_datetime, money=money, today=today.isoformat(),
            departments=TRACING_DEPARTMENTS)

    @expose("/step/<int:pk>/<name>", methods=["POST"])
    @has_access
    @permission_name("step")
    def step(self, pk: int, name: str) -> Response:
        """Take one step on the case page; a refusal says why and changes nothing."""
        case = self.visible_or_404(pk)
        if current_scope().write != case.tenant_id:
            abort(403)  # visible (a read-only role) but not writable
        inputs = {key: request.form.get(key) for key in INPUT_LABELS if key in request.form}
        upload = request.files.get("attachment")

        def store() -> str:
            try:
                return store_upload(upload.stream, case.tenant_id).key
            except UploadRefused as exc:
                raise StepRefused(f"附件未上传：{exc}") from exc

        session = self.datamodel.session
        try:
            take_step(session, case, name, g.user,
                      store_attachment=store if upload is not None and upload.filename else None,
                      **inputs)
            session.commit()
        except StepRefused as exc:
            session.rollback()
            flash(str(exc), "danger")
        else:
            flash(f"已{STEPS[name].label}：现为「{state_label(case.state)}」", "success")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))

    @expose("/document/<int:event_id>", methods=["GET"])
    @has_access
    @permission_name("show")
    def document(self, event_id: int) -> Response:
        """The scan attached to one step, inline, to whoever may see the case."""
        event = self.datamodel.session.get(CaseEvent, event_id)
        if event is None or not event.attachment:
            abort(404)
        self.visible_or_404(event.case_id)
        try:
            path = resolve_key(event.attachment, event.tenant_id)
        except UploadRefused:
            abort(404)
        if not path.is_file():
            abort(404)
        response = send_file(path, mimetype=mimetype_of(event.attachment), as_attachment=False,
                             download_name=f"case-document-{event_id}."
                                           f"{event.attachment.rsplit('.', 1)[-1]}",
                             conditional=True, max_age=0)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, no-store"
        return response

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        """The filtered list (same filters and order as on screen) with Chinese stages,
        逾期, dates and the linked projects."""
        get_filter_args(self._filters)
        order_column, order_direction = get_order_args().get(self.__class__.__name__, ("", ""))
        if not order_column and self.base_order:
            order_column, order_direction = self.base_order
        joined = self._filters.get_joined_filters(self._base_filters)
        _, items = self.datamodel.query(joined, order_column, order_direction)
        today = beijing_today()
        headers = ["办事处", "开发建设单位", "法定代表人", "阶段", "是否逾期", "期限", "受理法院",
                   "案号", "立案日期", "判决日期", "判决金额（元）", "执行案号", "已追回金额（元）",
                   "结案日期", "关联改造项目"]
        rows = [[_tenant_name(c.tenant_id), c.developer_name, c.legal_representative,
                 state_label(c.state), "是" if c.overdue_on(today) else "否", c.deadline,
                 c.court, c.case_number, c.filed_on, c.judgment_on, c.amount_awarded,
                 c.enforcement_case_number, c.amount_recovered, c.closed_on,
                 "、".join(str(link.project) for link in c.links)]
                for c in items]
        return headers, rows

    @expose("/export/")
    @has_access
    def export(self) -> Response:
        """诉讼案件台账 as .xlsx in the government layout (title, 填报单位, 填报日期)."""
        headers, rows = self.export_rows()
        scope = current_scope()
        unit = "平桥区" if scope.read is None else "、".join(
            _tenant_name(t) for t in sorted(scope.read or ()))
        body = write_report("诉讼案件台账", headers, rows, unit=unit or "—")
        return xlsx_download(body, f"litigation-cases-{dt.date.today():%Y%m%d}.xlsx")


class CaseOverviewView(BaseView):
    """诉讼案件汇总: the district's view of every sub-district's cases by stage (read-only)."""

    route_base = "/litigation/overview"
    template_folder = TEMPLATES
    default_view = "list"
    om_roles = {DISTRICT_VIEWER: ("can_list",), PLATFORM_ADMIN: ("can_list",)}
    base_permissions = ["can_list"]

    @expose("/")
    @has_access
    @permission_name("list")
    def list(self) -> Any:
        """Counts per sub-district × stage, amounts, overdue; then every case by stage."""
        session = self.appbuilder.session
        today = beijing_today()
        tenants = [t for t in session.query(Tenant).order_by(Tenant.id)
                   if t.enables(PLUGIN) and current_scope().can_read(t.id)]
        ids = [t.id for t in tenants]
        cases = list(session.scalars(sa.select(LitigationCase)
                                     .where(LitigationCase.tenant_id.in_(ids or [-1]))
                                     .order_by(LitigationCase.deadline, LitigationCase.id)))
        counts: Counter[tuple[int, str]] = Counter((c.tenant_id, c.state) for c in cases)
        by_state: dict[str, list[LitigationCase]] = defaultdict(list)
        for case in cases:
            by_state[case.state].append(case)
        overdue = {c.id for c in cases if c.overdue_on(today)}
        totals = {t.id: {"awarded": sum((c.amount_awarded or 0 for c in cases
                                         if c.tenant_id == t.id), start=0),
                         "recovered": sum((c.amount_recovered or 0 for c in cases
                                           if c.tenant_id == t.id), start=0),
                         "overdue": sum(1 for c in cases if c.tenant_id == t.id
                                        and c.id in overdue)}
                  for t in tenants}
        return self.render_template(
            "litigation/overview.html", title="诉讼案件汇总", tenants=tenants, states=STATES,
            counts=counts, by_state=by_state, overdue=overdue, totals=totals, money=money,
            local_date=local_date, tenant_name={t.id: t.name for t in tenants},
            state_label=state_label)


class CaseApi(TenantModelRestApi):
    """诉讼案件 over REST, read-only: stages move only through the case page's steps."""

    datamodel = SQLAInterface(LitigationCase)
    resource_name = "litigation_case"
    om_roles = {role: API_READ for role in (TENANT_ADMIN, TENANT_STAFF, DISTRICT_VIEWER,
                                            PLATFORM_ADMIN)}
    base_permissions = ["can_get", "can_info"]
    list_columns = show_columns = ["id", "developer_name",
                                   "legal_representative", "state", "deadline", "court",
                                   "case_number", "filed_on", "judgment_on", "amount_awarded",
                                   "enforcement_case_number", "amount_recovered", "closed_on",
                                   "opened_at", "comment"]
