"""户表 pages and API: meter accounts of every utility the user's sub-district enables.

Generic over utilities like the retrofit procedure: each row is checked against its own
utility's `UtilitySpec` (account and meter number formats), so a new utility plugin brings
its spec and gets these pages without a line here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context
from flask_appbuilder.models.sqla.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from werkzeug.exceptions import BadRequest
from wtforms import SelectField

from onemeter.formatting import local_date
from onemeter.plugins import hookimpl
from onemeter.registry.models import ACCOUNT_STATUS_LABELS, ACCOUNT_STATUSES, MeterAccount
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
    UTILITY_STAFF,
    WRITE_PERMISSIONS,
)
from onemeter.tenancy import current_scope
from onemeter.utilities import utility_choices, utility_label, utility_spec
from onemeter.views import API_READ, API_WRITE, TenantModelRestApi, TenantModelView


def visible_utilities(sm: Any) -> list[str]:
    """Utility codes the current user may see: enabled for their tenant(s), and for
    utility staff only their own."""
    enabled = sm.enabled_plugins() if has_request_context() else None
    own = current_scope().utility
    return [code for code, _ in utility_choices(enabled) if own is None or code == own]


class VisibleUtilityFilter(BaseFilter):
    """Rows of the utilities `visible_utilities` allows; none when it allows none."""

    name = "visible utilities"

    def apply(self, query: Any, value: Any) -> Any:
        return query.filter(self.model.utility.in_(visible_utilities(current_app.appbuilder.sm)))


def _refuse_duplicates(item: MeterAccount, session: Any) -> None:
    # The unique constraints are the guard; this says it in words a clerk understands.
    household_id = item.household.id if item.household else item.household_id
    same = sa.select(MeterAccount.id).where(MeterAccount.utility == item.utility)
    if item.id is not None:
        same = same.where(MeterAccount.id != item.id)
    if session.execute(same.where(MeterAccount.household_id == household_id)).first():
        raise ValueError(f"该住户已有{utility_label(item.utility)}户表，不能重复登记")
    if item.account_no and session.execute(
            same.where(MeterAccount.account_no == item.account_no)).first():
        raise ValueError(f"户号 {item.account_no} 已登记在本办事处的另一户")


def check_account(item: MeterAccount, sm: Any) -> None:
    """Refuse (ValueError, Chinese) a utility not enabled here, a malformed number, or an
    account the household or the number already has."""
    item.utility = (item.utility or "").strip()
    spec = utility_spec(item.utility)
    if spec is None or item.utility not in visible_utilities(sm):
        raise ValueError(f"公用事业「{item.utility}」未启用")
    item.account_no = spec.check_account_no(item.account_no)
    item.meter_no = spec.check_meter_no(item.meter_no)
    item.rating = (item.rating or "").strip() or None
    if item.rating and spec.rating_choices and item.rating not in spec.rating_choices:
        raise ValueError(f"{spec.rating_label}应为：{'、'.join(spec.rating_choices)}")
    _refuse_duplicates(item, sm.session)


_LABELS = {"household": "住户", "utility": "公用事业", "account_no": "户号",
           "meter_no": "表号", "rating": "口径/容量", "status": "状态",
           "online_payment_on": "实现网上缴费日期", "note": "备注"}
_COLUMNS = ["household", "utility", "account_no", "meter_no", "rating", "status",
            "online_payment_on"]
_ROLES = {TENANT_ADMIN: WRITE_PERMISSIONS, TENANT_STAFF: WRITE_PERMISSIONS,
          DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS,
          UTILITY_STAFF: READ_PERMISSIONS}


class MeterAccountView(TenantModelView):
    """户表: a household's account with one utility; numbers in that utility's format."""

    datamodel = SQLAInterface(MeterAccount)
    route_base = "/registry/accounts"
    om_roles = _ROLES
    base_filters = [["id", VisibleUtilityFilter, lambda: None]]
    list_title = show_title = "户表"
    add_title = "新增户表"
    edit_title = "修改户表"
    list_columns = _COLUMNS
    show_columns = add_columns = edit_columns = [*_COLUMNS, "note"]
    # Not "household": its filter would list every household of the district in a drop-down.
    search_columns = ["utility", "account_no", "meter_no", "rating", "status",
                      "online_payment_on"]
    label_columns = _LABELS
    description_columns = {"utility": "本办事处已启用的公用事业代码，如 water（供水）、"
                                      "electricity（供电）",
                           "account_no": "按该公用事业的户号格式（如供电为10位数字）"}
    formatters_columns = {"status": lambda s: ACCOUNT_STATUS_LABELS.get(s, s),
                          "utility": utility_label, "online_payment_on": local_date}
    add_form_extra_fields = edit_form_extra_fields = {
        "status": SelectField("状态", choices=[(s, ACCOUNT_STATUS_LABELS[s])
                                               for s in ACCOUNT_STATUSES])}
    base_order = ("id", "asc")

    def pre_add(self, item: MeterAccount) -> None:
        check_account(item, self.appbuilder.sm)

    pre_update = pre_add


class MeterAccountApi(TenantModelRestApi):
    """户表 over REST, with the same checks and the same visible utilities."""

    datamodel = SQLAInterface(MeterAccount)
    resource_name = "meter_account"
    om_roles = {TENANT_ADMIN: API_WRITE, TENANT_STAFF: API_WRITE, DISTRICT_VIEWER: API_READ,
                PLATFORM_ADMIN: API_READ, UTILITY_STAFF: API_READ}
    base_filters = [["id", VisibleUtilityFilter, lambda: None]]
    list_columns = show_columns = ["id", "household.id", "household.natural_key", "utility",
                                   "account_no", "meter_no", "rating", "status",
                                   "online_payment_on", "note"]
    add_columns = ["household", "utility", "account_no", "meter_no", "rating", "status",
                   "online_payment_on", "note"]
    edit_columns = ["account_no", "meter_no", "rating", "status", "online_payment_on", "note"]

    def pre_add(self, item: MeterAccount) -> None:
        try:
            check_account(item, self.appbuilder.sm)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    pre_update = pre_add


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    """户表 under 台账, and its REST API."""
    registrar.add_view(MeterAccountView, "户表", category="台账", icon="fa-tachometer")
    registrar.add_api(MeterAccountApi)
