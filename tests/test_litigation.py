"""诉讼 plugin: a project walked from "developer unreachable" to referral through the retrofit
pages, then through tracing, lawsuit, judgment and recovery on the case page; the recovered
money reaches `onemeter_developer_payment_recovered` split exactly to the fen per project.

The app here loads no funding plugin (a plugin manager without it) and a throwaway recorder
plugin in its place: litigation works on its own, and either plugin works without the other.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from onemeter_litigation.models import CaseEvent, CaseProject, LitigationCase, RecoveryShare
from onemeter_litigation.stages import (
    STATES,
    STEPS,
    CaseStages,
    StepRefused,
    clean_case_number,
    split_by_largest_remainder,
)
from python_calamine import CalamineWorkbook

from onemeter.audit import ChangeLog
from onemeter.database import db
from onemeter.plugins import PluginInfo, hookimpl, plugin_names
from onemeter.registry.models import Community, Developer
from onemeter.retrofit.models import RetrofitProject
from onemeter.retrofit.service import apply_transition, beijing_today
from onemeter.security import OMUser
from onemeter.tenancy import Tenant, TenantScope, use_scope
from tests.support.factory import make_row
from tests.support.stack import Stack
from tests.test_retrofit_pages import step as project_step

TODAY = beijing_today()
LATER = (TODAY + dt.timedelta(days=30)).isoformat()
ORDER = {"deadline": LATER, "document": "平政〔2021〕1号"}
#: 五(四) on the retrofit project page: developer gone → … → 依法提起诉讼.
TO_REFERRAL = [
    ("staff", "order_developer", ORDER),
    ("staff", "request_tracing", {"document": "协查函〔2021〕2号"}),
    ("staff", "order_legal_representative", ORDER),
    ("staff", "record_legal_rep_refused", {"comment": "法定代表人拒不承担"}),
    ("admin", "refer_to_litigation", {"document": "起诉状"}),
]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class PaymentRecorder:
    """A throwaway plugin standing in for funding: it records every recovered payment."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def onemeter_plugin_info(self) -> PluginInfo:
        return PluginInfo(label="回款记录（测试）", version="0.0.1")

    @hookimpl
    def onemeter_developer_payment_recovered(self, tenant_id: int, project_id: int,
                                             amount: decimal.Decimal, paid_on: dt.date,
                                             reference: str, source: str) -> None:
        self.calls.append({"tenant_id": tenant_id, "project_id": project_id, "amount": amount,
                           "paid_on": paid_on, "reference": reference, "source": source})


RECORDER = PaymentRecorder()


@pytest.fixture(scope="module")
def lit_app(app: Flask, stack: Stack) -> Flask:
    """The app with water, electricity and litigation only (no funding) and the recorder."""
    from onemeter.app import create_app

    return create_app(stack.config(ONEMETER_PLUGINS="water,electricity,litigation"),
                      extra_plugins={"recorder": RECORDER})


@pytest.fixture
def as_user(lit_app: Flask, login: Callable[..., Any]) -> Callable[[str], Any]:
    clients: dict[str, Any] = {}

    def get(username: str) -> Any:
        if username not in clients:
            clients[username] = login(username, application=lit_app)
        return clients[username]

    return get


def developer_projects(app: Flask, tenant_id: int, utilities: list[str],
                       status: str = "unreachable") -> tuple[int, list[int]]:
    """A developer (gone: `status`) and one community with a project per utility given."""
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        developer = Developer(name=f"信阳某置业有限公司{uuid.uuid4().hex[:6]}",
                              legal_representative="张某", status=status)
        db.session.add(developer)
        db.session.flush()
        ids = []
        for utility in utilities:
            community = make_row(db.session, Community, tenant_id, "诉讼测试")
            community.developer_id = developer.id
            project = RetrofitProject(tenant_id=tenant_id, community=community,
                                      utility=utility, state="registered")
            db.session.add(project)
            db.session.flush()
            ids.append(project.id)
        db.session.commit()
        return developer.id, ids


