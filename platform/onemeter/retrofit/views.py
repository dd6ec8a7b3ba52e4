"""改造项目 pages: the list, and a project page with its timeline and the steps the user may take.

Registered through the core's `onemeter_register_views` (DEFAULT_PLUGINS), like any plugin.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_appbuilder.models.sqla.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from werkzeug.wrappers import Response

from onemeter.formatting import local_date, local_datetime, money, yes_no
from onemeter.plugins import hookimpl
from onemeter.registry.categories import PHASE_YEARS, category_label
from onemeter.retrofit.models import (
    ProjectCharge,
    ProjectEvent,
    RetrofitProject,
    prohibited_charge_totals,
)
from onemeter.retrofit.procedure import (
    INPUT_LABELS,
    TRANSITIONS,
    ProcedureRefused,
    actor_of,
    available_transitions,
    is_overdue,
    state_label,
)
from onemeter.retrofit.progress import project_progress, tenant_options
from onemeter.retrofit.service import apply_transition, beijing_today
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
    UTILITY_STAFF,
)
from onemeter.tenancy import current_scope
from onemeter.utilities import utility_choices, utility_label, utility_spec
from onemeter.views import API_READ, API_WRITE, TenantModelRestApi, TenantModelView

_SHOW = ("can_list", "can_show")


class UtilityScopeFilter(BaseFilter):
    """Utility staff see their own utility's rows only; everyone else is not filtered.

    The filter's value is a function of the utility code giving the SQL condition.
    """

    name = "utility scope"

    def apply(self, query: Any, value: Any) -> Any:
        utility = current_scope().utility
        return query if utility is None else query.filter(value(utility))


def _project_of_utility(utility: str) -> Any:
    return RetrofitProject.utility == utility


def _charge_of_utility(utility: str) -> Any:
    return ProjectCharge.project.has(RetrofitProject.utility == utility)


_PROJECT_SCOPE = [["id", UtilityScopeFilter, _project_of_utility]]
_CHARGE_SCOPE = [["id", UtilityScopeFilter, _charge_of_utility]]


class RetrofitProjectView(TenantModelView):
    """改造项目: one per community × utility. The state moves only through the project page."""

    datamodel = SQLAInterface(RetrofitProject)
    route_base = "/retrofit"
    show_template = "onemeter/retrofit_show.html"
    om_roles = {
        TENANT_ADMIN: (*READ_PERMISSIONS, "can_add", "can_step"),
        TENANT_STAFF: (*READ_PERMISSIONS, "can_add", "can_step"),
        UTILITY_STAFF: (*_SHOW, "can_step"),
        DISTRICT_VIEWER: READ_PERMISSIONS,
        PLATFORM_ADMIN: READ_PERMISSIONS,
    }
    base_permissions = ["can_list", "can_show", "can_add", "can_export", "can_step"]
    base_filters = _PROJECT_SCOPE
    list_title = "改造项目"
    show_title = "改造项目详情"
    add_title = "新建改造项目"
    base_order = ("id", "desc")
    list_columns = ["community", "utility", "state", "deadline", "online_payment_enabled_at",
                    "fine_amount"]
    show_columns = [*list_columns, "maintenance_first", "no_new_lines", "comment"]
    add_columns = ["community", "utility", "comment"]
    search_columns = ["utility", "state", "deadline"]
    label_columns = {"community": "小区", "utility": "公用事业", "state": "状态",
                     "deadline": "期限", "online_payment_enabled_at": "网上缴费实现时间",
                     "fine_amount": "罚款金额", "maintenance_first": "维修为主、改造为辅",
                     "no_new_lines": "不新增或更改线路", "comment": "备注"}
    description_columns = {"utility": "本办事处已启用的公用事业代码，如 water（供水）、"
                                      "electricity（供电）"}
    formatters_columns = {
        "state": state_label, "deadline": local_date, "fine_amount": money,
        "comment": lambda v: v or "",
        "online_payment_enabled_at": local_datetime,
        "utility": utility_label,
        "maintenance_first": lambda v: "" if v is None else yes_no(v),
        "no_new_lines": lambda v: "" if v is None else yes_no(v),
    }

    def pre_add(self, item: RetrofitProject) -> None:
        # Any utility a plugin declares goes through the same procedure, if the tenant
        # enables that plugin.
        item.utility = (item.utility or "").strip()
        enabled = dict(utility_choices(self.appbuilder.sm.enabled_plugins()))
        if item.utility not in enabled:
            offered = "、".join(f"{code}（{label}）" for code, label in enabled.items())
            raise ValueError(f"公用事业「{item.utility}」未启用；可选：{offered or '无'}")
        item.state = "registered"

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The project: its fields, timeline, whether it is overdue, and the user's steps."""
        pk = self._deserialize_pk_if_composite(pk)
        project = self.visible_or_404(pk)
        widgets = self._show(pk)
        events = (self.datamodel.session.query(ProjectEvent)
                  .filter(ProjectEvent.project_id == project.id)
                  .order_by(ProjectEvent.at, ProjectEvent.id).all())
        can_step = self.appbuilder.sm.has_access("can_step", self.class_permission_name)
        actions = available_transitions(project, actor_of(g.user)) if can_step else []
        return self.render_template(
            self.show_template, pk=pk, title=self.show_title, widgets=widgets,
            related_views=self._related_views, project=project, events=events,
            actions=actions, input_labels=INPUT_LABELS, state_label=state_label,
            transitions=TRANSITIONS, overdue=is_overdue(project, beijing_today()),
            local_date=local_date, local_datetime=local_datetime, money=money,
            today=beijing_today().isoformat(),
        )

    @expose("/step/<int:pk>/<transition>", methods=["POST"])
    @has_access
    @permission_name("step")
    def step(self, pk: int, transition: str) -> Response:
        """Take one step of the procedure (a form on the project page); refusals say why."""
        project = self.visible_or_404(pk)
        inputs = {key: request.form.get(key) for key in INPUT_LABELS if key in request.form}
        session = self.datamodel.session
        try:
            apply_transition(session, project, transition, g.user, **inputs)
            session.commit()
        except ProcedureRefused as exc:
            session.rollback()
            flash(str(exc), "danger")
        else:
            spec = TRANSITIONS[transition]
            flash(f"已{spec.label}：现为「{state_label(project.state)}」", "success")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))


