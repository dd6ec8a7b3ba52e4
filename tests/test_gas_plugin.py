"""燃气 arrives as a third party's plugin with zero change to the core: nothing under platform/
names it, and the platform run without it and with it differs only for the sub-district that
enables it (平桥办事处 in the test tenants): gas projects, 户表, imports in gas headings,
reconciliation against the gas company's list, 入户安检 and rollup figures; the 燃气初装费 the
plan forbids (四(二)3) is flagged like every cancelled fee."""

from __future__ import annotations

import datetime as dt
import io
import random
import re
import tomllib
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from flask import Flask
from setuptools import find_namespace_packages

from onemeter.database import db
from onemeter.imports.ledger import plan_households
from onemeter.imports.reader import ImportFileError, read_table
from onemeter.reconcile.engine import reconcile
from onemeter.reconcile.service import account_frame, ledger_frame
from onemeter.registry.models import Community, Household, MeterAccount
from onemeter.retrofit.models import ProjectCharge, RetrofitProject
from onemeter.tenancy import TenantScope, use_scope
from onemeter.utilities import utility_choices
from onemeter_gas.models import GasSafetyInspection
from onemeter_gas.spec import SPEC as GAS
from tests.support.matrix import token_client
from tests.support.stack import PASSWORD, ROOT, TEST_PLUGINS

LIMITS = {"max_bytes": 10_000_000, "max_uncompressed_bytes": 50_000_000,
          "max_cells": 1_000_000}
WITHOUT_GAS = ",".join(p for p in TEST_PLUGINS.split(",") if p != "gas")
#: Links, form targets and the choices of drop-downs (not the per-session CSRF token).
HREF = re.compile(r'(?:href|action)="([^"]*)"|<option value="([^"]*)"')


# --- zero core change ---------------------------------------------------------------------------

def test_nothing_under_platform_names_gas() -> None:
    """Every file under platform/ (names and contents, compiled caches included; the
    checkout's own absolute path, which caches embed, is not the platform's text)."""
    checkout = str(ROOT).encode()
    offenders = []
    for path in sorted((ROOT / "platform").rglob("*")):
        relative = str(path.relative_to(ROOT))
        if re.search("gas|燃气", relative, re.IGNORECASE):
            offenders.append(relative)
        if path.is_file():
            text = path.read_bytes().replace(checkout, b"").lower()
            if b"gas" in text or "燃气".encode() in text:
                offenders.append(relative)
    assert offenders == []
    assert (ROOT / "platform" / "onemeter" / "hookspecs.py").exists()  # the walk saw files