def refer(as_user: Callable[[str], Any], tenant: str, pk: int) -> None:
    """Walk project `pk` through 五(四) on the retrofit page up to 依法提起诉讼."""
    for who, transition, form in TO_REFERRAL:
        page = project_step(as_user(f"{tenant}_{who}"), pk, transition, **form)
        assert "alert-danger" not in page, (transition, page[-2000:])


def case_of(app: Flask, project_id: int) -> LitigationCase | None:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        link = db.session.scalar(sa.select(CaseProject).where(
            CaseProject.project_id == project_id))
        case = db.session.get(LitigationCase, link.case_id) if link else None
        db.session.expunge_all()
        return case


def events_of(app: Flask, case_id: int) -> list[CaseEvent]:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        events = list(db.session.scalars(sa.select(CaseEvent).where(
            CaseEvent.case_id == case_id).order_by(CaseEvent.id)))
        db.session.expunge_all()
        return events


def offered(client: Any, pk: int) -> set[str]:
    page = client.get(f"/litigation/cases/show/{pk}").get_data(as_text=True)
    return set(re.findall(rf'action="/litigation/cases/step/{pk}/(\w+)"', page))


def case_step(client: Any, pk: int, name: str, files: dict[str, Any] | None = None,
              **form: str) -> str:
    data: dict[str, Any] = dict(form)
    if files:
        data.update(files)
    response = client.post(f"/litigation/cases/step/{pk}/{name}", data=data,
                           content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def ok(page: str) -> str:
    assert "alert-danger" not in page or "已逾期" in page, page[-3000:]
    return page


# --- the declaration ---------------------------------------------------------------------

def test_case_stages_are_a_declared_state_machine_every_stage_reachable_and_left() -> None:
    machine = CaseStages()
    assert {s.id for s in machine.states} == set(STATES)
    assert machine.current_state_value == "tracing"
    for spec in STEPS.values():
        assert set(spec.sources) <= set(STATES) and (spec.target is None
                                                     or spec.target in STATES)
    assert STATES["closed"].final and all(
        any(code in s.sources for s in STEPS.values()) for code in STATES if code != "closed")


@pytest.mark.parametrize("text", ["（2021）豫1503民初1234号", "(2021)豫1503民初1234号",
                                  " （ 2021 ） 豫15民终 12 号", "〔2022〕豫1503执456号",
                                  "（２０２１）豫１５０３民初１２３４号", "（2021）最高法民申12号"])
def test_case_numbers_in_their_usual_forms_are_accepted_and_normalized(text: str) -> None:
    number = clean_case_number(text, TODAY)
    assert number.startswith("（20") and number.endswith("号") and " " not in number


@pytest.mark.parametrize("text", ["abc", "2021-123", "（2021）1234号", "（2021）豫1503民初号",
                                  "（1921）豫1503民初1号", "豫1503民初1234号",
                                  "（2021）豫1503民初1234", "=cmd|' /C calc'!A0"])
def test_garbage_case_numbers_are_refused_in_chinese(text: str) -> None:
    with pytest.raises(StepRefused, match="案号"):
        clean_case_number(text, TODAY)


@pytest.mark.parametrize(("amount", "n"), [("100.00", 3), ("0.01", 3), ("0.02", 3),
                                           ("99999.99", 7), ("1000000.00", 1),
                                           ("12345.67", 2)])
def test_a_recovery_splits_over_projects_exactly_to_the_fen(amount: str, n: int) -> None:
    total = decimal.Decimal(amount)
    shares = split_by_largest_remainder(total, [1] * n)
    assert sum(shares) == total and len(shares) == n
    assert max(shares) - min(shares) <= decimal.Decimal("0.01")
    assert all(s == s.quantize(decimal.Decimal("0.01")) for s in shares)
    assert shares == sorted(shares, reverse=True)  # the odd fen go to the first referred


def test_the_access_matrix_finds_the_case_page_and_api(lit_app: Flask) -> None:
    from tests.support.matrix import discover

    assert {"CaseView", "CaseApi"} <= {t.name for t in discover(lit_app)}


# --- the whole path through the pages --------------------------------------------------------

def test_referral_to_recovery_through_the_pages_passes_exact_amounts_per_project(
        lit_app: Flask, as_user: Callable[[str], Any], tenant_ids: dict[str, int]) -> None:
    assert "funding" not in plugin_names(lit_app.extensions["onemeter_plugins"])
    pingxi = tenant_ids["pingxi"]
    developer_id, (water_pk, power_pk) = developer_projects(
        lit_app, pingxi, ["water", "electricity"])
    _, (other_pk,) = developer_projects(lit_app, pingxi, ["water"], status="dissolved")
    staff, admin = as_user("pingxi_staff"), as_user("pingxi_admin")

    refer(as_user, "pingxi", water_pk)
    case = case_of(lit_app, water_pk)
    assert case is not None and case.state == "tracing" and case.developer_id == developer_id
    assert case.legal_representative == "张某" and case.developer_name.startswith("信阳某置业")
    refer(as_user, "pingxi", power_pk)              # the same developer: the same open case
    assert case_of(lit_app, power_pk).id == case.id
    refer(as_user, "pingxi", other_pk)              # another developer: a case of its own
    assert case_of(lit_app, other_pk).id != case.id
    pk = case.id
    assert [e.step for e in events_of(lit_app, pk)] == ["open_case", "join_case"]

    # Steps offered per stage and role, like the retrofit project page.
    assert offered(staff, pk) == {"record_tracing", "request_property_info",
                                  "send_demand_letter"}
    assert offered(admin, pk) == offered(staff, pk) | {"close_case"}
    page = staff.get(f"/litigation/cases/show/{pk}").get_data(as_text=True)
    assert "下一步" in page and f"/retrofit/show/{water_pk}" in page
    assert f"/retrofit/show/{power_pk}" in page

    ok(case_step(staff, pk, "record_tracing", department="公安分局", result="户籍地查无此人",
                 occurred_on=TODAY.isoformat(), document="平公协〔2021〕5号"))
    ok(case_step(staff, pk, "record_tracing", department="市场监督管理局",
                 result="营业执照已吊销，未注销", files={"attachment": (io.BytesIO(PDF),
                                                            "回复函.pdf")}))
    refused = case_step(staff, pk, "record_tracing", department="教育局", result="?")
    assert "查找部门须为：公安分局、市场监督管理局" in refused
    ok(case_step(staff, pk, "request_property_info", document="平自然资源协〔2021〕1号"))
    ok(case_step(staff, pk, "record_property_info", result="名下有商铺两间（平桥区…）"))

    # Wrong stage, wrong role: refused in Chinese, nothing changed.
    page = case_step(staff, pk, "record_judgment", occurred_on=TODAY.isoformat(),
                     amount="1.00", document="判决书")
    assert "当前阶段「查询财产线索」不能执行「记录判决」" in page
    page = case_step(staff, pk, "send_demand_letter", document="催告函〔2021〕1号",
                     deadline=LATER)
    ok(page)
    page = case_step(staff, pk, "file_lawsuit", court="平桥区人民法院",
                     case_number="（2021）豫1503民初1234号", occurred_on=TODAY.isoformat())
    assert "只有本办事处管理员可以提起诉讼（记录立案）" in page
    assert case_of(lit_app, water_pk).state == "demand_sent"
    page = case_step(admin, pk, "file_lawsuit", court="平桥区人民法院",
                     case_number="民初1234", occurred_on=TODAY.isoformat())
    assert "案号「民初1234」格式不正确" in page and case_of(lit_app, water_pk).state == \
        "demand_sent"
    page = case_step(admin, pk, "file_lawsuit", court="平桥区人民法院",
                     case_number="(2021)豫1503民初1234号", occurred_on=TODAY.isoformat(),
                     document="起诉状")
    assert "现为「已起诉立案」" in ok(page)
    ok(case_step(staff, pk, "schedule_hearing", hearing_on=LATER, document="传票"))
    ok(case_step(staff, pk, "record_hearing", result="被告经传票传唤未到庭"))
    page = case_step(staff, pk, "record_judgment", occurred_on=TODAY.isoformat(),
                     amount="100,000.01", document="（2021）豫1503民初1234号判决书")
    assert "现为「已判决」" in ok(page)
    ok(case_step(staff, pk, "apply_enforcement", occurred_on=TODAY.isoformat(),
                 case_number="（2022）豫1503执456号"))
    assert "record_recovery" not in offered(staff, pk)
    page = case_step(staff, pk, "record_recovery", amount="1.00",
                     occurred_on=TODAY.isoformat(), document="收据1")
    assert "只有本办事处管理员可以记录执行回款" in page

    RECORDER.calls.clear()
    ok(case_step(admin, pk, "record_recovery", amount="50,000.01",
                 occurred_on=TODAY.isoformat(), document="执行款到账凭证1"))
    page = case_step(admin, pk, "record_recovery", amount="60000.00",
                     occurred_on=TODAY.isoformat(), document="执行款到账凭证2")
    assert "将超过判决金额100,000.01 元" in page
    page = case_step(admin, pk, "record_recovery", amount="1.5",
                     occurred_on=TODAY.isoformat(), document="收据")
    assert "须精确到分" not in page  # 1.5 is exact to the fen: 1.50
    ok(page)
    ok(case_step(admin, pk, "record_recovery", amount="0.01",
                 occurred_on=TODAY.isoformat(), document="收据3"))

    received = [(c["project_id"], c["amount"]) for c in RECORDER.calls]
    assert received == [(water_pk, decimal.Decimal("25000.01")),
                        (power_pk, decimal.Decimal("25000.00")),
                        (water_pk, decimal.Decimal("0.75")),
                        (power_pk, decimal.Decimal("0.75")),
                        (water_pk, decimal.Decimal("0.01"))]
    assert all(isinstance(c["amount"], decimal.Decimal) for c in RECORDER.calls)
    assert {(c["tenant_id"], c["source"], c["paid_on"]) for c in RECORDER.calls} == {
        (pingxi, "litigation", TODAY)}
    assert "（2021）豫1503民初1234号" in RECORDER.calls[0]["reference"]
    assert "执行款到账凭证1" in RECORDER.calls[0]["reference"]

    page = case_step(admin, pk, "close_case", comment="执行完毕")
    assert "现为「已结案」" in ok(page)
    assert offered(admin, pk) == set()

    case = case_of(lit_app, water_pk)
    assert case.case_number == "（2021）豫1503民初1234号"
    assert case.enforcement_case_number == "（2022）豫1503执456号"
    assert case.amount_awarded == decimal.Decimal("100000.01")
    assert case.amount_recovered == decimal.Decimal("50001.52")
    assert case.closed_on == TODAY and case.deadline is None
    events = events_of(lit_app, pk)
    assert [e.step for e in events] == [
        "open_case", "join_case", "record_tracing", "record_tracing", "request_property_info",
        "record_property_info", "send_demand_letter", "file_lawsuit", "schedule_hearing",
        "record_hearing", "record_judgment", "apply_enforcement", "record_recovery",
        "record_recovery", "record_recovery", "close_case"]
    assert [e.from_state for e in events[1:]] == [e.to_state for e in events[:-1]]
    assert all(e.actor for e in events[2:])
    with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        shares = db.session.scalars(sa.select(RecoveryShare.amount).join(
            CaseEvent, CaseEvent.id == RecoveryShare.event_id).where(CaseEvent.case_id == pk))
        assert sum(shares) == decimal.Decimal("50001.52")
        logged = db.session.scalar(sa.select(sa.func.count(ChangeLog.id)).where(
            ChangeLog.model == "LitigationCase", ChangeLog.object_id == str(pk),
            ChangeLog.action == "update"))
        assert logged >= 10  # every stage change and recorded figure is in the change log
        db.session.rollback()

    # The scan attached to a step is served to the sub-district, not to another one.
    attached = next(e for e in events if e.attachment)
    response = staff.get(f"/litigation/cases/document/{attached.id}")
    assert response.status_code == 200 and response.data == PDF
    assert as_user("pingqiao_staff").get(
        f"/litigation/cases/document/{attached.id}").status_code == 404
    page = staff.get(f"/litigation/cases/show/{pk}").get_data(as_text=True)
    assert "平公协〔2021〕5号" in page and "50,001.52 元" in page and "25,000.77 元" in page and "25,000.75 元" in page


def test_another_sub_district_gets_404_and_read_only_roles_cannot_step(
        lit_app: Flask, as_user: Callable[[str], Any], tenant_ids: dict[str, int]) -> None:
    _, (pk_project,) = developer_projects(lit_app, tenant_ids["pingxi"], ["water"])
    refer(as_user, "pingxi", pk_project)
    pk = case_of(lit_app, pk_project).id
    other = as_user("pingqiao_admin")
    assert other.get(f"/litigation/cases/show/{pk}").status_code == 404
    assert other.post(f"/litigation/cases/step/{pk}/send_demand_letter",
                      data={"document": "x", "deadline": LATER}).status_code == 404
    assert other.get(f"/api/v1/litigation_case/{pk}").status_code in (401, 404)
    listing = other.get("/litigation/cases/list/").get_data(as_text=True)
    assert f"/litigation/cases/show/{pk}\"" not in listing

    district = as_user("district")
    page = district.get(f"/litigation/cases/show/{pk}").get_data(as_text=True)
    assert "信阳某置业" in page and "/litigation/cases/step/" not in page
    response = district.post(f"/litigation/cases/step/{pk}/send_demand_letter",
                             data={"document": "x", "deadline": LATER})
    assert response.status_code in (302, 403)
    for username in ("water", "finance"):
        assert as_user(username).get(f"/litigation/cases/show/{pk}").status_code in (302, 403,
                                                                                      404)
    assert case_of(lit_app, pk_project).state == "tracing"
    assert [e.step for e in events_of(lit_app, pk)] == ["open_case"]


def test_district_sees_every_case_by_stage_and_exports_overdue_first_read_only(
        lit_app: Flask, as_user: Callable[[str], Any], tenant_ids: dict[str, int]) -> None:
    _, (pq_project,) = developer_projects(lit_app, tenant_ids["pingqiao"], ["water"])
    _, (px_project,) = developer_projects(lit_app, tenant_ids["pingxi"], ["electricity"])
    refer(as_user, "pingqiao", pq_project)
    refer(as_user, "pingxi", px_project)
    pq_case = case_of(lit_app, pq_project).id
    ok(case_step(as_user("pingqiao_staff"), pq_case, "send_demand_letter",
                 document="催告函〔2021〕9号", deadline=TODAY.isoformat()))
    with lit_app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingqiao"]),
                                          db.session):
        db.session.get(LitigationCase, pq_case).deadline = TODAY - dt.timedelta(days=1)
        db.session.commit()                                    # the deadline passes

    district = as_user("district")
    page = district.get("/litigation/overview/").get_data(as_text=True)
    assert "平桥办事处" in page and "平西办事处" in page and "已发催告函" in page
    assert f"/litigation/cases/show/{pq_case}" in page and "已逾期" in page
    listing = district.get("/litigation/cases/list/?psize_CaseView=1000").get_data(as_text=True)
    assert f"/litigation/cases/show/{pq_case}" in listing
    assert "已逾期的诉讼案件" in listing and 'label-danger">已逾期</span>' in listing
    assert as_user("pingqiao_staff").get("/litigation/overview/").status_code in (302, 403)

    body = district.get("/litigation/cases/export/")
    assert body.status_code == 200 and "spreadsheetml" in body.headers["Content-Type"]
    book = CalamineWorkbook.from_filelike(io.BytesIO(body.data))
    rows = book.get_sheet_by_name(book.sheet_names[0]).to_python()
    assert rows[0][0] == "诉讼案件台账" and "填报单位：平桥区" in rows[1][0]
    mine = [r for r in rows[3:] if r[0] == "平桥办事处" and r[3] == "已发催告函"]
    assert mine and mine[0][4] == "是"
    own = as_user("pingqiao_staff").get("/litigation/cases/export/")
    own_rows = CalamineWorkbook.from_filelike(io.BytesIO(own.data)).get_sheet_by_name(
        "Sheet1").to_python()
    assert {r[0] for r in own_rows[3:]} == {"平桥办事处"}


