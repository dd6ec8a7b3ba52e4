"""Registry pages and APIs: 开发建设单位, 小区, 住户, 改造计划 (registered as a core plugin).

Communities and households are tenant pages (TenantModelView); developers and the plan's
targets are shared reference data, read by everyone, developers kept up by sub-district staff.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, flash, g, redirect, request, send_file, url_for
from flask_appbuilder import ModelRestApi, ModelView, expose, has_access
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from markupsafe import Markup
from wtforms import BooleanField, SelectField, TextAreaField
from wtforms.validators import ValidationError

from onemeter.errors import ApiSaveErrors, SaveErrorMessages
from onemeter.formatting import local_date, local_datetime, yes_no
from onemeter.plugins import hookimpl
from onemeter.registry.categories import CATEGORY_LABELS, PHASE_YEARS
from onemeter.registry.models import (
    DEVELOPER_STATUS_LABELS,
    Community,
    Developer,
    Household,
    PlanTarget,
    check_credit_code,
)
from onemeter.registry.normalize import household_key
from onemeter.registry.plan import district_targets, plan_totals_check
from onemeter.security import (
    DISTRICT_VIEWER,
    FINANCE,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
    UTILITY_STAFF,
)
from onemeter.tenancy import current_scope
from onemeter.uploads import (
    UploadRefused,
    limit_text,
    mimetype_of,
    resolve_key,
    store_upload,
)
from onemeter.views import API_READ, API_WRITE, TenantModelRestApi, TenantModelView

CATEGORY = "台账"
#: Read by every role that looks at communities: finance (developer share), utilities.
_READERS = {DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS,
            FINANCE: READ_PERMISSIONS, UTILITY_STAFF: READ_PERMISSIONS}
_API_READERS = {role: API_READ for role in _READERS}


def _badge(text: str | None) -> Markup:
    return Markup('<span class="label label-warning">{}</span>').format(text) if text else ""


def _flags(**labels: str) -> dict[str, BooleanField]:
    # FAB marks NOT NULL columns required, so an unticked box would be refused: a flag is
    # a plain optional checkbox (unticked = False).
    return {name: BooleanField(label) for name, label in labels.items()}


def _credit_code_field(form: Any, field: Any) -> None:
    if field.data:
        try:
            field.data = check_credit_code(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


# --- developers (shared) ---------------------------------------------------------------------

_DEVELOPER_LABELS = {"name": "单位名称", "credit_code": "统一社会信用代码",
                     "legal_representative": "法定代表人", "contact": "联系方式",
                     "status": "状态", "status_label": "状态"}


def _status_field() -> SelectField:
    return SelectField("状态", choices=list(DEVELOPER_STATUS_LABELS.items()),
                       widget=Select2Widget(), default="active")


class DeveloperView(SaveErrorMessages, ModelView):
    """开发建设单位: one list for the whole district; sub-district staff add and correct.

    A developer builds in several sub-districts, so staff of any of them may record it once
    and all see it; only the platform admin deletes (a developer referenced by a community
    cannot be deleted at all).
    """

    datamodel = SQLAInterface(Developer)
    route_base = "/registry/developers"
    om_roles = {TENANT_ADMIN: ("can_list", "can_show", "can_add", "can_edit"),
                TENANT_STAFF: ("can_list", "can_show", "can_add", "can_edit"),
                PLATFORM_ADMIN: ("can_list", "can_show", "can_add", "can_edit", "can_delete"),
                DISTRICT_VIEWER: ("can_list", "can_show"), FINANCE: ("can_list", "can_show"),
                UTILITY_STAFF: ("can_list", "can_show")}
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete"]
    list_title = show_title = add_title = edit_title = "开发建设单位"
    list_columns = ["name", "credit_code", "legal_representative", "contact", "status_label"]
    show_columns = list_columns
    add_columns = edit_columns = ["name", "credit_code", "legal_representative", "contact",
                                  "status"]
    search_columns = ["name", "credit_code", "legal_representative", "status"]
    label_columns = _DEVELOPER_LABELS
    validators_columns = {"credit_code": [_credit_code_field]}
    description_columns = {"credit_code": "18位，按 GB 32100-2015 校验"}
    add_form_extra_fields = edit_form_extra_fields = {"status": _status_field()}
    base_order = ("name", "asc")


class DeveloperApi(ApiSaveErrors, ModelRestApi):
    """开发建设单位 over REST: the same roles as the page."""

    datamodel = SQLAInterface(Developer)
    resource_name = "developer"
    om_roles = {TENANT_ADMIN: ("can_get", "can_info", "can_post", "can_put"),
                TENANT_STAFF: ("can_get", "can_info", "can_post", "can_put"),
                PLATFORM_ADMIN: API_WRITE, **{r: API_READ for r in
                                              (DISTRICT_VIEWER, FINANCE, UTILITY_STAFF)}}
    list_columns = show_columns = ["id", "name", "credit_code", "legal_representative",
                                   "contact", "status"]
    add_columns = edit_columns = ["name", "credit_code", "legal_representative", "contact",
                                  "status"]


# --- communities -----------------------------------------------------------------------------

_COMMUNITY_LABELS = {
    "name": "小区名称", "address": "地址", "developer": "开发建设单位",
    "delivery_date": "建成交付日期", "developer_committed": "开发建设单位出具承诺",
    "old_renovation": "纳入老旧小区改造", "scattered": "零星住宅",
    "category_label": "类别", "derived_category_label": "类别（按规则）",
    "phase_year": "改造年度", "derived_phase": "改造年度（按规则）",
    "override_label": "人工调整", "override_reason": "调整理由", "override_by": "调整人",
    "override_at": "调整时间", "tenant": "办事处",
}


class OverrideForm(DynamicForm):
    """人工调整: category and/or phase year with a mandatory reason (blank = by the rules)."""

    category = SelectField("类别", choices=[("", "按规则")] + list(CATEGORY_LABELS.items()),
                           widget=Select2Widget())
    phase = SelectField("改造年度", choices=[("", "按类别")] + [(str(y), f"{y}年")
                                                           for y in PHASE_YEARS],
                        widget=Select2Widget())
    reason = TextAreaField("调整理由", description="调整类别或改造年度时必填")


class CommunityView(TenantModelView):
    """小区: the plan's category and phase derived from the facts, overrides shown beside."""

    datamodel = SQLAInterface(Community)
    route_base = "/registry/communities"
    om_roles = {TENANT_ADMIN: TenantModelView.om_roles[TENANT_ADMIN],
                TENANT_STAFF: TenantModelView.om_roles[TENANT_STAFF], **_READERS}
    list_title = show_title = add_title = edit_title = "小区"
    list_columns = ["name", "developer", "delivery_date", "category_label",
                    "derived_category_label", "phase_year", "derived_phase", "override_label",
                    "override_reason"]
    show_columns = ["name", "address", "developer", "delivery_date", "developer_committed",
                    "old_renovation", "scattered", "category_label", "derived_category_label",
                    "phase_year", "derived_phase", "override_label", "override_reason",
                    "override_by", "override_at"]
    # The override has its own page (人工调整): it needs a reason and records who and when.
    add_columns = edit_columns = ["name", "address", "developer", "delivery_date",
                                  "developer_committed", "old_renovation", "scattered"]
    search_columns = ["name", "address", "developer", "delivery_date", "developer_committed",
                      "old_renovation", "scattered", "derived_category", "category_override"]
    label_columns = {**_COMMUNITY_LABELS, "derived_category": "类别（按规则）",
                     "category_override": "类别（人工调整）"}
    description_columns = {
        "delivery_date": "按方案印发日 2021年7月7日 计算交付年限",
        "scattered": "零星住宅小区归入第三步（2023年）",
    }
    formatters_columns = {"delivery_date": local_date, "developer_committed": yes_no,
                          "old_renovation": yes_no, "scattered": yes_no,
                          "override_label": _badge, "override_at": local_datetime,
                          "phase_year": lambda y: f"{y}年" if y else "待定",
                          "derived_phase": lambda y: f"{y}年" if y else "待定"}
    base_order = ("name", "asc")
    show_template = "onemeter/community_show.html"
    add_form_extra_fields = edit_form_extra_fields = _flags(
        developer_committed="开发建设单位出具承诺", old_renovation="纳入老旧小区改造",
        scattered="零星住宅")

    @expose("/override/<int:pk>", methods=["GET", "POST"])
    @has_access
    @permission_name("edit")
    def override(self, pk: int) -> Any:
        """人工调整: set or clear the category/phase override of one community."""
        community = self.datamodel.get(pk, self._base_filters)
        if community is None:
            abort(404)
        if current_scope().write != community.tenant_id:
            abort(403)
        form = OverrideForm(request.form if request.method == "POST" else None)
        if request.method == "GET":
            form.category.data = community.category_override or ""
            form.phase.data = str(community.phase_override or "")
            form.reason.data = community.override_reason or ""
        elif form.validate():
            try:
                community.set_override(
                    category=form.category.data or None,
                    phase=int(form.phase.data) if form.phase.data else None,
                    reason=form.reason.data, by=getattr(g.user, "username", None),
                    at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
            except ValueError as exc:
                flash(str(exc), "danger")
            else:
                self.datamodel.session.commit()
                flash("已调整" if community.overridden else "已恢复按规则", "success")
                return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))
        return self.render_template("onemeter/community_override.html", form=form,
                                    community=community, title=f"人工调整：{community.name}")