class ProjectChargeView(TenantModelView):
    """收费记录: fees charged in a project; the plan's cancelled fees are flagged (五(六))."""

    datamodel = SQLAInterface(ProjectCharge)
    route_base = "/retrofit/charges"
    list_template = "onemeter/charge_list.html"
    om_roles = {
        TENANT_ADMIN: TenantModelView.om_roles[TENANT_ADMIN],
        TENANT_STAFF: TenantModelView.om_roles[TENANT_STAFF],
        UTILITY_STAFF: READ_PERMISSIONS,
        DISTRICT_VIEWER: READ_PERMISSIONS,
        PLATFORM_ADMIN: READ_PERMISSIONS,
    }
    base_filters = _CHARGE_SCOPE
    list_title = show_title = "收费记录"
    add_title = "登记收费"
    edit_title = "修改收费记录"
    list_columns = ["project", "name", "amount", "charged_by", "paid_by", "charged_on",
                    "prohibited_fee"]
    show_columns = [*list_columns, "document", "comment"]
    add_columns = edit_columns = ["project", "name", "amount", "charged_by", "paid_by",
                                  "charged_on", "document", "comment"]
    search_columns = ["project", "name", "charged_by", "charged_on", "prohibited_fee"]
    label_columns = {"project": "改造项目", "name": "收费名目", "amount": "金额",
                     "charged_by": "收费单位", "paid_by": "缴费人", "charged_on": "收费日期",
                     "document": "票据或文书", "comment": "说明",
                     "prohibited_fee": "已取消的收费（五(六)）"}
    description_columns = {"name": "按票据上的名目填写；属实施方案五(六)已取消的收费项目的，"
                                   "系统自动标记"}
    formatters_columns = {"amount": money, "charged_on": local_date,
                          "prohibited_fee": lambda f: f"违规：{f}" if f else "否"}
    base_order = ("id", "desc")

    def pre_add(self, item: ProjectCharge) -> None:
        if item.amount is None or item.amount < 0:
            raise ValueError("金额须为不小于 0 的数字（元）")

    pre_update = pre_add

    @expose("/list/")
    @has_access
    def list(self) -> Response:
        """The charges, with each utility's cancelled fees and the flagged totals above."""
        self.update_redirect()
        widgets = self._list()
        enabled = self.appbuilder.sm.enabled_plugins()
        specs = [spec for code, _ in utility_choices(enabled)
                 if (spec := utility_spec(code)) is not None]
        totals = prohibited_charge_totals(self.datamodel.session)
        return self.render_template(self.list_template, title=self.list_title,
                                    widgets=widgets, specs=specs, totals=totals, money=money)


