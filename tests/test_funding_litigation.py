"""The two plugins together, as the issue's "done when" asks: a project whose developer is
unreachable goes through tracing, lawsuit, judgment and recovery on the litigation pages, and
the money recovered shows as that project's developer payment in the funding plugin (through
the core hook `onemeter_developer_payment_recovered`, neither plugin importing the other).
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Flask
from onemeter_funding.models import FundingPayment
from onemeter_funding.service import developer_paid

from onemeter.database import db
from onemeter.plugins import plugin_names
from onemeter.tenancy import TenantScope, use_scope
from tests.test_litigation import (
    LATER,
    TODAY,
    case_of,
    case_step,
    developer_projects,
    ok,
    refer,
)


def test_a_recovery_on_the_litigation_pages_is_the_projects_developer_payment_in_funding(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    assert {"funding", "litigation"} <= set(plugin_names(app.extensions["onemeter_plugins"]))
    pingdong = tenant_ids["pingdong"]
    _, (water_pk, power_pk) = developer_projects(app, pingdong, ["water", "electricity"])
    clients: dict[str, Any] = {}

    def as_user(name: str) -> Any:
        return clients.setdefault(name, login(name))

    refer(as_user, "pingdong", water_pk)
    refer(as_user, "pingdong", power_pk)
    pk = case_of(app, water_pk).id
    assert case_of(app, power_pk).id == pk
    staff, admin = as_user("pingdong_staff"), as_user("pingdong_admin")
    ok(case_step(staff, pk, "record_tracing", department="公安分局", result="查无此人"))
    ok(case_step(staff, pk, "send_demand_letter", document="催告函", deadline=LATER))
    ok(case_step(admin, pk, "file_lawsuit", court="平桥区人民法院",
                 case_number="（2022）豫1503民初88号", occurred_on=TODAY.isoformat()))
    ok(case_step(staff, pk, "record_judgment", occurred_on=TODAY.isoformat(),
                 amount="30000.01", document="判决书"))
    ok(case_step(staff, pk, "apply_enforcement", occurred_on=TODAY.isoformat(),
                 case_number="（2022）豫1503执9号"))
    with app.app_context(), use_scope(TenantScope.tenant(pingdong), db.session):
        before = developer_paid(db.session, [water_pk, power_pk])
    assert before == {}
    ok(case_step(admin, pk, "record_recovery", amount="20,000.01",
                 occurred_on=TODAY.isoformat(), document="执行款到账凭证"))

    with app.app_context(), use_scope(TenantScope.tenant(pingdong), db.session):
        paid = developer_paid(db.session, [water_pk, power_pk])
        payments = db.session.scalars(sa.select(FundingPayment).where(
            FundingPayment.project_id.in_([water_pk, power_pk]))).all()
        sources = {(p.project_id, p.payer, p.source) for p in payments}
        db.session.rollback()
    assert paid == {water_pk: decimal.Decimal("10000.01"), power_pk: decimal.Decimal("10000.00")}
    assert sources == {(water_pk, "developer", "litigation"), (power_pk, "developer", "litigation")}
    # Another sub-district sees none of it.
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingxi"]), db.session):
        assert developer_paid(db.session, [water_pk, power_pk]) == {}