class CommunityApi(TenantModelRestApi):
    """小区 over REST; the override is set on the page (it records who and why)."""

    datamodel = SQLAInterface(Community)
    resource_name = "community"
    om_roles = {TENANT_ADMIN: API_WRITE, TENANT_STAFF: API_WRITE, **_API_READERS}
    list_columns = show_columns = [
        "id", "name", "address", "developer.name", "delivery_date", "developer_committed",
        "old_renovation", "scattered", "derived_category", "derived_phase",
        "category_override", "phase_override", "override_reason", "category", "phase_year"]
    add_columns = edit_columns = ["name", "address", "developer", "delivery_date",
                                  "developer_committed", "old_renovation", "scattered"]


# --- households ------------------------------------------------------------------------------

_HOUSEHOLD_LABELS = {"community": "小区", "building": "楼栋", "unit": "单元", "room": "室号",
                     "natural_key": "标准门牌（楼栋-单元-室）", "owner_name": "户主",
                     "phone": "联系电话", "id_number": "身份证号", "opted_out": "自愿不改造",
                     "opted_out_at": "登记不改造时间", "optout_reason": "不改造原因",
                     "optout_letter": "书面承诺书"}
#: Longest opt-out reason the column holds (om_household.optout_reason).
_REASON_MAX = 500


