"""改造项目 pages on the real database: a project walked through the procedure as the users
the plan allows, refusals in Chinese that change nothing, the timeline, other tenants' 404."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from onemeter.database import db
from onemeter.plugins import hookimpl
from onemeter.retrofit.models import ProjectEvent, RetrofitProject, overdue_projects
from onemeter.retrofit.procedure import ProcedureRefused
from onemeter.retrofit.service import apply_transition, beijing_today
from onemeter.tenancy import TenantScope, use_scope
from tests.support.factory import make_row

LATER = (beijing_today() + dt.timedelta(days=30)).isoformat()


def new_project(app: Flask, tenant_id: int, utility: str = "water", state: str = "registered",
                **fields: Any) -> int:
    from onemeter.registry.models import Community

    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = make_row(db.session, Community, tenant_id, "项目测试")
        project = RetrofitProject(tenant_id=tenant_id, community=community, utility=utility,
                                  state=state, **fields)
        db.session.add(project)
        db.session.commit()
        return project.id


def load(app: Flask, pk: int) -> tuple[RetrofitProject, list[ProjectEvent]]:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        project = db.session.get(RetrofitProject, pk)
        events = db.session.query(ProjectEvent).filter_by(project_id=pk).order_by(
            ProjectEvent.id).all()
        db.session.expunge_all()
        return project, events


def offered(client: Any, pk: int) -> set[str]:
    """The steps the project page offers this user (its forms' actions)."""
    page = client.get(f"/retrofit/show/{pk}").get_data(as_text=True)
    return set(re.findall(rf'action="/retrofit/step/{pk}/(\w+)"', page))


def step(client: Any, pk: int, transition: str, **form: str) -> str:
    response = client.post(f"/retrofit/step/{pk}/{transition}", data=form,
                           follow_redirects=True)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_objection_path_walked_through_the_pages(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    pk = new_project(app, tenant_ids["pingqiao"])
    staff, admin, water = login("pingqiao_staff"), login("pingqiao_admin"), login("water")

    assert offered(staff, pk) == {"order_developer", "include_in_renovation",
                                  "request_inspection", "request_tracing"}
    assert 'name="csrf_token"' in staff.get(f"/retrofit/show/{pk}").get_data(as_text=True)
    assert offered(water, pk) == {"enable_online_payment"}
    step(staff, pk, "request_inspection", comment="小区已交付 3 年")
    assert offered(water, pk) == {"record_inspection_passed", "raise_objection",
                                  "enable_online_payment"}
    assert offered(staff, pk) == set()
    step(water, pk, "raise_objection", comment="表井渗水", maintenance_first="是")
    step(water, pk, "enable_online_payment")
    step(admin, pk, "record_verification_failed", document="质监〔2021〕9号", comment="确需整改")
    step(staff, pk, "order_rectification", deadline=LATER, document="平政〔2021〕5号")
    step(staff, pk, "record_rectified", document="整改验收单")
    page = step(water, pk, "accept", comment="已接收")
    assert "现为「已接收统一管理」" in page

    project, events = load(app, pk)
    assert project.state == "accepted" and project.deadline is None
    assert project.maintenance_first is True and project.online_payment_enabled_at is not None
    assert [e.transition for e in events] == [
        "request_inspection", "raise_objection", "enable_online_payment",
        "record_verification_failed", "order_rectification", "record_rectified", "accept"]
    assert [e.actor for e in events] == ["pingqiao_staff", "water", "water", "pingqiao_admin",
                                         "pingqiao_staff", "pingqiao_staff", "water"]
    assert events[4].deadline.isoformat() == LATER and events[4].document == "平政〔2021〕5号"
    assert all(e.tenant_id == tenant_ids["pingqiao"] for e in events)
    timeline = staff.get(f"/retrofit/show/{pk}").get_data(as_text=True)
    assert "质监〔2021〕9号" in timeline and "表井渗水" in timeline


def test_refusals_say_why_in_chinese_and_change_nothing(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    pk = new_project(app, tenant_ids["pingqiao"], state="utility_overdue")
    staff, admin, water = login("pingqiao_staff"), login("pingqiao_admin"), login("water")

    assert "当前状态「专营单位逾期未改正」不能执行「提请专营单位查验」" in step(
        staff, pk, "request_inspection")
    assert "只有本办事处管理员（代区住房和城乡建设局录入）可以对专营单位处以罚款" in step(
        staff, pk, "impose_fine", amount="500000", document="罚字1号")
    assert "「对专营单位处以罚款」须填写：罚款金额" in step(admin, pk, "impose_fine", document="罚字1号")
    assert "罚款金额须在300,000.00 元至1,000,000.00 元之间" in step(
        admin, pk, "impose_fine", amount="299999.99", document="罚字1号")
    assert "罚款金额须在" in step(admin, pk, "impose_fine", amount="1000000.01",
                                 document="罚字1号")
    assert "只有本办事处管理员" in step(water, pk, "impose_fine", amount="500000",
                                     document="罚字1号")
    project, events = load(app, pk)
    assert project.state == "utility_overdue" and project.fine_amount is None and events == []

    step(admin, pk, "impose_fine", amount="1000000.00", document="平建罚〔2021〕1号")
    project, events = load(app, pk)
    assert project.state == "fined" and project.fine_amount == decimal.Decimal("1000000.00")
    assert events[-1].amount == decimal.Decimal("1000000.00")


def test_deadline_in_the_past_is_refused_on_the_page(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    pk = new_project(app, tenant_ids["pingqiao"])
    page = step(login("pingqiao_staff"), pk, "order_developer", deadline="2021-07-06",
                document="平政〔2021〕1号")
    assert "已过，不能早于今天" in page
    assert load(app, pk)[0].state == "registered" and load(app, pk)[1] == []


def test_each_user_sees_only_their_projects_and_steps(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    theirs = new_project(app, tenant_ids["pingxi"], state="awaiting_inspection")
    power = new_project(app, tenant_ids["pingqiao"], utility="electricity",
                        state="awaiting_inspection")
    staff = login("pingqiao_staff")
    assert staff.get(f"/retrofit/show/{theirs}").status_code == 404
    assert staff.post(f"/retrofit/step/{theirs}/record_rectified").status_code == 404
    water = login("water")
    assert water.get(f"/retrofit/show/{power}").status_code == 404  # another utility's
    assert water.post(f"/retrofit/step/{power}/record_inspection_passed").status_code == 404
    # any sub-district's project of their utility
    assert "record_inspection_passed" in offered(water, theirs)
    district = login("district").get(f"/retrofit/show/{theirs}").get_data(as_text=True)
    assert "待专营单位查验" in district and "可办理的步骤" not in district
    assert load(app, power)[0].state == "awaiting_inspection"


def test_overdue_projects_and_the_litigation_hook(
        app: Flask, make_app: Callable[..., Flask], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    today = beijing_today()
    late = new_project(app, tenant, state="developer_ordered",
                       deadline=today - dt.timedelta(days=1))
    due = new_project(app, tenant, state="legal_rep_ordered", deadline=today)
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        overdue = {p.id for p in overdue_projects(db.session, today)}
    assert late in overdue and due not in overdue

    calls: list[dict] = []

    class Litigation:
        @hookimpl
        def onemeter_project_referred_to_litigation(self, project_id: int, tenant_id: int,
                                                    developer_id: int | None) -> None:
            calls.append({"project_id": project_id, "tenant_id": tenant_id})

    pk = new_project(app, tenant, state="legal_rep_refused")
    from onemeter.plugins import build_plugin_manager

    pm = build_plugin_manager(only=[])
    pm.register(Litigation())
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        user = app.appbuilder.sm.find_user("pingdong_staff")
        project = db.session.get(RetrofitProject, pk)
        with pytest.raises(ProcedureRefused, match="须填写：文书文号或附件"):
            apply_transition(db.session, project, "refer_to_litigation", user,
                             plugin_manager=pm)
        assert calls == []
        apply_transition(db.session, project, "refer_to_litigation", user, plugin_manager=pm,
                         document="起诉状")
        db.session.commit()
    assert calls == [{"project_id": pk, "tenant_id": tenant}]
    assert load(app, pk)[0].state == "litigation"
