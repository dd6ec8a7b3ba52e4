"""Pages and APIs over `MeterAccount` for one utility, built from its `UtilitySpec`.

A utility plugin calls `meter_account_views(spec)` in its `onemeter_register_views` and adds
the two classes it gets: the pages are the plugin's own, so a tenant without it sees nothing.
"""

from __future__ import annotations

from typing import Any

import marshmallow
from flask_appbuilder.models.sqla.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from wtforms import SelectField
from wtforms.validators import Optional as OptionalInput
from wtforms.validators import ValidationError

from onemeter.formatting import local_date
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
from onemeter.utilities import UtilitySpec
from onemeter.views import API_READ, API_WRITE, TenantModelRestApi, TenantModelView


class UtilityFilter(BaseFilter):
    """Rows of one utility; utility staff of another utility get none (never "all")."""

    name = "utility"

    def apply(self, query: Any, value: Any) -> Any:
        own = current_scope().utility
        if own is not None and own != value:
            return query.filter(self.model.id.is_(None))
        return query.filter(self.model.utility == value)


def _form_check(check: Any) -> Any:
    def validate(form: Any, field: Any) -> None:
        try:
            field.data = check(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
    return validate


def _api_check(check: Any) -> Any:
    def validate(value: Any) -> None:
        try:
            check(value)
        except ValueError as exc:
            raise marshmallow.ValidationError(str(exc)) from exc
    return validate


def _class_name(spec: UtilitySpec, suffix: str) -> str:
    # The class name is the permission name: one per utility.
    return "".join(part.title() for part in spec.code.split("_")) + suffix


def meter_account_views(spec: UtilitySpec) -> tuple[type, type]:
    """(page class, REST API class) over `spec`'s meter accounts.

    Tenant staff keep them; district viewers and the platform admin read; the utility's
    own staff read their utility's accounts in every sub-district (for reconciliation).
    Account and meter numbers are checked against the spec's formats on every write.
    """
    labels = {"household": "住户", "household.community": "小区",
              "account_no": spec.account_label, "meter_no": spec.meter_label,
              "rating": spec.rating_label, "status": "状态", "status_label": "状态",
              "online_payment_on": "实现网上缴费日期", "note": "备注"}
    columns = ["household", "account_no", "meter_no", "rating", "status", "online_payment_on"]
    rating_field = (SelectField(spec.rating_label, choices=[("", "—")] + [
        (c, c) for c in spec.rating_choices], validators=[OptionalInput()])
        if spec.rating_choices else None)

    def pre_write(self: Any, item: MeterAccount) -> None:
        item.utility = spec.code
        item.rating = item.rating or None

    page_attrs: dict[str, Any] = {
        "__doc__": f"{spec.label}户表：{spec.account_label}、{spec.meter_label}与状态。",
        "datamodel": SQLAInterface(MeterAccount),
        "route_base": f"/{spec.code}/accounts",
        "base_filters": [["utility", UtilityFilter, spec.code]],
        "om_roles": {TENANT_ADMIN: WRITE_PERMISSIONS, TENANT_STAFF: WRITE_PERMISSIONS,
                     DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS,
                     UTILITY_STAFF: READ_PERMISSIONS},
        "list_title": f"{spec.label}户表", "show_title": f"{spec.label}户表",
        "add_title": f"新增{spec.label}户表", "edit_title": f"修改{spec.label}户表",
        "list_columns": columns,
        "show_columns": [*columns, "note"],
        "add_columns": [*columns, "note"],
        "edit_columns": [*columns, "note"],
        "search_columns": ["household", "account_no", "meter_no", "status",
                           "online_payment_on"],
        "label_columns": labels,
        "formatters_columns": {"status": lambda s: ACCOUNT_STATUS_LABELS.get(s, s),
                               "online_payment_on": local_date},
        "validators_columns": {"account_no": [_form_check(spec.check_account_no)],
                               "meter_no": [_form_check(spec.check_meter_no)]},
        "add_form_extra_fields": {
            "status": SelectField("状态", choices=[(s, ACCOUNT_STATUS_LABELS[s])
                                                   for s in ACCOUNT_STATUSES]),
            **({"rating": rating_field} if rating_field else {})},
        "base_order": ("id", "asc"),
        "pre_add": pre_write,
        "pre_update": pre_write,
    }
    page_attrs["edit_form_extra_fields"] = page_attrs["add_form_extra_fields"]
    page = type(_class_name(spec, "AccountView"), (TenantModelView,), page_attrs)

    api_attrs: dict[str, Any] = {
        "__doc__": f"{spec.label}户表 REST API。",
        "datamodel": SQLAInterface(MeterAccount),
        "resource_name": f"{spec.code}_account",
        "base_filters": [["utility", UtilityFilter, spec.code]],
        "om_roles": {TENANT_ADMIN: API_WRITE, TENANT_STAFF: API_WRITE,
                     DISTRICT_VIEWER: API_READ, PLATFORM_ADMIN: API_READ,
                     UTILITY_STAFF: API_READ},
        "list_columns": ["id", "household.id", "household.natural_key", "account_no",
                         "meter_no", "rating", "status", "online_payment_on", "note"],
        "show_columns": ["id", "household.id", "household.natural_key", "account_no",
                         "meter_no", "rating", "status", "online_payment_on", "note"],
        "add_columns": ["household", "account_no", "meter_no", "rating", "status",
                        "online_payment_on", "note"],
        "edit_columns": ["account_no", "meter_no", "rating", "status", "online_payment_on",
                         "note"],
        "validators_columns": {"account_no": _api_check(spec.check_account_no),
                               "meter_no": _api_check(spec.check_meter_no)},
        "pre_add": pre_write,
        "pre_update": pre_write,
    }
    api = type(_class_name(spec, "AccountApi"), (TenantModelRestApi,), api_attrs)
    return page, api
