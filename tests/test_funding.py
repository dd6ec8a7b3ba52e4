"""资金 (funding plugin) on the real database: who enters what, the award through a real RQ
worker, another city's rule as a throwaway plugin, the recovery hook, rollups, disabling."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from onemeter_funding.models import (
    AwardAllocation,
    AwardComputation,
    AwardGrant,
    FundingPayment,
    ProjectFunding,
)
from onemeter_funding.rules import AwardRule, rule_in_force
from onemeter_funding.service import (
    compute_and_store,
    funding_tenants,
    preview,
    project_figures,
)
from rq import Queue

from onemeter.database import db
from onemeter.jobs import FINISHED, JobRun, queue_name, redis_connection
from onemeter.plugins import PluginInfo, build_plugin_manager, hookimpl
from onemeter.registry.models import Community, Household
from onemeter.retrofit.models import ProjectEvent, RetrofitProject
from onemeter.tenancy import Tenant, TenantScope, use_scope
from tests.support.stack import ROOT, Stack

TODAY = dt.date.today()


# --- helpers ---------------------------------------------------------------------------

def funded_project(app: Flask, tenant_id: int, *, state: str = "accepted",
                   reviewed: str | None = None, reviewed_on: dt.date | None = None,
                   estimated: str | None = "1200000.00", households: int = 0,
                   accepted_at: dt.datetime | None = None) -> tuple[int, int]:
    """A project in `state` with its funding row (reviewed as given); (project id, funding id)."""
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = Community(tenant_id=tenant_id, name=f"资金测试{uuid.uuid4().hex[:8]}")
        project = RetrofitProject(tenant_id=tenant_id, community=community, utility="water",
                                  state=state)
        db.session.add(project)
        for n in range(households):
            db.session.add(Household(tenant_id=tenant_id, community=community, room=f"{n}",
                                     natural_key=f"{uuid.uuid4().hex[:6]}-{n}"))
        db.session.flush()
        if accepted_at is not None:
            db.session.add(ProjectEvent(tenant_id=tenant_id, project_id=project.id,
                                        at=accepted_at, transition="accept",
                                        from_state="inspection_passed", to_state="accepted"))
        funding = ProjectFunding(
            tenant_id=tenant_id, project_id=project.id,
            estimated_investment=Decimal(estimated) if estimated else None,
            reviewed_amount=Decimal(reviewed) if reviewed else None,
            reviewed_on=reviewed_on or (dt.date(2022, 1, 10) if reviewed else None),
            reviewer="区财政局评审中心" if reviewed else None,
            review_document="平财评〔2022〕1号" if reviewed else None)
        db.session.add(funding)
        db.session.commit()
        return project.id, funding.id


def read(app: Flask, model: type, pk: int) -> Any:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        row = db.session.get(model, pk)
        if row is not None:
            db.session.expunge(row)
        return row


def count(app: Flask, model: type, *where: Any) -> int:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def text(response: Any) -> str:
    return response.get_data(as_text=True)


@contextmanager
def funding_disabled(app: Flask, code: str) -> Iterator[int]:
    """The sub-district `code` with funding removed from its plugins (restored after)."""
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        tenant = db.session.query(Tenant).filter_by(code=code).one()
        before, tenant_id = list(tenant.plugins), tenant.id
        tenant.plugins = [p for p in before if p != "funding"]
        db.session.commit()
    try:
        yield tenant_id
    finally:
        with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
            db.session.get(Tenant, tenant_id).plugins = before
            db.session.commit()


# --- roles: who enters what ----------------------------------------------------------

def test_only_finance_enters_the_fiscal_review_and_tenant_staff_only_their_own_fields(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingqiao"]
    _, pk = funded_project(app, tenant, reviewed=None)
    staff, finance = login("pingqiao_staff"), login("finance")
    review = {"reviewed_amount": "980000.50", "reviewer": "张评审", "reviewed_on": "2022-03-01",
              "review_document": "平财评〔2022〕7号"}

    # Staff see their page, without the review form; posting a review is refused.
    page = text(staff.get(f"/funding/projects/show/{pk}"))
    assert "项目资金详情" in page and "保存财政评审" not in page
    staff.post(f"/funding/projects/review/{pk}", data=review)
    assert read(app, ProjectFunding, pk).reviewed_amount is None
    # The edit form has no review fields: posting them changes only what staff may change.
    staff.post(f"/funding/projects/edit/{pk}", data={
        "estimated_investment": "1300000.00", "note": "调整估算", **review})
    row = read(app, ProjectFunding, pk)
    assert row.estimated_investment == Decimal("1300000.00") and row.note == "调整估算"
    assert row.reviewed_amount is None and row.reviewer is None

    # Finance: bad input is refused in Chinese and writes nothing; then the review is saved.
    response = finance.post(f"/funding/projects/review/{pk}",
                            data=dict(review, reviewed_amount="九十八万"), follow_redirects=True)
    assert "不是金额" in text(response)
    assert read(app, ProjectFunding, pk).reviewed_amount is None
    response = finance.post(f"/funding/projects/review/{pk}",
                            data=dict(review, reviewer=""), follow_redirects=True)
    assert "请填写评审人" in text(response)
    response = finance.post(f"/funding/projects/review/{pk}", data=review,
                            follow_redirects=True)
    assert "财政评审已保存：980,000.50 元" in text(response)
    row = read(app, ProjectFunding, pk)
    assert (row.reviewed_amount, row.reviewer, row.reviewed_on, row.review_document) == (
        Decimal("980000.50"), "张评审", dt.date(2022, 3, 1), "平财评〔2022〕7号")
    assert row.estimated_investment == Decimal("1300000.00")  # finance changed nothing else
    # Finance reads every sub-district's funding but edits none of the tenant fields.
    finance.post(f"/funding/projects/edit/{pk}", data={"estimated_investment": "1.00"})
    assert read(app, ProjectFunding, pk).estimated_investment == Decimal("1300000.00")
    _, theirs = funded_project(app, tenant_ids["pingxi"])
    listing = text(finance.get("/funding/projects/list/?psize_ProjectFundingView=100000"))
    assert f"/funding/projects/show/{pk}" in listing
    assert f"/funding/projects/show/{theirs}" in listing
    assert "平西" in listing


def test_finance_cannot_change_any_sub_districts_registry(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    project_id, _ = funded_project(app, tenant, households=1)
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        project = db.session.get(RetrofitProject, project_id)
        community_id = project.community_id
        household_id = db.session.query(Household.id).filter_by(
            community_id=community_id).scalar()
    finance = login("finance")
    before = (read(app, Community, community_id).name, read(app, Household, household_id).room,
              read(app, RetrofitProject, project_id).comment)
    communities = count(app, Community)
    for url, data in [
        (f"/registry/communities/edit/{community_id}", {"name": "财政局改名"}),
        (f"/registry/households/edit/{household_id}", {"room": "999"}),
        ("/registry/communities/add", {"name": "财政局新建小区"}),
        (f"/registry/households/delete/{household_id}", {}),
        (f"/retrofit/step/{project_id}/request_inspection", {"comment": "财政局"}),
    ]:
        response = finance.post(url, data=data)
        assert response.status_code in (302, 403, 404), (url, response.status_code)
    after = (read(app, Community, community_id).name, read(app, Household, household_id).room,
             read(app, RetrofitProject, project_id).comment)
    assert after == before and count(app, Community) == communities
    assert read(app, Household, household_id) is not None
    # ... while the funding pages are open to finance.
    assert finance.get("/funding/dashboard/").status_code == 200


def test_tenant_payments_are_checked_and_listed_only_for_their_sub_district(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    project_id, pk = funded_project(app, tenant_ids["pingxi"])
    staff = login("pingxi_staff")
    payments = count(app, FundingPayment)
    response = staff.post("/funding/payments/add", data={
        "project": str(project_id), "payer": "developer", "amount": "-5",
        "paid_on": "2022-05-01", "document": "收据 001"}, follow_redirects=True)
    assert "金额须大于 0 元" in text(response)
    assert count(app, FundingPayment) == payments
    staff.post("/funding/payments/add", data={
        "project": str(project_id), "payer": "developer", "amount": "250000.005",
        "paid_on": "2022-05-01", "document": "收据 002"})
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        paid = db.session.query(FundingPayment).filter_by(project_id=project_id).one()
        assert paid.amount == Decimal("250000.01") and paid.source == "manual"
        assert db.session.get(ProjectFunding, pk).developer_paid == Decimal("250000.01")
    page = text(staff.get(f"/funding/projects/show/{pk}"))
    assert "250,000.01 元" in page and "收据 002" in page
    assert "收据 002" not in text(login("pingqiao_staff").get(
        "/funding/payments/list/?psize_FundingPaymentView=100000"))


# --- the award ------------------------------------------------------------------------

def run_reports_worker(stack: Stack, tmp_path: Path) -> str:
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    with open(log, "wb") as out:
        code = subprocess.run(
            [sys.executable, "-m", "onemeter.cli", "worker", "--queue", "reports", "--burst"],
            env=stack.subprocess_env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            timeout=300).returncode
    output = log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, output[-4000:]
    return output


def test_award_never_exceeds_twenty_percent_of_accepted_reviewed_investment_and_is_allocated_to_the_fen_by_a_real_worker(  # noqa: E501
        app: Flask, login: Callable[..., Any], stack: Stack, tmp_path: Path,
        tenant_ids: dict[str, int]) -> None:
    with app.app_context():
        Queue(queue_name("reports", app), connection=redis_connection(app)).empty()
    eligible, _ = funded_project(app, tenant_ids["pingqiao"], reviewed="1000000.00")
    also, _ = funded_project(app, tenant_ids["pingxi"], reviewed="333333.33")
    unreviewed, _ = funded_project(app, tenant_ids["pingqiao"])
    unfinished, _ = funded_project(app, tenant_ids["pingxi"], state="completed",
                                   reviewed="500000.00")
    finance = login("finance")
    pm = app.extensions["onemeter_plugins"]
    with app.app_context():
        cap = preview(db.session, pm, TODAY).cap
        db.session.rollback()
    grants = count(app, AwardGrant)

    response = finance.post("/funding/dashboard/grant", data={
        "amount": f"{cap + Decimal('0.01')}", "as_of": TODAY.isoformat()}, follow_redirects=True)
    assert "奖补金额未保存" in text(response) and "超过上限" in text(response)
    assert count(app, AwardGrant) == grants
    response = finance.post("/funding/dashboard/grant", data={
        "amount": str(cap), "as_of": TODAY.isoformat(), "document": "信财〔2023〕9号"},
        follow_redirects=True)
    assert "已录入以奖代补" in text(response) and "已提交资金重新测算" in text(response)
    run_id = int(re.search(r"后台任务 #(\d+)", text(response)).group(1))
    # Staff may not grant: the form is finance's.
    assert login("pingqiao_admin").post("/funding/dashboard/grant", data={
        "amount": "1", "as_of": TODAY.isoformat()}).status_code in (302, 403)
    assert count(app, AwardGrant) == grants + 1

    run_reports_worker(stack, tmp_path)
    run = read(app, JobRun, run_id)
    assert run.state == FINISHED, run.error
    computation_id = run.counts["计算编号"]
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        computation = db.session.get(AwardComputation, computation_id)
        lines = {a.project_id: a for a in db.session.query(AwardAllocation)
                 .filter_by(computation_id=computation_id)}
        assert computation.rule_code == "xinyang-yijiangdaibu"
        assert computation.as_of == TODAY and computation.granted == cap
        assert computation.cap == (computation.eligible_total * Decimal("0.2")).quantize(
            Decimal("0.01"))
        assert computation.allocated == cap <= computation.cap
        assert sum(a.award for a in lines.values()) == cap  # exact to the fen
        assert lines[eligible].eligible and lines[also].eligible
        assert lines[eligible].award > 0 and lines[also].award > 0
        assert lines[unreviewed].reason == "投资未经财政评审"
        assert lines[unfinished].reason.startswith("改造尚未完成并经专营单位接收")
        assert lines[unfinished].award == 0
        assert lines[eligible].backstop == Decimal("1000000.00") - lines[eligible].award
        assert all(a.backstop is None or a.backstop >= 0 for a in lines.values())

    page = text(finance.get("/funding/dashboard/"))
    assert f"第 {computation_id} 次" in page and "投资未经财政评审" in page
    export = finance.get("/funding/dashboard/export/")
    assert export.status_code == 200 and "spreadsheetml" in export.headers["Content-Type"]
    # A tenant's staff see their own lines of it, not the district's dashboard.
    staff = login("pingqiao_staff")
    assert staff.get("/funding/dashboard/").status_code in (302, 403)
    mine = text(staff.get("/funding/allocations/list/?psize_AwardAllocationView=100000"))
    assert "投资未经财政评审" in mine and "平西" not in mine


class OtherCityRule:
    """Another city's rule, as its own small plugin: 300 元 per household, at most 100,000 元,
    from 2025; before that it has no rule and the funding plugin's default answers."""

    RULES = (AwardRule("othercity", "2025.1", dt.date(2025, 1, 1),
                       "他市以奖代补：每户 300 元，最高 10 万元",
                       per_household=Decimal(300), ceiling=Decimal(100_000)),)

    @hookimpl
    def onemeter_plugin_info(self) -> PluginInfo:
        return PluginInfo(label="他市奖补规则", version="0.1.0")

    @hookimpl
    def onemeter_award_rule(self, as_of: dt.date) -> AwardRule | None:
        return rule_in_force(self.RULES, as_of)