class HouseholdView(TenantModelView):
    """住户: one row per dwelling; "三号楼二单元102室" and "3#-2-102" are the same household.

    The household page also takes the signed opt-out letter (不愿参与承诺书, PDF/JPG/PNG):
    sub-district staff upload it (can_optout), whoever may see the household may open it.
    """

    datamodel = SQLAInterface(Household)
    route_base = "/registry/households"
    show_template = "onemeter/household_show.html"
    om_roles = {TENANT_ADMIN: (*TenantModelView.om_roles[TENANT_ADMIN], "can_optout"),
                TENANT_STAFF: (*TenantModelView.om_roles[TENANT_STAFF], "can_optout"),
                DISTRICT_VIEWER: TenantModelView.om_roles[DISTRICT_VIEWER],
                PLATFORM_ADMIN: TenantModelView.om_roles[PLATFORM_ADMIN]}
    list_title = show_title = add_title = edit_title = "住户"
    list_columns = ["community", "building", "unit", "room", "owner_name", "phone",
                    "opted_out"]
    show_columns = ["community", "building", "unit", "room", "natural_key", "owner_name",
                    "phone", "id_number", "opted_out", "opted_out_at", "optout_reason",
                    "optout_letter"]
    add_columns = edit_columns = ["community", "building", "unit", "room", "owner_name",
                                  "phone", "id_number", "opted_out", "optout_reason"]
    search_columns = ["community", "building", "unit", "room", "owner_name", "opted_out"]
    label_columns = _HOUSEHOLD_LABELS
    formatters_columns = {"opted_out": yes_no, "opted_out_at": local_datetime,
                          "optout_letter": lambda key: "已上传" if key else "未上传"}
    base_order = ("id", "asc")
    add_form_extra_fields = edit_form_extra_fields = _flags(opted_out="自愿不改造")

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The household, with its opt-out letter (link) and the upload form for staff."""
        pk = self._deserialize_pk_if_composite(pk)
        household = self.visible_or_404(pk)
        widgets = self._show(pk)
        can_upload = self.may_write("can_optout", household)
        return self.render_template(
            self.show_template, pk=pk, title=self.show_title, widgets=widgets,
            related_views=self._related_views, household=household, can_upload=can_upload,
            reason_max=_REASON_MAX, max_size=limit_text())

    @expose("/optout/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("optout")
    def optout(self, pk: int) -> Response:
        """上传不愿参与承诺书: store the letter, mark the household opted out (with reason)."""
        household = self.visible_or_404(pk)
        if current_scope().write != household.tenant_id:
            abort(403)  # visible (a read-only role) but not writable
        back = redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))
        upload = request.files.get("letter")
        reason = (request.form.get("reason") or "").strip()
        if upload is None or not upload.filename:
            flash("请选择要上传的书面承诺书（PDF、JPG 或 PNG 文件）", "danger")
            return back
        if len(reason) > _REASON_MAX:
            flash(f"不改造原因不能超过 {_REASON_MAX} 个字", "danger")
            return back
        try:
            stored = store_upload(upload.stream, household.tenant_id)
        except UploadRefused as exc:
            flash(f"书面承诺书未上传：{exc}", "danger")
            return back
        household.opted_out = True
        if reason:
            household.optout_reason = reason
        household.optout_letter = stored.key
        self.datamodel.session.commit()
        flash("已上传书面承诺书，该户已登记为自愿不改造", "success")
        return back

    @expose("/letter/<int:pk>", methods=["GET"])
    @has_access
    @permission_name("show")
    def letter(self, pk: int) -> Response:
        """The household's signed letter, inline, to whoever may see the household."""
        household = self.visible_or_404(pk)
        key = household.optout_letter
        try:
            path = resolve_key(key, household.tenant_id)
        except UploadRefused:
            abort(404)
        if not path.is_file():
            abort(404)
        mimetype = mimetype_of(key)
        response = send_file(path, mimetype=mimetype, as_attachment=False,
                             download_name=f"optout-letter-{pk}.{key.rsplit('.', 1)[-1]}",
                             conditional=True, max_age=0)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, no-store"
        return response

    def _refuse_duplicate(self, item: Household) -> None:
        # The unique constraint is the guard; this only says it in words a clerk understands.
        key = household_key(item.building, item.unit, item.room)
        community_id = item.community.id if item.community else item.community_id
        query = sa.select(Household.id).where(Household.community_id == community_id,
                                              Household.natural_key == key)
        if item.id is not None:
            query = query.where(Household.id != item.id)
        if self.datamodel.session.execute(query).first():
            raise ValueError(f"该小区已登记此住户（{key}），不能重复登记")

    def pre_add(self, item: Household) -> None:
        self._refuse_duplicate(item)

    def pre_update(self, item: Household) -> None:
        self._refuse_duplicate(item)


