"""The gas plugin's hook implementations: the utility, the 入户安检 pages and API, its
migration branch and its figures in the district rollups. Public hooks only."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_appbuilder.models.sqla.interface import SQLAInterface
from wtforms import SelectField
from wtforms.validators import DataRequired

from onemeter.database import db
from onemeter.plugins import PluginInfo, RollupMetric, ViewRegistrar, hookimpl
from onemeter.registry.models import MeterAccount
from onemeter.retrofit.models import ProjectCharge, RetrofitProject
from onemeter.tenancy import Tenant
from onemeter.utilities import UtilitySpec, utility_spec
from onemeter.views import TenantModelRestApi, TenantModelView
from onemeter_gas import __version__
from onemeter_gas.models import RESULTS, GasSafetyInspection
from onemeter_gas.spec import SPEC

#: The menu category of the plugin's pages.
CATEGORY = "燃气"


def _result_field() -> SelectField:
    return SelectField("安检结果", choices=list(RESULTS.items()), widget=Select2Widget(),
                       validators=[DataRequired()])


class GasSafetyInspectionView(TenantModelView):
    """入户安检: the sub-district keeps the gas company's visit records per household."""

    datamodel = SQLAInterface(GasSafetyInspection)
    route_base = "/gas/inspections"
    list_title = "入户安检"
    show_title = "入户安检"
    add_title = "登记入户安检"
    edit_title = "修改入户安检"
    list_columns = ["household", "inspected_on", "result_label", "inspector", "hazard",
                    "rectify_by"]
    show_columns = list_columns
    add_columns = edit_columns = ["household", "inspected_on", "result", "inspector",
                                  "hazard", "rectify_by"]
    # Not "household": its filter would list every household of the sub-district in a drop-down.
    search_columns = ["inspected_on", "result", "inspector", "hazard", "rectify_by"]
    order_columns = ["inspected_on", "rectify_by"]
    base_order = ("inspected_on", "desc")
    label_columns = {"household": "住户", "inspected_on": "安检日期", "result": "安检结果",
                     "result_label": "安检结果", "inspector": "安检员", "hazard": "隐患情况",
                     "rectify_by": "整改期限"}
    add_form_extra_fields = {"result": _result_field()}
    edit_form_extra_fields = {"result": _result_field()}


class GasSafetyInspectionApi(TenantModelRestApi):
    """入户安检 over REST, for the gas company's own systems."""

    datamodel = SQLAInterface(GasSafetyInspection)
    resource_name = "gas_safety_inspection"
    list_columns = show_columns = ["id", "household.id", "inspected_on", "result",
                                   "inspector", "hazard", "rectify_by"]
    add_columns = edit_columns = ["household", "inspected_on", "result", "inspector",
                                  "hazard", "rectify_by"]


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    """燃气: label, version, the hook API it was written against (1.x)."""
    return PluginInfo(label="燃气", version=__version__, hook_api="1.3",
                      description="燃气“一户一表”：户表、禁止收取燃气初装费（四(二)3）、入户安检")


@hookimpl
def onemeter_utilities() -> list[UtilitySpec]:
    """The gas utility: formats, headings, the cancelled 燃气初装费."""
    return [SPEC]


@hookimpl
def onemeter_migrations_location() -> str:
    """The Alembic branch `gas` (the 入户安检 table)."""
    return str(Path(__file__).parent / "migrations")


@hookimpl
def onemeter_register_views(registrar: ViewRegistrar) -> None:
    """入户安检 under the 燃气 menu, and its REST API."""
    registrar.add_view(GasSafetyInspectionView, "入户安检", category=CATEGORY, icon="fa-fire")
    registrar.add_api(GasSafetyInspectionApi)


def _gas_tenants(tenant_ids: list[int]) -> list[int]:
    # The name the core registered this plugin under (the entry point's, normally "gas").
    spec = utility_spec(SPEC.code)
    plugin = spec.plugin if spec and spec.plugin else SPEC.code
    tenants = db.session.scalars(sa.select(Tenant).where(Tenant.id.in_(tenant_ids or [-1])))
    return sorted(t.id for t in tenants if t.enables(plugin))


def rollup_metrics(tenant_ids: list[int], as_of: dt.date) -> list[RollupMetric]:
    """燃气户表, projects accepted, households that passed 入户安检, overdue hazards and
    燃气初装费 charged, per sub-district that enables gas, as of `as_of`."""
    ids = _gas_tenants(tenant_ids)
    if not ids:
        return []
    zero = dict.fromkeys(ids, 0)

    def counts(query: sa.Select) -> dict[int, int]:
        return {**zero, **{t: int(n) for t, n in db.session.execute(query)}}

    accounts = counts(sa.select(MeterAccount.tenant_id, sa.func.count(MeterAccount.id))
                      .where(MeterAccount.tenant_id.in_(ids), MeterAccount.utility == SPEC.code)
                      .group_by(MeterAccount.tenant_id))
    accepted = counts(sa.select(RetrofitProject.tenant_id, sa.func.count(RetrofitProject.id))
                      .where(RetrofitProject.tenant_id.in_(ids),
                             RetrofitProject.utility == SPEC.code,
                             RetrofitProject.state == "accepted")
                      .group_by(RetrofitProject.tenant_id))
    # The latest inspection of each household on or before as_of decides its standing.
    latest: dict[tuple[int, int], GasSafetyInspection] = {}
    for row in db.session.scalars(
            sa.select(GasSafetyInspection)
            .where(GasSafetyInspection.tenant_id.in_(ids),
                   GasSafetyInspection.inspected_on <= as_of)
            .order_by(GasSafetyInspection.inspected_on, GasSafetyInspection.id)):
        latest[(row.tenant_id, row.household_id)] = row
    passed: dict[int, int] = defaultdict(int, zero)
    overdue: dict[int, int] = defaultdict(int, zero)
    for (tenant_id, _), row in latest.items():
        if row.result == "passed":
            passed[tenant_id] += 1
        elif row.result == "hazard" and row.rectify_by is not None and row.rectify_by < as_of:
            overdue[tenant_id] += 1
    fees = {t: Decimal("0.00") for t in ids}
    for tenant_id, total in db.session.execute(
            sa.select(ProjectCharge.tenant_id, sa.func.sum(ProjectCharge.amount))
            .join(RetrofitProject, RetrofitProject.id == ProjectCharge.project_id)
            .where(ProjectCharge.tenant_id.in_(ids), RetrofitProject.utility == SPEC.code,
                   ProjectCharge.prohibited_fee.is_not(None),
                   sa.or_(ProjectCharge.charged_on.is_(None), ProjectCharge.charged_on <= as_of))
            .group_by(ProjectCharge.tenant_id)):
        fees[tenant_id] = Decimal(total or 0).quantize(Decimal("0.01"))
    return [
        RollupMetric("gas_accounts", "燃气户表", "户", accounts),
        RollupMetric("gas_projects_accepted", "燃气改造已接收项目", "个", accepted),
        RollupMetric("gas_inspections_passed", "入户安检合格", "户", dict(passed)),
        RollupMetric("gas_hazards_overdue", "安检隐患逾期未整改", "户", dict(overdue)),
        RollupMetric("gas_initial_fee_charged", "违规收取燃气初装费", "元", fees),
    ]


@hookimpl
def onemeter_rollup_metrics(tenant_ids: list[int], as_of: dt.date) -> list[RollupMetric]:
    """The gas figures of the district rollups (see `rollup_metrics`)."""
    return rollup_metrics(tenant_ids, as_of)