class RetrofitProjectApi(TenantModelRestApi):
    """改造项目 over REST, read-only: the state moves only through the procedure's steps."""

    datamodel = SQLAInterface(RetrofitProject)
    resource_name = "retrofit_project"
    om_roles = {role: API_READ for role in (TENANT_ADMIN, TENANT_STAFF, UTILITY_STAFF,
                                            DISTRICT_VIEWER, PLATFORM_ADMIN)}
    base_permissions = ["can_get", "can_info"]
    base_filters = _PROJECT_SCOPE
    list_columns = show_columns = ["id", "community.id", "community.name", "utility", "state",
                                   "deadline", "fine_amount", "online_payment_enabled_at",
                                   "maintenance_first", "no_new_lines", "comment"]


class ProjectChargeApi(TenantModelRestApi):
    """收费记录 over REST; `prohibited_fee` is computed, never sent."""

    datamodel = SQLAInterface(ProjectCharge)
    resource_name = "project_charge"
    om_roles = {TENANT_ADMIN: API_WRITE, TENANT_STAFF: API_WRITE, UTILITY_STAFF: API_READ,
                DISTRICT_VIEWER: API_READ, PLATFORM_ADMIN: API_READ}
    base_filters = _CHARGE_SCOPE
    list_columns = show_columns = ["id", "project.id", "name", "amount", "charged_by",
                                   "paid_by", "charged_on", "document", "prohibited_fee",
                                   "comment"]
    add_columns = ["project", "name", "amount", "charged_by", "paid_by", "charged_on",
                   "document", "comment"]
    edit_columns = ["name", "amount", "charged_by", "paid_by", "charged_on", "document",
                    "comment"]


class ProgressView(BaseView):
    """改造进度: every project of the scope with its households' progress, overdue first."""

    route_base = "/retrofit/progress"
    default_view = "list"
    om_roles = {role: ("can_list",) for role in (TENANT_ADMIN, TENANT_STAFF, UTILITY_STAFF,
                                                 DISTRICT_VIEWER, PLATFORM_ADMIN)}
    base_permissions = ["can_list"]

    @expose("/")
    @has_access
    @permission_name("list")
    def list(self) -> Any:
        """Filters: utility, phase, sub-district (cross-tenant users), overdue only."""
        today = beijing_today()
        enabled = self.appbuilder.sm.enabled_plugins()
        utilities = dict(utility_choices(enabled))
        wanted = {k: request.args.get(k, "") for k in ("utility", "phase", "tenant", "overdue")}
        rows = project_progress(
            self.appbuilder.session, today, utilities=list(utilities),
            utility=wanted["utility"] or None,
            phase=int(wanted["phase"]) if wanted["phase"].isdigit() else None,
            tenant_id=int(wanted["tenant"]) if wanted["tenant"].isdigit() else None,
            overdue_only=wanted["overdue"] == "1")
        scope = current_scope()
        tenants = [] if scope.write is not None else tenant_options(self.appbuilder.session)
        return self.render_template(
            "onemeter/progress.html", title="改造进度", rows=rows, utilities=utilities,
            wanted=wanted, tenants=tenants, phases=PHASE_YEARS, local_date=local_date,
            state_label=state_label, category_label=category_label,
            overdue_count=sum(1 for r in rows if r.overdue))


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    registrar.add_view(ProgressView, "改造进度", category="改造程序", icon="fa-tasks",
                       category_icon="fa-list-ol")
    registrar.add_view(RetrofitProjectView, "改造项目", category="改造程序",
                       icon="fa-wrench", category_icon="fa-list-ol")
    registrar.add_view(ProjectChargeView, "收费记录", category="改造程序", icon="fa-yen")
    registrar.add_api(RetrofitProjectApi)
    registrar.add_api(ProjectChargeApi)
