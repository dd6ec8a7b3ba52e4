"""Utilities as plugins declare them: the plan's cancelled fees (五(六)) enforced per utility,
account and meter numbers in each utility's format, and each utility's staff seeing their own
utility across sub-districts and nothing else."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from onemeter_electricity import SPEC as POWER
from onemeter_water import SPEC as WATER

from onemeter.database import db
from onemeter.plugins import PluginLoadError, hookimpl
from onemeter.registry.models import Community, Household, MeterAccount
from onemeter.retrofit.models import ProjectCharge, RetrofitProject, prohibited_charge_totals
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.utilities import UtilitySpec

#: The plan's text ships with the repository (docs/policy/), so the fee lists are checked
#: against it on any clean clone; the shared copy beside the checkout, when present, must match.
POLICY = Path(__file__).resolve().parents[1] / "docs" / "policy"
SHARED_POLICY = Path(__file__).resolve().parents[2] / "shared" / "policy"


def test_the_shipped_plan_is_the_shared_plan() -> None:
    shipped = sorted(POLICY.glob("*.txt"))
    assert shipped, "docs/policy/ must hold the plan's text"
    for path in shipped:
        shared = SHARED_POLICY / path.name
        if shared.exists():
            assert shared.read_bytes() == path.read_bytes(), path.name


def policy_fees(start: str, end: str) -> list[str]:
    """The fee names of one clause of 五(六), read from the plan's own text."""
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(POLICY.glob("*.txt")))
    clause = text[text.index(start) + len(start):]
    clause = clause[:clause.index(end)]
    names = re.findall(r"[\u4e00-\u9fff]+?费(?!用)", clause.replace("以及", "、"))
    return [n.removeprefix("等类似名目开户费用").removeprefix("等类似名目工程费用")
            for n in names]


def test_water_fees_are_the_plans_list_verbatim() -> None:
    fees = policy_fees("供水部门在用水报装工程验收接入环节取消", "；供电部门")
    assert fees == list(WATER.cancelled_fees)
    assert len(fees) == 11


def test_electricity_fees_are_the_plans_list_verbatim() -> None:
    fees = policy_fees("供电部门在用电报装工程验收接入环节取消", "等类似名目费用")
    assert fees == list(POWER.cancelled_fees)
    assert len(fees) == 12


@pytest.mark.parametrize(("spec", "name", "fee"), [
    (WATER, "接水费", "接水费"),
    (WATER, "收取接水费用", "接水费"),
    (WATER, "二次 开关闸费", "开关闸费"),
    (WATER, "开闸费", "开关闸费"),
    (WATER, "开户费", "接水费"),          # "等类似名目开户费用"
    (WATER, "ＤＮ１５ 碰头费", "碰头费"),     # full-width forms
    (WATER, "竣工导线测量费（补）", "竣工导线测量费"),
    (POWER, "移表费", "移表费"),
    (POWER, "电表迁表费", "移表费"),
    (POWER, "互感器校验费", "互感器试验费"),
    (POWER, "高压电缆震荡波试验费用", "高压电缆震荡波试验费"),
    (POWER, "送电调试费", "调试费"),
])
def test_a_cancelled_fee_or_an_obvious_variant_is_recognised(spec: UtilitySpec, name: str,
                                                             fee: str) -> None:
    assert spec.cancelled_fee(name) == fee


@pytest.mark.parametrize(("spec", "name"), [
    (WATER, "水表材料费"), (WATER, "水费"), (WATER, "移表费"),  # 移表费 is electricity's
    (POWER, "电费"), (POWER, "接水费"), (POWER, "电缆材料费"), (WATER, ""),
])
def test_other_charges_are_not_flagged(spec: UtilitySpec, name: str) -> None:
    assert spec.cancelled_fee(name) is None


@pytest.mark.parametrize(("spec", "good", "bad"), [
    (WATER, ("12345678", " 1234 5678 ", "１２３４５６７８"), ("12345", "12345678a", "1" * 13)),
    (POWER, ("0123456789",), ("012345678", "01234567890", "户号0123456789")),
])
def test_account_numbers_follow_the_utility_format(spec: UtilitySpec, good: tuple,
                                                   bad: tuple) -> None:
    for value in good:
        assert re.fullmatch(spec.account_pattern, spec.check_account_no(value))
    for value in bad:
        with pytest.raises(ValueError, match=f"{spec.account_label}.*格式不对：应为"):
            spec.check_account_no(value)
    assert spec.check_account_no("  ") is None