def test_rollup_metrics_per_sub_district(lit_app: Flask, as_user: Callable[[str], Any],
                                         tenant_ids: dict[str, int]) -> None:
    _, (project,) = developer_projects(lit_app, tenant_ids["pingdong"], ["water"])
    refer(as_user, "pingdong", project)
    pm = lit_app.extensions["onemeter_plugins"]
    with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        before = {m.code: m for ms in pm.hook.onemeter_rollup_metrics(
            tenant_ids=sorted(tenant_ids.values()), as_of=TODAY) for m in ms}
        case_id = db.session.scalar(sa.select(CaseProject.case_id).where(
            CaseProject.project_id == project))
        db.session.rollback()
    assert {"litigation_open_cases", "litigation_overdue_cases", "litigation_amount_awarded",
            "litigation_amount_recovered"} <= set(before)
    open_cases = before["litigation_open_cases"].values
    assert open_cases[tenant_ids["pingdong"]] >= 1
    assert before["litigation_amount_recovered"].unit == "元"
    assert isinstance(before["litigation_amount_awarded"].total(), decimal.Decimal)

    with lit_app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingdong"]),
                                          db.session):
        row = db.session.get(LitigationCase, case_id)
        row.state, row.deadline = "demand_sent", TODAY - dt.timedelta(days=3)
        row.amount_awarded = decimal.Decimal("10.10")
        db.session.commit()
    with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        after = {m.code: m for ms in pm.hook.onemeter_rollup_metrics(
            tenant_ids=sorted(tenant_ids.values()), as_of=TODAY) for m in ms}
        db.session.rollback()
    pingdong = tenant_ids["pingdong"]
    assert after["litigation_overdue_cases"].values[pingdong] == \
        before["litigation_overdue_cases"].values[pingdong] + 1
    assert after["litigation_amount_awarded"].values[pingdong] == \
        before["litigation_amount_awarded"].values[pingdong] + decimal.Decimal("10.10")


