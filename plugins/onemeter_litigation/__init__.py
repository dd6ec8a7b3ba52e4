"""诉讼 (litigation) plugin: tracing vanished developers, lawsuits, recoveries (五(四)).

Written only against the public hooks and the core's public classes, as a third party would.
A project referred to litigation joins its developer's open case; money recovered is passed
to whichever plugin records developer payments (`onemeter_developer_payment_recovered`).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from onemeter.plugins import PluginInfo, RollupMetric, hookimpl

__version__ = "0.1.0"


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="诉讼", version=__version__,
                      description="开发企业注销、解散或失联：查找、催告、起诉、执行与追回款项")


@hookimpl
def onemeter_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations")


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    from onemeter_litigation.views import CaseApi, CaseOverviewView, CaseView

    registrar.add_view(CaseView, "诉讼案件", category="诉讼", icon="fa-gavel",
                       category_icon="fa-balance-scale")
    registrar.add_view(CaseOverviewView, "诉讼案件汇总", category="诉讼", icon="fa-table")
    registrar.add_api(CaseApi)


@hookimpl
def onemeter_project_referred_to_litigation(project_id: int, tenant_id: int,
                                            developer_id: int | None) -> None:
    """File the referred project under its developer's open case (a new one if none)."""
    from onemeter.database import db
    from onemeter_litigation.service import open_or_join_case

    open_or_join_case(db.session, project_id, tenant_id, developer_id)


@hookimpl
def onemeter_cli_commands() -> list[Any]:
    from onemeter_litigation.commands import litigation_group

    return [litigation_group]


@hookimpl
def onemeter_rollup_metrics(tenant_ids: list[int], as_of: dt.date) -> list[RollupMetric]:
    """Per sub-district enabling the plugin: open cases, overdue, awarded, recovered."""
    from onemeter.database import db
    from onemeter_litigation.service import case_figures, enabling_tenants

    enabled = enabling_tenants(db.session, tenant_ids)
    if not enabled:
        return []
    figures = case_figures(db.session, enabled, as_of)
    empty = {"open": 0, "overdue": 0, "awarded": Decimal("0.00"), "recovered": Decimal("0.00")}

    def values(key: str) -> dict[int, Any]:
        return {t: figures.get(t, empty)[key] for t in enabled}

    return [RollupMetric(code, label, unit, values(key), plugin="litigation")
            for code, label, unit, key in (
                ("litigation_open_cases", "未结诉讼案件", "件", "open"),
                ("litigation_overdue_cases", "逾期诉讼案件", "件", "overdue"),
                ("litigation_amount_awarded", "诉讼判决金额", "元", "awarded"),
                ("litigation_amount_recovered", "诉讼追回金额", "元", "recovered"))]


@hookimpl
def onemeter_demo_loaded(session: Any, tenant_ids: list[int], seed: int,
                         today: dt.date) -> dict[str, int]:
    """The demo's referred projects get their cases (the loader writes history directly)."""
    from onemeter.tenancy import TenantScope, use_scope
    from onemeter_litigation.service import file_earlier_referrals, tenant_enables

    filed = 0
    for tenant_id in tenant_ids:
        if tenant_enables(session, tenant_id):
            with use_scope(TenantScope.tenant(tenant_id), session):
                filed += file_earlier_referrals(session, tenant_id)
    return {"诉讼立卷项目": filed}