def test_a_utility_declared_twice_stops_start_up(stack: Any) -> None:
    from onemeter.app import create_app
    from onemeter.plugins import PluginInfo

    class Copycat:
        @hookimpl
        def onemeter_plugin_info(self) -> PluginInfo:
            return PluginInfo(label="仿冒供水", version="0.1")

        @hookimpl
        def onemeter_utilities(self) -> list[UtilitySpec]:
            return [WATER]

    with pytest.raises(PluginLoadError, match="公用事业 water 重复声明：water 与 copycat"):
        create_app(stack.config(), extra_plugins={"copycat": Copycat()})


def test_utilities_are_listed_in_their_declared_order_then_by_code(stack: Any) -> None:
    """供水 (10), 供电 (20) first whatever their codes sort as; utilities that give no order
    follow by code; one that asks for an earlier place gets it."""
    from dataclasses import replace

    from onemeter.app import create_app
    from onemeter.plugins import PluginInfo
    from onemeter.utilities import utilities, utility_choices

    class More:
        @hookimpl
        def onemeter_plugin_info(self) -> PluginInfo:
            return PluginInfo(label="更多", version="0.1")

        @hookimpl
        def onemeter_utilities(self) -> list[UtilitySpec]:
            plain = {f.name: getattr(WATER, f.name) for f in WATER.__dataclass_fields__.values()
                     if f.name not in ("order", "plugin")}
            return [UtilitySpec(**{**plain, "code": "aheat", "label": "供热"}),
                    UtilitySpec(**{**plain, "code": "zcool", "label": "供冷"}),
                    replace(WATER, code="first", label="最先", order=1)]

    app = create_app(stack.config(), extra_plugins={"more": More()})
    with app.app_context():
        codes = list(utilities())
        assert codes[:3] == ["first", "water", "electricity"]
        assert "aheat" in codes and "zcool" in codes
        assert codes[3:] == sorted(codes[3:])  # gas, when installed, among them by code
        labels = [label for _, label in utility_choices()]
        assert labels.index("供水") < labels.index("供电") < labels.index("供热") < labels.index(
            "供冷")


def test_a_utility_whose_example_number_breaks_its_own_format_stops_start_up(stack: Any
                                                                             ) -> None:
    from dataclasses import replace

    from onemeter.app import create_app
    from onemeter.plugins import PluginInfo

    class Sloppy:
        @hookimpl
        def onemeter_plugin_info(self) -> PluginInfo:
            return PluginInfo(label="示例不符", version="0.1")

        @hookimpl
        def onemeter_utilities(self) -> list[UtilitySpec]:
            return [replace(WATER, code="sloppy", account_example="12AB")]

    with pytest.raises(PluginLoadError, match="插件 sloppy 的示例号码「12AB」不符合"):
        create_app(stack.config(), extra_plugins={"sloppy": Sloppy()})


# --- on the database ----------------------------------------------------------------------

def new_project(app: Flask, tenant_id: int, utility: str, **fields: Any) -> int:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = Community(tenant_id=tenant_id, name=f"收费测试{uuid.uuid4().hex[:6]}")
        project = RetrofitProject(tenant_id=tenant_id, community=community, utility=utility,
                                  **{"state": "registered", **fields})
        db.session.add(project)
        db.session.commit()
        return project.id


def charges(app: Flask, project_id: int) -> list[tuple[str, str | None, decimal.Decimal]]:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return [(c.name, c.prohibited_fee, c.amount) for c in db.session.scalars(
            sa.select(ProjectCharge).where(ProjectCharge.project_id == project_id)
            .order_by(ProjectCharge.id))]