def test_gas_is_a_distribution_of_its_own_that_no_shipped_tenant_enables() -> None:
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "gas" not in main["project"]["entry-points"]["onemeter.plugins"]
    find = main["tool"]["setuptools"]["packages"]["find"]
    packages = {p for where in find["where"] for p in find_namespace_packages(
        where=str(ROOT / where), include=find["include"], exclude=find["exclude"])}
    assert "onemeter" in packages and "onemeter_water" in packages
    assert not {p for p in packages if p.startswith("onemeter_gas")}
    own = tomllib.loads((ROOT / "plugins" / "onemeter_gas" / "pyproject.toml").read_text())
    assert own["project"]["name"] == "onemeter-gas"
    assert own["project"]["entry-points"]["onemeter.plugins"] == {"gas": "onemeter_gas.plugin"}
    assert "pip install --quiet --no-deps -e plugins/onemeter_gas" in (
        ROOT / "Makefile").read_text()
    for path in sorted((ROOT / "tenants").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert "gas" not in data["plugins"] and "gas" not in data["utilities"], path.name


# --- with and without -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bare(make_app: Callable[..., Flask], app: Flask) -> Flask:
    """The same platform, database and tenants, without the gas plugin loaded."""
    return make_app(ONEMETER_PLUGINS=WITHOUT_GAS)


def page(application: Flask, username: str, url: str) -> str:
    client = application.test_client()
    client.post("/login/", data={"username": username, "password": PASSWORD})
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def links(html: str) -> set[str]:
    return {a or b for a, b in HREF.findall(html)} - {""}


def test_a_sub_district_that_does_not_enable_gas_sees_exactly_what_it_saw_without_it(
        app: Flask, bare: Flask) -> None:
    assert "gas" in app.extensions["onemeter_utilities"]
    assert "gas" not in bare.extensions["onemeter_utilities"]
    for url in ("/reconcile/list/", "/retrofit/list/", "/registry/accounts/list/",
                "/retrofit/charges/list/"):
        with_gas, without = page(app, "pingxi_admin", url), page(bare, "pingxi_admin", url)
        assert links(with_gas) == links(without), url
        assert "燃气" not in with_gas, url
    # …while 平桥办事处, which enables it, gets the menu and the utility.
    pingqiao = page(app, "pingqiao_admin", "/reconcile/list/")
    assert '<option value="gas">燃气</option>' in pingqiao and 'href="/gas/inspections/list/"' \
        in pingqiao
    assert '<option value="gas">' not in page(bare, "pingqiao_admin", "/reconcile/list/")
    with app.test_request_context():
        assert ("gas", "燃气") in utility_choices({"gas"})


def new_community(app: Flask, tenant_id: int, households: int) -> tuple[int, list[int], str]:
    name = f"燃气测试{uuid.uuid4().hex[:6]}小区"
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = Community(tenant_id=tenant_id, name=name)
        db.session.add(community)
        db.session.flush()
        ids = []
        for i in range(households):
            household = Household(tenant_id=tenant_id, community_id=community.id,
                                  building="5号楼", unit="1单元", room=f"{101 + i}室",
                                  owner_name=f"户主{i}")
            db.session.add(household)
            db.session.flush()
            ids.append(household.id)
        db.session.commit()
        return community.id, ids, name


def count(app: Flask, tenant_id: int, model: type, *where: Any) -> int:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        n = db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))
        db.session.rollback()
        return n


def test_gas_projects_accounts_and_inspections_only_where_gas_is_enabled(
        app: Flask, bare: Flask, login: Callable, tenant_ids: dict[str, int]) -> None:
    pingqiao, pingxi = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    own_community, own_households, _ = new_community(app, pingqiao, 1)
    other_community, other_households, _ = new_community(app, pingxi, 1)

    # 改造项目 for gas: the same procedure, opened through the same page.
    login("pingqiao_admin").post("/retrofit/add", data={"community": own_community,
                                                        "utility": "gas"})
    refused = login("pingxi_admin").post("/retrofit/add", data={
        "community": other_community, "utility": "gas"}, follow_redirects=True)
    assert "公用事业「gas」未启用" in refused.get_data(as_text=True)
    assert count(app, pingqiao, RetrofitProject, RetrofitProject.community_id == own_community,
                 RetrofitProject.utility == "gas") == 1
    assert count(app, pingxi, RetrofitProject, RetrofitProject.utility == "gas") == 0
    without = login("pingqiao_admin", application=bare).post(
        "/retrofit/add", data={"community": own_community, "utility": "gas"},
        follow_redirects=True)
    assert "公用事业「gas」未启用" in without.get_data(as_text=True)

    # 户表 in gas's formats, over the API.
    account = {"household": own_households[0], "utility": "gas",
               "account_no": GAS.account_example, "meter_no": GAS.meter_example,
               "rating": "G4", "status": "surveyed"}
    created = token_client(app, "pingqiao_admin", PASSWORD).post(
        "/api/v1/meter_account/", json=account)
    assert created.status_code == 201, created.get_data(as_text=True)
    bad = token_client(app, "pingqiao_admin", PASSWORD).post(
        "/api/v1/meter_account/", json={**account, "household": own_households[0],
                                        "account_no": "12AB"})
    assert bad.status_code == 400 and "燃气户号「12AB」格式不对" in bad.json["message"]
    other = token_client(app, "pingxi_admin", PASSWORD).post(
        "/api/v1/meter_account/", json={**account, "household": other_households[0]})
    assert other.status_code >= 400
    assert count(app, pingxi, MeterAccount, MeterAccount.utility == "gas") == 0

    # 入户安检: pingqiao keeps them; pingxi cannot reach the page at all.
    staff = login("pingqiao_staff")
    response = staff.post("/gas/inspections/add", data={
        "household": own_households[0], "inspected_on": "2021-07-07", "result": "passed",
        "inspector": "王师傅"})
    assert response.status_code == 302
    assert count(app, pingqiao, GasSafetyInspection,
                 GasSafetyInspection.household_id == own_households[0]) == 1
    listed = staff.get("/gas/inspections/list/").get_data(as_text=True)
    assert "王师傅" in listed and "合格" in listed
    assert login("pingxi_staff").get("/gas/inspections/list/").status_code in (302, 403)
    assert login("pingqiao_staff", application=bare).get(
        "/gas/inspections/list/").status_code == 404


