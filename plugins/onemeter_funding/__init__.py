"""资金 (funding) plugin: investment, fiscal review, developer share, backstop, award (四(一)).

Written only against the public hooks and the core's public classes, as a third party would.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from onemeter.plugins import PluginInfo, RollupMetric, hookimpl
from onemeter_funding import models  # noqa: F401 - the plugin's tables join the metadata

__version__ = "0.1.0"


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="资金", version=__version__,
                      description="改造资金：投资估算、财政评审、开发企业出资、财政兜底、以奖代补")


@hookimpl
def onemeter_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations")


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    from onemeter_funding.views import register

    register(registrar)


@hookimpl
def onemeter_app_ready(app: Any) -> None:
    """Queue a recomputation after any request that accepted a project (or undid it)."""
    from onemeter_funding.triggers import install

    install(app)


@hookimpl
def onemeter_job_kinds() -> dict[str, str]:
    return {"funding.recompute": "onemeter_funding.jobs:recompute"}


@hookimpl
def onemeter_award_rule(as_of: dt.date) -> Any:
    """The default rule: 以奖代补 up to 20 % of total investment, from the plan's date."""
    from onemeter_funding.rules import DEFAULT_RULES, rule_in_force

    return rule_in_force(DEFAULT_RULES, as_of)


@hookimpl
def onemeter_developer_payment_recovered(tenant_id: int, project_id: int, amount: Decimal,
                                         paid_on: dt.date, reference: str, source: str) -> None:
    """Record money recovered from a developer (by the courts) as its payment on the project,
    if the sub-district enables funding."""
    from onemeter.database import db
    from onemeter_funding.service import record_recovered_payment

    record_recovered_payment(db.session, tenant_id, project_id, amount, paid_on, reference,
                             source)


@hookimpl
def onemeter_rollup_metrics(tenant_ids: list[int], as_of: dt.date) -> list[RollupMetric]:
    """Per funding sub-district: reviewed investment, developer paid, backstop and award
    allocated (the latest computation made for a day up to `as_of`), in 元."""
    from onemeter.database import db
    from onemeter_funding.service import funding_tenants, tenant_totals

    enabled = {t.id for t in funding_tenants(db.session)}
    wanted = [t for t in tenant_ids if t in enabled]
    totals = tenant_totals(db.session, wanted, as_of)
    figures = (("reviewed", "funding.reviewed_investment", "财政评审投资"),
               ("paid", "funding.developer_paid", "开发建设单位已出资"),
               ("backstop", "funding.treasury_backstop", "区财政兜底"),
               ("award", "funding.award_allocated", "以奖代补分配"))
    return [RollupMetric(code=code, label=label, unit="元", plugin="funding",
                         values={t: totals[t][key] for t in wanted})
            for key, code, label in figures]


@hookimpl
def onemeter_demo_loaded(session: Any, tenant_ids: list[int], seed: int,
                         today: dt.date) -> dict[str, int]:
    """Demo estimates, reviews, developers' payments and one award computation, in the
    loader's transaction."""
    import sqlalchemy as sa
    from flask import current_app

    from onemeter.tenancy import Tenant
    from onemeter_funding.demo import seed as seed_funding

    tenants = session.scalars(sa.select(Tenant).where(Tenant.id.in_(tenant_ids))
                              .order_by(Tenant.id)).all()
    counts = seed_funding(session, tenants,
                          plugin_manager=current_app.extensions["onemeter_plugins"],
                          today=today, seed=seed, commit=False)
    return {"资金记录": counts["funding"], "资金到位": counts["payments"],
            "奖补测算": counts["computations"]}