def test_a_cancelled_fee_recorded_through_the_page_is_flagged_and_counted(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    water, power = new_project(app, tenant, "water"), new_project(app, tenant, "electricity")
    staff = login("pingdong_staff")
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        before = prohibited_charge_totals(db.session)
    for project, name, amount in ((water, "收取开关闸费用", "1200.50"), (water, "水表材料费", "80"),
                                  (power, "移表费", "300"), (water, "移表费", "10")):
        response = staff.post("/retrofit/charges/add", data={
            "project": str(project), "name": name, "amount": amount, "charged_by": "某物业",
            "charged_on": "2021-09-01"}, follow_redirects=True)
        assert response.status_code == 200
    assert charges(app, water) == [
        ("收取开关闸费用", "开关闸费", decimal.Decimal("1200.50")),
        ("水表材料费", None, decimal.Decimal("80.00")),
        ("移表费", None, decimal.Decimal("10.00")),  # not a water fee: the utility decides
    ]
    assert charges(app, power) == [("移表费", "移表费", decimal.Decimal("300.00"))]
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        after = prohibited_charge_totals(db.session)
    zero = (0, decimal.Decimal("0.00"))
    assert after["water"][0] - before.get("water", zero)[0] == 1
    assert after["water"][1] - before.get("water", zero)[1] == decimal.Decimal("1200.50")
    assert after["electricity"][0] - before.get("electricity", zero)[0] == 1
    page = staff.get("/retrofit/charges/list/").get_data(as_text=True)
    assert "违规：开关闸费" in page and "违规：移表费" in page
    assert "接水费、增容费、报装费、开关闸费" in page  # the plan's list shown above


def test_renaming_a_charge_re_flags_it(app: Flask, tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    project = new_project(app, tenant, "water")
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        charge = ProjectCharge(tenant_id=tenant, project_id=project, name="安装费",
                               amount=decimal.Decimal("50"))
        db.session.add(charge)
        db.session.commit()
        assert charge.prohibited_fee is None
        charge.name = "勾头费"
        db.session.commit()
        assert db.session.get(ProjectCharge, charge.id).prohibited_fee == "勾头费"


def make_household(app: Flask, tenant_id: int) -> int:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = Community(tenant_id=tenant_id, name=f"户表测试{uuid.uuid4().hex[:6]}")
        household = Household(tenant_id=tenant_id, community=community, building="3号楼",
                               unit="2单元", room="102")
        db.session.add(household)
        db.session.commit()
        return household.id


def accounts_of(app: Flask, household_id: int) -> list[tuple[str, str | None]]:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return [(a.utility, a.account_no) for a in db.session.scalars(
            sa.select(MeterAccount).where(MeterAccount.household_id == household_id)
            .order_by(MeterAccount.id))]


def test_account_numbers_are_checked_on_the_page_and_the_api(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    household = make_household(app, tenant_ids["pingdong"])
    staff = login("pingdong_staff")
    page = staff.post("/registry/accounts/add", data={
        "household": str(household), "utility": "electricity", "account_no": "12345",
        "status": "surveyed"}, follow_redirects=True).get_data(as_text=True)
    assert "用电户号「12345」格式不对：应为10位数字" in page
    page = staff.post("/registry/accounts/add", data={
        "household": str(household), "utility": "gas", "account_no": "12345",
        "status": "surveyed"}, follow_redirects=True).get_data(as_text=True)
    assert "公用事业「gas」未启用" in page
    assert accounts_of(app, household) == []

    from tests.support.matrix import token_client

    api = token_client(app, "pingdong_staff", "Test-password-1")
    bad = api.post("/api/v1/meter_account/", json={
        "household": household, "utility": "water", "account_no": "12a", "status": "surveyed"})
    assert bad.status_code == 400 and "用水户号「12a」格式不对" in bad.get_json()["message"]
    good = api.post("/api/v1/meter_account/", json={
        "household": household, "utility": "water", "account_no": "８８０００００１",
        "meter_no": "sz2021000001".upper(), "rating": "DN15", "status": "installed"})
    assert good.status_code == 201, good.get_data(as_text=True)
    assert accounts_of(app, household) == [("water", "88000001")]
    again = api.post("/api/v1/meter_account/", json={
        "household": household, "utility": "water", "account_no": "88000002"})
    assert again.status_code == 400 and "该住户已有供水户表" in again.get_json()["message"]
    other = make_household(app, tenant_ids["pingdong"])
    page = staff.post("/registry/accounts/add", data={
        "household": str(other), "utility": "water", "account_no": "88000001",
        "status": "surveyed"}, follow_redirects=True).get_data(as_text=True)
    assert "户号 88000001 已登记在本办事处的另一户" in page
    assert accounts_of(app, other) == []


def test_utility_staff_see_their_utility_in_every_sub_district_and_nothing_else(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    projects = {(code, utility): new_project(app, tenant_ids[code], utility)
                for code in ("pingqiao", "zhenleishan") for utility in ("water", "electricity")}
    water, power = login("water"), login("power")
    for client, own in ((water, "water"), (power, "electricity")):
        listing = client.get("/retrofit/progress/").get_data(as_text=True)
        for (code, utility), pk in projects.items():
            link = f'/retrofit/show/{pk}"'
            assert (link in listing) == (utility == own), (own, code, utility)
            status = client.get(f"/retrofit/show/{pk}").status_code
            assert (status == 200) == (utility == own), (own, code, utility, status)
    household = make_household(app, tenant_ids["pingxi"])
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingxi"]), db.session):
        db.session.add(MeterAccount(tenant_id=tenant_ids["pingxi"], household_id=household,
                                    utility="water", account_no="77000001"))
        db.session.commit()
    assert "77000001" in water.get("/registry/accounts/list/?psize_MeterAccountView=100000"
                                   ).get_data(as_text=True)
    assert "77000001" not in power.get("/registry/accounts/list/?psize_MeterAccountView=100000"
                                       ).get_data(as_text=True)
    # read-only: the utility's staff take steps, they do not keep the ledger
    response = water.post("/registry/accounts/add", data={
        "household": str(household), "utility": "water", "account_no": "77000002"})
    assert accounts_of(app, household) == [("water", "77000001")]
    assert response.status_code in (302, 403)


def test_a_tenant_that_does_not_enable_a_utility_cannot_use_it(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["zhenleishan"]
    with app.app_context(), use_scope(TenantScope.all_read_only(orm_enforced=False),
                                      db.session):
        row = db.session.get(Tenant, tenant)
        saved = list(row.plugins)
        db.session.execute(sa.update(Tenant).where(Tenant.id == tenant).values(
            plugins=[p for p in saved if p != "electricity"]))
        db.session.commit()
    try:
        power_project = new_project(app, tenant, "electricity")
        staff = login("zhenleishan_staff")
        community = staff.get("/retrofit/add").get_data(as_text=True)
        assert "retrofit" in community
        with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
            community_id = db.session.get(RetrofitProject, power_project).community_id
        page = staff.post("/retrofit/add", data={"community": str(community_id),
                                                 "utility": "electricity"},
                          follow_redirects=True).get_data(as_text=True)
        assert "公用事业「electricity」未启用；可选：water（供水）" in page
        listing = staff.get("/retrofit/progress/").get_data(as_text=True)
        assert f'/retrofit/show/{power_project}"' not in listing
        assert "供电" not in staff.get("/retrofit/charges/list/").get_data(as_text=True)
    finally:
        with app.app_context(), use_scope(TenantScope.all_read_only(orm_enforced=False),
                                          db.session):
            db.session.execute(sa.update(Tenant).where(Tenant.id == tenant).values(
                plugins=saved))
            db.session.commit()


def test_progress_counts_leave_opted_out_households_out_and_put_overdue_first(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingxi"]
    late = new_project(app, tenant, "water", state="rectification_ordered",
                       deadline=dt.date(2021, 8, 1))
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        project = db.session.get(RetrofitProject, late)
        for room, status, opted in (("101", "active", False), ("102", "installed", False),
                                    ("103", "surveyed", False), ("104", "surveyed", True),
                                    ("105", "active", True)):
            household = Household(tenant_id=tenant, community_id=project.community_id,
                                  building="1", unit="1", room=room, opted_out=opted)
            db.session.add(MeterAccount(tenant_id=tenant, household=household,
                                        utility="water", status=status))
        db.session.commit()
    page = login("pingxi_staff").get("/retrofit/progress/").get_data(as_text=True)
    first_row = page[page.index("<tbody>"):].split("</tr>")[0]
    assert f"/retrofit/show/{late}" in first_row and "已逾期" in first_row
    assert "2 / 3 户" in first_row and "2 户" in first_row  # done / in scope; opted out
    home = login("pingxi_staff").get("/").get_data(as_text=True)
    assert "panel-danger" in home and "/retrofit/progress/?overdue=1" in home


def test_the_api_flags_charges_and_shows_utility_staff_their_projects_only(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    from tests.support.matrix import token_client

    tenant = tenant_ids["pingdong"]
    water_pk, power_pk = new_project(app, tenant, "water"), new_project(app, tenant, "electricity")
    staff = token_client(app, "pingdong_staff", "Test-password-1")
    created = staff.post("/api/v1/project_charge/", json={
        "project": power_pk, "name": "低压计量检测费", "amount": "45.50",
        "prohibited_fee": None})
    assert created.status_code in (400, 422)  # the flag is computed, never sent
    created = staff.post("/api/v1/project_charge/", json={
        "project": power_pk, "name": "电表检测费", "amount": "45.50"})
    assert created.status_code == 201, created.get_data(as_text=True)
    got = staff.get(f"/api/v1/project_charge/{created.get_json()['id']}").get_json()["result"]
    assert got["prohibited_fee"] == "低压计量检测费"

    water = token_client(app, "water", "Test-password-1")
    ids = {r["id"] for r in water.get("/api/v1/retrofit_project/?q=(page_size:100000)")
           .get_json()["result"]}
    assert water_pk in ids and power_pk not in ids
    assert water.get(f"/api/v1/retrofit_project/{power_pk}").status_code == 404
    assert water.put(f"/api/v1/retrofit_project/{water_pk}", json={"state": "accepted"}
                     ).status_code in (403, 405)