def test_the_gas_initial_installation_fee_is_flagged_in_any_form(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingqiao"]
    community, _, _ = new_community(app, tenant, 0)
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        gas = RetrofitProject(tenant_id=tenant, community_id=community, utility="gas",
                              state="registered")
        water = RetrofitProject(tenant_id=tenant, community_id=community, utility="water",
                                state="registered")
        db.session.add_all([gas, water])
        db.session.flush()
        names = ["燃气初装费", "天然气开户费", "管道燃气 初装费用", "燃气表具检定费"]
        for name in names:
            db.session.add(ProjectCharge(tenant_id=tenant, project_id=gas.id, name=name,
                                         amount=Decimal("2800.00")))
        db.session.add(ProjectCharge(tenant_id=tenant, project_id=water.id, name="燃气初装费",
                                     amount=Decimal("1.00")))
        db.session.commit()
        flagged = dict(db.session.execute(
            sa.select(ProjectCharge.name, ProjectCharge.prohibited_fee)
            .where(ProjectCharge.project_id == gas.id)).all())
        on_water = db.session.scalar(sa.select(ProjectCharge.prohibited_fee)
                                     .where(ProjectCharge.project_id == water.id))
    assert flagged == {"燃气初装费": "燃气初装费", "天然气开户费": "燃气初装费",
                       "管道燃气 初装费用": "燃气初装费", "燃气表具检定费": None}
    # The fee list is the project's utility's: water's list does not name it.
    assert on_water is None


def gas_ledger(community: str) -> bytes:
    """A sub-district's gas ledger: title row, then 小区/楼栋/单元/室号/户主 and gas columns."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["燃气一户一表改造台账"])
    sheet.append(["小区", "楼栋", "单元", "室号", "户主姓名", "用气户号", "气表编号", "燃气表规格"])
    sheet.append([community, "6号楼", "1单元", "101室", "刘一", "20210001", "G4A0001", "G4"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_imports_read_gas_headings_only_for_the_sub_district_that_enables_gas(
        app: Flask, bare: Flask, tenant_ids: dict[str, int]) -> None:
    raw = read_table(gas_ledger("燃气导入小区"), "台账.xlsx", **LIMITS)

    def recognized(application: Flask, tenant: str) -> set[str]:
        with application.app_context(), use_scope(TenantScope.tenant(tenant_ids[tenant]),
                                                  db.session):
            plan = plan_households(db.session, tenant_ids[tenant], raw)
            db.session.rollback()
        assert plan.counts.get("create") == 1  # the household itself is read either way
        return set(plan.header.columns)

    assert {"account_no", "meter_no", "rating"} <= recognized(app, "pingqiao")
    assert not {"account_no", "meter_no", "rating"} & recognized(app, "pingxi")
    assert not {"account_no", "meter_no", "rating"} & recognized(bare, "pingqiao")


def test_reconciliation_against_the_gas_companys_account_list(
        app: Flask, bare: Flask, tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingqiao"]
    _, households, name = new_community(app, tenant, 3)
    base = random.randrange(10**9, 9 * 10**9)
    numbers = [str(base + i) for i in range(3)]
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        for household, number in zip(households, numbers, strict=True):
            db.session.add(MeterAccount(tenant_id=tenant, household_id=household,
                                        utility="gas", account_no=number,
                                        meter_no=f"QB{number}"))
        db.session.commit()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["信阳燃气公司用户清单"])
    sheet.append(["燃气户号", "表具编号", "户名", "用气地址"])
    sheet.append([numbers[0], f"QB{numbers[0]}", "户主0", f"{name}5号楼1单元101室"])
    sheet.append([None, f"QB{numbers[1]}", "户主1", f"{name}5号楼1单元102室"])
    sheet.append(["99999999", "QB99999999", "外来户", f"{name}9号楼1单元901室"])
    path = io.BytesIO()
    book.save(path)
    raw = read_table(path.getvalue(), "燃气公司清单.xlsx", **LIMITS)
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        ledger = ledger_frame(db.session, tenant, "gas")
        ledger = ledger[ledger["community"] == name].reset_index(drop=True)
        result = reconcile(ledger, account_frame(raw, "gas"))
    assert len(result.pairs) == 2 and len(result.ledger_only) == 1
    assert len(result.utility_only) == 1
    with bare.app_context(), pytest.raises(ImportFileError):
        account_frame(raw, "gas")  # without the plugin there is no gas account list


def metrics(application: Flask, tenant_ids: dict[str, int], as_of: dt.date
            ) -> dict[str, Any]:
    with application.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        found = application.extensions["onemeter_plugins"].hook.onemeter_rollup_metrics(
            tenant_ids=sorted(tenant_ids.values()), as_of=as_of)
        db.session.rollback()
    return {m.code: m for batch in found for m in batch}


def test_rollup_figures_for_gas_come_from_the_plugin_for_the_enabling_sub_district_only(
        app: Flask, bare: Flask, tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingqiao"]
    today = dt.date(2021, 9, 1)
    before = metrics(app, tenant_ids, today)
    assert set(before["gas_accounts"].values) == {tenant}
    _, households, _ = new_community(app, tenant, 3)
    community, _, _ = new_community(app, tenant, 0)
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        for household in households:
            db.session.add(MeterAccount(tenant_id=tenant, household_id=household, utility="gas",
                                        account_no=str(random.randrange(10**9, 9 * 10**9))))
        # passed; a hazard past its deadline; a hazard fixed by a later pass.
        db.session.add_all([
            GasSafetyInspection(tenant_id=tenant, household_id=households[0],
                                inspected_on=dt.date(2021, 7, 1), result="passed"),
            GasSafetyInspection(tenant_id=tenant, household_id=households[1],
                                inspected_on=dt.date(2021, 7, 1), result="hazard",
                                hazard="胶管老化", rectify_by=dt.date(2021, 8, 1)),
            GasSafetyInspection(tenant_id=tenant, household_id=households[2],
                                inspected_on=dt.date(2021, 7, 1), result="hazard",
                                rectify_by=dt.date(2021, 8, 1)),
            GasSafetyInspection(tenant_id=tenant, household_id=households[2],
                                inspected_on=dt.date(2021, 7, 20), result="passed"),
            # after the day of the figures: not counted
            GasSafetyInspection(tenant_id=tenant, household_id=households[1],
                                inspected_on=dt.date(2021, 10, 1), result="passed"),
        ])
        project = RetrofitProject(tenant_id=tenant, community_id=community, utility="gas",
                                  state="registered")
        db.session.add(project)
        db.session.flush()
        db.session.add_all([
            ProjectCharge(tenant_id=tenant, project_id=project.id, name="燃气开户费",
                          amount=Decimal("1500.50"), charged_on=dt.date(2021, 8, 1)),
            ProjectCharge(tenant_id=tenant, project_id=project.id, name="燃气初装费",
                          amount=Decimal("9.99"), charged_on=dt.date(2021, 12, 1)),
            ProjectCharge(tenant_id=tenant, project_id=project.id, name="物业服务费",
                          amount=Decimal("100.00"), charged_on=dt.date(2021, 8, 1)),
        ])
        db.session.commit()
    after = metrics(app, tenant_ids, today)
    delta = {code: after[code].values[tenant] - before[code].values[tenant]
             for code in ("gas_accounts", "gas_inspections_passed", "gas_hazards_overdue")}
    assert delta == {"gas_accounts": 3, "gas_inspections_passed": 2, "gas_hazards_overdue": 1}
    fees = after["gas_initial_fee_charged"]
    assert fees.unit == "元" and isinstance(fees.total(), Decimal)
    assert fees.values[tenant] - before["gas_initial_fee_charged"].values[tenant] == \
        Decimal("1500.50")
    assert not {code for code in metrics(bare, tenant_ids, today) if code.startswith("gas")}


def test_the_gas_plugin_is_listed_with_its_version_and_the_sub_district_enabling_it(
        app: Flask) -> None:
    from onemeter.cli import main

    result = app.test_cli_runner().invoke(main, ["plugins"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("gas"))
    assert "0.1.0" in line and "平桥办事处" in line and "平西办事处" not in line


def test_the_plugin_ships_its_readme_with_how_to_enable_it() -> None:
    text = (Path(ROOT) / "plugins" / "onemeter_gas" / "README.md").read_text()
    assert "tenants/<code>.toml" in text and "make contract PLUGIN=gas" in text


def test_the_gas_company_takes_its_steps_of_the_procedure_and_nothing_else(
        app: Flask, login: Callable, tenant_ids: dict[str, int]) -> None:
    from onemeter.security import UTILITY_STAFF

    tenant = tenant_ids["pingqiao"]
    community, _, _ = new_community(app, tenant, 0)
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        app.appbuilder.sm.add_user_checked(
            f"gasco{uuid.uuid4().hex[:6]}", "燃气公司", "员工", f"{uuid.uuid4().hex[:8]}@test.local",
            [UTILITY_STAFF], PASSWORD, utility_code="gas")
        username = db.session.execute(sa.text(
            "SELECT username FROM ab_user WHERE utility_code = 'gas' ORDER BY id DESC")
        ).scalar()
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        project = RetrofitProject(tenant_id=tenant, community_id=community, utility="gas",
                                  state="registered")
        db.session.add(project)
        db.session.commit()
        pk = project.id
    before = metrics(app, tenant_ids, dt.date.today())["gas_projects_accepted"].values[tenant]
    admin, gasco, water = login("pingqiao_admin"), login(username), login("water")
    admin.post(f"/retrofit/step/{pk}/request_inspection", data={"comment": "请燃气公司查验"})
    # The water company does not see, let alone step on, a gas project.
    assert water.post(f"/retrofit/step/{pk}/record_inspection_passed").status_code == 404
    # The sub-district cannot take the gas company's step.
    admin.post(f"/retrofit/step/{pk}/record_inspection_passed", data={"comment": "越权"})
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        assert db.session.get(RetrofitProject, pk).state == "awaiting_inspection"
    shown = gasco.get(f"/retrofit/show/{pk}").get_data(as_text=True)
    assert f'action="/retrofit/step/{pk}/record_inspection_passed"' in shown
    gasco.post(f"/retrofit/step/{pk}/record_inspection_passed", data={"comment": "查验合格"})
    gasco.post(f"/retrofit/step/{pk}/accept", data={"comment": "接收"})
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        assert db.session.get(RetrofitProject, pk).state == "accepted"
    after = metrics(app, tenant_ids, dt.date.today())["gas_projects_accepted"].values[tenant]
    assert after == before + 1