@pytest.fixture
def zhenleishan_without_litigation(lit_app: Flask, tenant_ids: dict[str, int]
                                   ) -> Iterator[int]:
    """震雷山 with the plugin switched off in its tenant settings (restored afterwards)."""
    tenant_id = tenant_ids["zhenleishan"]

    def set_plugins(change: Callable[[list[str]], list[str]]) -> None:
        with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
            tenant = db.session.get(Tenant, tenant_id)
            tenant.plugins = change(list(tenant.plugins))
            db.session.commit()

    set_plugins(lambda p: [x for x in p if x != "litigation"])
    try:
        yield tenant_id
    finally:
        set_plugins(lambda p: [*p, "litigation"] if "litigation" not in p else p)


def test_a_sub_district_without_the_plugin_sees_nothing_of_it_and_gets_no_case(
        lit_app: Flask, as_user: Callable[[str], Any], tenant_ids: dict[str, int],
        zhenleishan_without_litigation: int) -> None:
    tenant_id = zhenleishan_without_litigation
    _, (project,) = developer_projects(lit_app, tenant_id, ["water"])
    refer(as_user, "zhenleishan", project)                  # the core procedure still works
    with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        assert db.session.get(RetrofitProject, project).state == "litigation"
        db.session.rollback()
    assert case_of(lit_app, project) is None                # but no case is opened

    staff = as_user("zhenleishan_staff")
    home = staff.get("/").get_data(as_text=True)
    assert "诉讼案件" not in home and "/litigation/" not in home
    for url in ("/litigation/cases/list/", "/litigation/cases/export/",
                "/litigation/overview/"):
        response = staff.get(url)
        assert response.status_code in (302, 403, 404), url
        if response.status_code == 302:
            assert "/litigation/" not in response.headers["Location"]
    assert staff.get("/api/v1/litigation_case/").status_code in (401, 403, 404)
    pm = lit_app.extensions["onemeter_plugins"]
    with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        metrics = [m for ms in pm.hook.onemeter_rollup_metrics(
            tenant_ids=[tenant_id, tenant_ids["pingxi"]], as_of=TODAY) for m in ms]
        db.session.rollback()
    assert metrics and all(set(m.values) == {tenant_ids["pingxi"]} for m in metrics)
    # The sub-districts that enable it still see it.
    assert "诉讼案件" in as_user("pingxi_staff").get("/").get_data(as_text=True)