def test_another_citys_rule_plugin_changes_the_result_and_an_older_day_reproduces_the_older_one(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    project_id, _ = funded_project(app, tenant_ids["zhenleishan"], reviewed="2000000.00",
                                   reviewed_on=dt.date(2024, 6, 1), households=3,
                                   accepted_at=dt.datetime(2024, 5, 1, 2, 0))
    pm = build_plugin_manager(only=["funding"], extra={"othercity": OtherCityRule()})
    old_day, new_day = dt.date(2024, 12, 31), dt.date(2025, 6, 30)
    with app.app_context():
        older = compute_and_store(db.session, pm, old_day, None, trigger="test")
        newer = compute_and_store(db.session, pm, new_day, None, trigger="test")
        again = compute_and_store(db.session, pm, old_day, None, trigger="test")
        db.session.commit()
        ids = older.id, newer.id, again.id
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        older, newer, again = (db.session.get(AwardComputation, i) for i in ids)
        assert (older.rule_code, older.rule_version) == ("xinyang-yijiangdaibu", "2021.1")
        assert (newer.rule_code, newer.rule_version) == ("othercity", "2025.1")
        assert older.cap == (older.eligible_total * Decimal("0.2")).quantize(Decimal("0.01"))
        figures = [f for f in project_figures(db.session, new_day) if f.state == "accepted"
                   and f.reviewed_amount and f.reviewed_on and f.reviewed_on <= new_day]
        households = sum(f.households for f in figures)
        assert newer.cap == min(Decimal(300) * households, Decimal(100_000))
        assert newer.cap != older.cap
        # The older day, recomputed after the newer rule exists, gives the older result.
        assert (again.rule_code, again.rule_version, again.cap, again.eligible_total) == (
            older.rule_code, older.rule_version, older.cap, older.eligible_total)
        line = db.session.query(AwardAllocation).filter_by(
            computation_id=again.id, project_id=project_id).one()
        assert line.eligible and line.reviewed_amount == Decimal("2000000.00")
        # Before the project was reviewed it did not count, and says why.
        early = compute_and_store(db.session, pm, dt.date(2024, 5, 31), None)
        line = db.session.query(AwardAllocation).filter_by(
            computation_id=early.id, project_id=project_id).one()
        assert line.reason == "截至2024年5月31日尚未完成财政评审（2024年6月1日评审）"
        db.session.rollback()
    # The default plugin alone still answers with its own rule on the newer day.
    with app.app_context():
        assert preview(db.session, app.extensions["onemeter_plugins"],
                       new_day).rule.code == "xinyang-yijiangdaibu"
        db.session.rollback()


# --- hooks ----------------------------------------------------------------------------

def test_money_recovered_through_the_courts_counts_as_the_developers_payment(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    project_id, pk = funded_project(app, tenant, reviewed="800000.00")
    pm = app.extensions["onemeter_plugins"]
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        # As the litigation plugin calls it: in its transaction and the tenant's scope.
        pm.hook.onemeter_developer_payment_recovered(
            tenant_id=tenant, project_id=project_id, amount=Decimal("120000.50"),
            paid_on=dt.date(2023, 4, 1), reference="（2023）豫1503执123号", source="litigation")
        db.session.commit()
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        payment = db.session.query(FundingPayment).filter_by(project_id=project_id).one()
        assert (payment.payer, payment.amount, payment.source, payment.reference) == (
            "developer", Decimal("120000.50"), "litigation", "（2023）豫1503执123号")
        payment_id = payment.id
        assert db.session.get(ProjectFunding, pk).developer_paid == Decimal("120000.50")
        figures = {f.project_id: f for f in project_figures(db.session, dt.date(2023, 4, 1))}
        assert figures[project_id].developer_paid == Decimal("120000.50")
        db.session.rollback()
    staff = login("pingdong_staff")
    page = text(staff.get(f"/funding/projects/show/{pk}"))
    assert "120,000.50 元" in page and "litigation 插件" in page
    # A payment recorded by the courts' plugin cannot be edited by hand.
    staff.post(f"/funding/payments/edit/{payment_id}", data={
        "project": str(project_id), "payer": "developer", "amount": "1.00",
        "paid_on": "2023-04-01", "document": "改"})
    assert read(app, FundingPayment, payment_id).amount == Decimal("120000.50")


def test_rollup_metrics_per_sub_district_in_yuan(app: Flask, tenant_ids: dict[str, int]
                                                 ) -> None:
    funded_project(app, tenant_ids["pingqiao"], reviewed="10.00")
    pm = app.extensions["onemeter_plugins"]
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        ids = sorted(tenant_ids.values())
        metrics = {m.code: m for batch in pm.hook.onemeter_rollup_metrics(
            tenant_ids=ids, as_of=dt.date.today()) for m in batch if m.plugin == "funding"}
        reviewed = db.session.scalar(sa.select(sa.func.sum(ProjectFunding.reviewed_amount))
                                     .where(ProjectFunding.tenant_id == tenant_ids["pingqiao"]))
        # The sub-districts that enable funding (a test may have added one that does not).
        funded = {t.id for t in funding_tenants(db.session)}
        db.session.rollback()
    assert set(metrics) == {"funding.reviewed_investment", "funding.developer_paid",
                            "funding.treasury_backstop", "funding.award_allocated"}
    assert tenant_ids["pingqiao"] in funded
    assert all(m.unit == "元" and set(m.values) == funded & set(ids) for m in metrics.values())
    assert all(isinstance(v, Decimal) for m in metrics.values() for v in m.values.values())
    assert metrics["funding.reviewed_investment"].values[tenant_ids["pingqiao"]] == reviewed


def test_a_sub_district_that_disables_funding_sees_none_of_it(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    project_id, pk = funded_project(app, tenant_ids["pingdong"], reviewed="700000.00")
    with funding_disabled(app, "pingdong") as tenant:
        staff = login("pingdong_staff")
        home = text(staff.get("/"))
        assert "项目资金" not in home and "资金总览" not in home
        for url in ("/funding/projects/list/", f"/funding/projects/show/{pk}",
                    "/funding/payments/list/", "/funding/allocations/list/",
                    "/funding/projects/export/"):
            response = staff.get(url)
            assert response.status_code in (302, 403), (url, response.status_code)
            assert "700,000.00" not in text(response)
        # Finance no longer sees that sub-district's funding either.
        finance = login("finance")
        listing = text(finance.get("/funding/projects/list/?psize_ProjectFundingView=100000"))
        assert f"/funding/projects/show/{pk}" not in listing
        assert finance.get(f"/funding/projects/show/{pk}").status_code == 404
        assert "平东" not in text(finance.get("/funding/dashboard/"))
        pm = app.extensions["onemeter_plugins"]
        with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
            pm.hook.onemeter_developer_payment_recovered(
                tenant_id=tenant, project_id=project_id, amount=Decimal("5.00"),
                paid_on=TODAY, reference="案号", source="litigation")
            db.session.commit()
        assert count(app, FundingPayment, FundingPayment.project_id == project_id) == 0
        with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
            metrics = [m for batch in pm.hook.onemeter_rollup_metrics(
                tenant_ids=[tenant], as_of=TODAY) for m in batch if m.plugin == "funding"]
            assert metrics and all(m.values == {} for m in metrics)
            assert project_id not in {f.project_id for f in project_figures(db.session, TODAY)}
            db.session.rollback()
    assert login("pingdong_staff").get("/funding/projects/list/").status_code == 200


def test_demo_seed_gives_projects_funding_and_stores_one_computation(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    from onemeter_funding.demo import seed

    project_id, _ = funded_project(app, tenant_ids["pingxi"], state="registered",
                                   estimated=None)
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingxi"]), db.session):
        bare = RetrofitProject(tenant_id=tenant_ids["pingxi"], utility="water",
                               community=Community(tenant_id=tenant_ids["pingxi"],
                                                   name=f"演示{uuid.uuid4().hex[:6]}"))
        db.session.add(bare)
        db.session.commit()
        bare_id = bare.id
    computations = count(app, AwardComputation)
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        tenants = db.session.query(Tenant).order_by(Tenant.id).all()
        counts = seed(db.session, tenants, plugin_manager=app.extensions["onemeter_plugins"])
        again = seed(db.session, tenants)
    assert counts["funding"] >= 1 and counts["computations"] == 1
    assert again["funding"] == 0  # idempotent
    assert count(app, AwardComputation) == computations + 1
    assert count(app, ProjectFunding, ProjectFunding.project_id == bare_id) == 1
    assert read(app, ProjectFunding, _funding_id(app, project_id)).estimated_investment is None


def _funding_id(app: Flask, project_id: int) -> int:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return db.session.scalar(sa.select(ProjectFunding.id)
                                 .where(ProjectFunding.project_id == project_id))


def test_a_project_gets_one_funding_row_and_the_second_is_refused_in_chinese(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    project_id, _ = funded_project(app, tenant_ids["pingqiao"])
    rows = count(app, ProjectFunding)
    response = login("pingqiao_staff").post("/funding/projects/add", data={
        "project": str(project_id), "estimated_investment": "5.00"}, follow_redirects=True)
    assert "已登记资金，请在原记录上修改" in text(response)
    assert count(app, ProjectFunding) == rows


def test_the_access_matrix_covers_the_funding_pages(app: Flask) -> None:
    from tests.support.matrix import discover

    names = {t.name for t in discover(app)}
    assert {"ProjectFundingView", "FundingPaymentView", "AwardAllocationView"} <= names


def test_a_project_accepted_by_the_utility_queues_a_recomputation(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingqiao"]
    project_id, _ = funded_project(app, tenant, state="inspection_passed", reviewed="10.00")
    runs = count(app, JobRun, JobRun.kind == "funding.recompute", JobRun.tenant_id == tenant)
    response = login("water").post(f"/retrofit/step/{project_id}/accept",
                                   data={"comment": "已接收"}, follow_redirects=True)
    assert "现为「已接收统一管理」" in text(response)
    assert read(app, RetrofitProject, project_id).state == "accepted"
    assert count(app, JobRun, JobRun.kind == "funding.recompute",
                 JobRun.tenant_id == tenant) == runs + 1
    # A step that is not about acceptance queues nothing.
    other, _ = funded_project(app, tenant, state="registered")
    login("pingqiao_staff").post(f"/retrofit/step/{other}/request_inspection",
                                 data={"comment": "已交付"})
    assert read(app, RetrofitProject, other).state == "awaiting_inspection"
    assert count(app, JobRun, JobRun.kind == "funding.recompute",
                 JobRun.tenant_id == tenant) == runs + 1