class HouseholdApi(TenantModelRestApi):
    """住户 over REST; phone and ID numbers masked without view_pii."""

    datamodel = SQLAInterface(Household)
    resource_name = "household"
    list_columns = show_columns = ["id", "community.name", "building", "unit",
                                   "room", "natural_key", "owner_name", "phone", "id_number",
                                   "opted_out", "opted_out_at", "optout_reason"]
    add_columns = edit_columns = ["community", "building", "unit", "room", "owner_name",
                                  "phone", "id_number", "opted_out", "optout_reason"]


# --- plan targets (read-only) ----------------------------------------------------------------

_EVERYONE = (TENANT_ADMIN, TENANT_STAFF, DISTRICT_VIEWER, PLATFORM_ADMIN, FINANCE,
             UTILITY_STAFF)


class PlanTargetView(TenantModelView):
    """改造计划: the plan's numbers as shipped, with its stated totals checked above."""

    datamodel = SQLAInterface(PlanTarget)
    route_base = "/registry/plan"
    list_template = "onemeter/plan_target_list.html"
    om_roles = {role: READ_PERMISSIONS for role in _EVERYONE}
    base_permissions = ["can_list", "can_show", "can_export"]
    list_title = show_title = "改造计划（信平政办〔2021〕26号）"
    page_size = 50
    list_columns = ["utility_label", "phase_year", "category_label", "communities",
                    "households", "note"]
    show_columns = [*list_columns, "source"]
    # Read-only (no add/edit permission); FAB still builds the forms, so keep them trivial.
    add_columns = edit_columns = ["note"]
    search_columns = ["utility", "phase_year", "category"]
    label_columns = {"utility_label": "公用事业", "utility": "公用事业", "phase_year": "年度",
                     "category_label": "类别", "category": "类别", "communities": "小区数",
                     "households": "户数", "note": "方案原文",
                     "source": "文件"}
    formatters_columns = {"phase_year": lambda y: f"{y}年" if y else "三年合计",
                          "communities": lambda n: f"{n:,}", "households": lambda n: f"{n:,}"}
    base_order = ("id", "asc")

    @expose("/list/")
    @has_access
    def list(self) -> Response:
        """The targets, with every stated total the plan's own rows do not add up to."""
        self.update_redirect()
        widgets = self._list()
        differences = plan_totals_check(district_targets(self.datamodel.session))
        return self.render_template(self.list_template, title=self.list_title,
                                    widgets=widgets, differences=differences)


class PlanTargetApi(TenantModelRestApi):
    """改造计划 over REST, read-only."""

    datamodel = SQLAInterface(PlanTarget)
    resource_name = "plan_target"
    om_roles = {role: API_READ for role in _EVERYONE}
    base_permissions = ["can_get", "can_info"]
    list_columns = show_columns = ["id", "source", "utility", "phase_year", "category",
                                   "communities", "households", "note"]


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    """小区, 住户, 开发建设单位 and 改造计划 under 台账, and their REST APIs."""
    registrar.add_view(CommunityView, "小区", category=CATEGORY, icon="fa-home",
                       category_icon="fa-book")
    registrar.add_view(HouseholdView, "住户", category=CATEGORY, icon="fa-user")
    registrar.add_view(DeveloperView, "开发建设单位", category=CATEGORY, icon="fa-industry")
    registrar.add_view(PlanTargetView, "改造计划", category=CATEGORY, icon="fa-flag")
    for api in (CommunityApi, HouseholdApi, DeveloperApi, PlanTargetApi):
        registrar.add_api(api)

