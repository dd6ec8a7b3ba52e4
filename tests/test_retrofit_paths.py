"""Every path of section 五 walked through the project page, on the real database, each step
posted by the user the plan makes responsible; the timeline records each one."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from onemeter.database import db
from onemeter.retrofit.models import RetrofitProject
from onemeter.retrofit.service import beijing_today
from onemeter.tenancy import TenantScope, use_scope
from tests.test_retrofit_pages import load, new_project, offered, step

LATER = (beijing_today() + dt.timedelta(days=30)).isoformat()
TODAY = beijing_today().isoformat()
ORDER = {"deadline": LATER, "document": "平政〔2021〕1号"}

#: (path, utility, [(user, transition, form)], final state). "staff"/"admin" are the
#: sub-district's; "utility" is the project's utility company staff.
PATHS = [
    ("五(一) 开发建设单位限期完成并移交", "water", [
        ("staff", "order_developer", ORDER),
        ("staff", "record_completed", {"document": "竣工资料"}),
        ("utility", "accept", {"maintenance_first": "是", "no_new_lines": "是"}),
    ], "accepted"),
    ("五(二) 查验合格后接收", "electricity", [
        ("admin", "request_inspection", {}),
        ("utility", "record_inspection_passed", {"maintenance_first": "是"}),
        ("utility", "accept", {"comment": "已接收"}),
    ], "accepted"),
    ("五(二) 异议经质监站核验合格", "water", [
        ("staff", "request_inspection", {}),
        ("utility", "raise_objection", {"comment": "管网不符合设计要求"}),
        ("admin", "record_verification_passed", {"document": "质监〔2021〕8号"}),
        ("utility", "accept", {}),
    ], "accepted"),
    ("五(二) 异议核验不合格，限期整改", "electricity", [
        ("staff", "request_inspection", {}),
        ("utility", "raise_objection", {"comment": "表箱不符合要求"}),
        ("admin", "record_verification_failed", {"document": "质监〔2021〕9号",
                                                 "comment": "确需整改"}),
        ("staff", "order_rectification", ORDER),
        ("staff", "record_rectified", {"document": "整改验收单"}),
        ("utility", "accept", {}),
    ], "accepted"),
    ("五(三) 纳入老旧小区改造", "water", [
        ("staff", "include_in_renovation", {"document": "老旧小区改造计划"}),
        ("staff", "record_completed", {}),
        ("utility", "accept", {}),
    ], "accepted"),
    ("五(四) 开发建设单位无法联系，追查并起诉", "water", [
        ("staff", "order_developer", ORDER),
        ("staff", "request_tracing", {"document": "协查函〔2021〕2号"}),
        ("staff", "order_legal_representative", ORDER),
        ("staff", "record_legal_rep_refused", {"comment": "法定代表人拒不承担"}),
        ("admin", "refer_to_litigation", {"document": "起诉状"}),
    ], "litigation"),
    ("五(五) 首先实现网上缴费", "electricity", [
        ("utility", "enable_online_payment", {}),
    ], "registered"),
]


@pytest.fixture
def users(login: Callable[..., Any]) -> dict[str, Callable[[str], Any]]:
    clients = {"staff": login("pingxi_staff"), "admin": login("pingxi_admin"),
               "water": login("water"), "electricity": login("power")}
    return clients


@pytest.mark.parametrize(("path", "utility", "steps", "final"), PATHS, ids=[p[0] for p in PATHS])
def test_each_path_of_section_5_walks_through_the_pages(
        app: Flask, users: dict[str, Any], tenant_ids: dict[str, int], path: str,
        utility: str, steps: list, final: str) -> None:
    pk = new_project(app, tenant_ids["pingxi"], utility=utility)
    for who, transition, form in steps:
        client = users[utility if who == "utility" else who]
        assert transition in offered(client, pk), (path, who, transition)
        page = step(client, pk, transition, **form)
        assert "alert-danger" not in page or "已逾期" in page, (path, transition)
    project, events = load(app, pk)
    assert project.state == final
    assert [e.transition for e in events] == [t for _, t, _ in steps]
    assert all(e.actor for e in events)  # who, from, to, when: the history row
    assert [e.from_state for e in events[1:]] == [e.to_state for e in events[:-1]]


def test_a_utility_refusing_to_accept_is_ordered_found_overdue_and_fined(
        app: Flask, users: dict[str, Any], tenant_ids: dict[str, int]) -> None:
    pk = new_project(app, tenant_ids["pingxi"], utility="water")
    staff, admin, water = users["staff"], users["admin"], users["water"]
    step(staff, pk, "request_inspection")
    step(water, pk, "record_inspection_passed")
    step(staff, pk, "record_utility_refusal", comment="供水公司拒不接收")
    step(admin, pk, "order_utility_rectification", deadline=TODAY, document="平建〔2021〕3号")
    page = step(admin, pk, "record_utility_overdue")
    assert "尚未届满" in page                        # not overdue on the deadline day itself
    assert load(app, pk)[0].state == "utility_rectification_ordered"

    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingxi"]), db.session):
        db.session.get(RetrofitProject, pk).deadline = beijing_today() - dt.timedelta(days=1)
        db.session.commit()                            # time passes
    assert "已逾期" in admin.get(f"/retrofit/show/{pk}").get_data(as_text=True)
    step(admin, pk, "record_utility_overdue")
    page = step(admin, pk, "impose_fine", amount="299999.99", document="平建罚〔2021〕1号")
    assert "300,000.00 元" in page and load(app, pk)[0].state == "utility_overdue"
    step(admin, pk, "impose_fine", amount="1,000,000", document="平建罚〔2021〕1号")
    project, events = load(app, pk)
    assert project.state == "fined" and project.fine_amount == decimal.Decimal("1000000.00")
    assert events[-1].amount == decimal.Decimal("1000000.00")
    step(water, pk, "accept")
    assert load(app, pk)[0].state == "accepted"


def test_only_the_projects_own_utility_and_tenant_may_step(
        app: Flask, users: dict[str, Any], login: Callable[..., Any],
        tenant_ids: dict[str, int]) -> None:
    pk = new_project(app, tenant_ids["pingxi"], utility="electricity")
    step(users["staff"], pk, "request_inspection")
    assert offered(users["water"], pk) == set()        # another utility: 404, no forms
    page = users["water"].post(f"/retrofit/step/{pk}/record_inspection_passed")
    assert page.status_code == 404
    other = login("pingqiao_staff")
    assert other.post(f"/retrofit/step/{pk}/record_completed").status_code == 404
    assert load(app, pk)[0].state == "awaiting_inspection"
