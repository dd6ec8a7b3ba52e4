"""改造项目 pages: the list, and a project page with its timeline and the steps the user may take.

Registered through the core's `onemeter_register_views` (DEFAULT_PLUGINS), like any plugin.
"""

from __future__ import annotations

import re
from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.models.sqla.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from werkzeug.wrappers import Response

from onemeter.formatting import local_date, local_datetime, money, yes_no
from onemeter.plugins import hookimpl
from onemeter.retrofit.models import ProjectEvent, RetrofitProject
from onemeter.retrofit.procedure import (
    INPUT_LABELS,
    TRANSITIONS,
    ProcedureRefused,
    actor_of,
    available_transitions,
    is_overdue,
    state_label,
    utility_company,
)
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
from onemeter.views import TenantModelView

_SHOW = ("can_list", "can_show")
_UTILITY_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class UtilityScopeFilter(BaseFilter):
    """Utility staff see their own utility's projects only; everyone else is not filtered."""

    name = "utility scope"

    def apply(self, query: Any, value: Any) -> Any:
        utility = current_scope().utility
        if utility is None:
            return query
        return query.filter(RetrofitProject.utility == utility)


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
    base_filters = [["id", UtilityScopeFilter, lambda: None]]
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
    description_columns = {"utility": "公用事业代码，如 water（供水）、electricity（供电）"}
    formatters_columns = {
        "state": state_label, "deadline": local_date, "fine_amount": money,
        "online_payment_enabled_at": local_datetime,
        "utility": lambda u: f"{utility_company(u)}（{u}）",
        "maintenance_first": lambda v: "" if v is None else yes_no(v),
        "no_new_lines": lambda v: "" if v is None else yes_no(v),
    }

    def pre_add(self, item: RetrofitProject) -> None:
        # Any utility code is accepted (a plugin's utility goes through the same procedure);
        # only its form is checked, so it matches the users' and plugins' codes.
        item.utility = (item.utility or "").strip()
        if not _UTILITY_CODE.match(item.utility):
            raise ValueError("公用事业代码须为字母开头的字母、数字或下划线，如 water、electricity")
        item.state = "registered"

    def _project(self, pk: int) -> RetrofitProject:
        """The project `pk` as this user may read it: 404 for another tenant's or utility's."""
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            abort(404)
        return item

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The project: its fields, timeline, whether it is overdue, and the user's steps."""
        pk = self._deserialize_pk_if_composite(pk)
        project = self._project(pk)
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
        project = self._project(pk)
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


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    registrar.add_view(RetrofitProjectView, "改造项目", category="改造程序",
                       icon="fa-wrench", category_icon="fa-list-ol")