def test_referrals_made_before_the_plugin_was_enabled_are_filed_by_the_sync_command(
        lit_app: Flask, as_user: Callable[[str], Any], stack: Stack,
        zhenleishan_without_litigation: int) -> None:
    tenant_id = zhenleishan_without_litigation
    developer_id, projects = developer_projects(lit_app, tenant_id, ["water", "electricity"])
    for project in projects:
        refer(as_user, "zhenleishan", project)
    assert case_of(lit_app, projects[0]) is None
    with lit_app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        tenant = db.session.get(Tenant, tenant_id)
        tenant.plugins = [*tenant.plugins, "litigation"]     # the sub-district enables it
        db.session.commit()

    def sync() -> str:
        result = subprocess.run([sys.executable, "-m", "onemeter.cli", "litigation", "sync"],
                                env=stack.subprocess_env(), capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    filed = re.search(r"震雷山街道办事处：(\d+) 个改造项目", sync())
    assert filed and int(filed.group(1)) >= 2    # earlier tests' referrals there count too
    first, second = (case_of(lit_app, p) for p in projects)
    assert first.id == second.id and first.developer_id == developer_id
    assert [e.step for e in events_of(lit_app, first.id)] == ["open_case", "join_case"]
    assert "震雷山街道办事处：0 个改造项目" in sync()           # nothing filed twice


def test_a_referral_without_a_recorded_developer_opens_a_case_of_its_own(
        lit_app: Flask, tenant_ids: dict[str, int]) -> None:
    tenant_id = tenant_ids["pingqiao"]
    with lit_app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        admin = db.session.scalar(sa.select(OMUser).where(OMUser.username == "pingqiao_admin"))
        pks = []
        for _ in range(2):
            community = make_row(db.session, Community, tenant_id, "无开发商")
            project = RetrofitProject(tenant_id=tenant_id, community=community,
                                      utility="water", state="legal_rep_refused")
            db.session.add(project)
            db.session.flush()
            apply_transition(db.session, project, "refer_to_litigation", admin,
                             document="起诉状")
            pks.append(project.id)
        db.session.commit()
    first, second = case_of(lit_app, pks[0]), case_of(lit_app, pks[1])
    assert first.id != second.id and first.developer_id is None
    assert first.developer_name == "（未登记开发建设单位）"


def test_a_refused_step_with_a_bad_attachment_writes_nothing(
        lit_app: Flask, as_user: Callable[[str], Any], tenant_ids: dict[str, int],
        stack: Stack) -> None:
    _, (project,) = developer_projects(lit_app, tenant_ids["pingxi"], ["water"])
    refer(as_user, "pingxi", project)
    pk = case_of(lit_app, project).id
    page = case_step(as_user("pingxi_staff"), pk, "request_property_info",
                     document="协查函", files={"attachment": (io.BytesIO(b"MZ\x90\x00exe"),
                                                             "letter.pdf")})
    assert "附件未上传" in page
    scan = PDF + uuid.uuid4().hex.encode()                 # a good scan, but a refused step
    page = case_step(as_user("pingxi_staff"), pk, "record_judgment", occurred_on="2021-07-07",
                     amount="1.00", document="判决书",
                     files={"attachment": (io.BytesIO(scan), "判决书.pdf")})
    assert "不能执行「记录判决」" in page
    stored = stack.work / "uploads" / str(tenant_ids["pingxi"])
    assert not (stored / f"{hashlib.sha256(scan).hexdigest()}.pdf").exists()
    ok(case_step(as_user("pingxi_staff"), pk, "record_tracing", department="公安分局",
                 result="查无此人", files={"attachment": (io.BytesIO(scan), "回复.pdf")}))
    assert (stored / f"{hashlib.sha256(scan).hexdigest()}.pdf").exists()  # the same folder
    assert case_of(lit_app, project).state == "tracing"
    assert [e.step for e in events_of(lit_app, pk)] == ["open_case", "record_tracing"]


def test_a_stage_is_overdue_only_after_its_date_not_on_it() -> None:
    from types import SimpleNamespace

    from onemeter_litigation.stages import is_overdue

    day = dt.date(2021, 7, 7)
    for state in ("demand_sent", "hearing"):
        case = SimpleNamespace(state=state, deadline=day)
        assert not is_overdue(case, day) and is_overdue(case, day + dt.timedelta(days=1))
    assert not is_overdue(SimpleNamespace(state="judged", deadline=day), dt.date(2030, 1, 1))
    assert not is_overdue(SimpleNamespace(state="demand_sent", deadline=None),
                          dt.date(2030, 1, 1))


@pytest.mark.postgres
def test_two_recoveries_at_once_cannot_together_exceed_the_amount_awarded(
        lit_app: Flask, tenant_ids: dict[str, int]) -> None:
    """The second clerk's step waits for the first one's row lock, then sees its amount."""
    import threading

    from onemeter_litigation.service import take_step

    tenant_id = tenant_ids["pingxi"]
    _, (project,) = developer_projects(lit_app, tenant_id, ["water"])
    with lit_app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        case = LitigationCase(tenant_id=tenant_id, developer_name="并发测试", state="judged",
                              amount_awarded=decimal.Decimal("100.00"),
                              amount_recovered=decimal.Decimal("0.00"),
                              opened_at=dt.datetime(2021, 7, 7))
        db.session.add(case)
        db.session.flush()
        db.session.add(CaseProject(tenant_id=tenant_id, case_id=case.id, project_id=project,
                                   referred_at=case.opened_at))
        db.session.commit()
        pk = case.id
    held, go = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def recover(name: str, hold: bool) -> None:
        with lit_app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
            admin = db.session.scalar(sa.select(OMUser).where(
                OMUser.username == "pingxi_admin"))
            row = db.session.get(LitigationCase, pk)
            try:
                take_step(db.session, row, "record_recovery", admin, amount="60.00",
                          occurred_on=TODAY.isoformat(), document=name)
                if hold:
                    held.set()
                    go.wait(10)
                db.session.commit()
                outcome[name] = "recorded"
            except StepRefused as exc:
                db.session.rollback()
                outcome[name] = str(exc)

    first = threading.Thread(target=recover, args=("first", True))
    first.start()
    assert held.wait(10)
    second = threading.Thread(target=recover, args=("second", False))
    second.start()
    second.join(1.0)
    assert second.is_alive()          # waiting for the first clerk's lock
    go.set()
    first.join(10)
    second.join(10)
    assert outcome["first"] == "recorded"
    assert "将超过判决金额100.00 元" in outcome["second"]
    assert case_of(lit_app, project).amount_recovered == decimal.Decimal("60.00")


def test_a_referral_after_the_developers_case_was_closed_opens_a_new_case(
        lit_app: Flask, as_user: Callable[[str], Any], tenant_ids: dict[str, int]) -> None:
    developer_id, (first, second) = developer_projects(lit_app, tenant_ids["pingdong"],
                                                       ["water", "electricity"])
    refer(as_user, "pingdong", first)
    closed = case_of(lit_app, first).id
    ok(case_step(as_user("pingdong_admin"), closed, "close_case", comment="已达成和解"))
    refer(as_user, "pingdong", second)
    reopened = case_of(lit_app, second)
    assert reopened.id != closed and reopened.developer_id == developer_id
    assert reopened.state == "tracing" and case_of(lit_app, first).state == "closed"
