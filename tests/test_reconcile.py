"""核对 end to end: a utility's account list (built here, company-style headers, a title row
and a 合计 row) against a ledger seeded here, through a real burst `onemeter worker --queue
reconcile` on real Redis and this run's database: exact counts per class, a different meter
number and a different name found, the result workbook formula-safe, a hostile file failing
in words, tenant isolation (pages and service), and the plan check listing a difference.
"""

from __future__ import annotations

import io
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from rq import Queue
from sqlalchemy.orm import Session

from onemeter.database import db
from onemeter.imports.reader import read_table
from onemeter.jobs import FINISHED, JobRun, queue_name, redis_connection
from onemeter.reconcile.engine import reconcile
from onemeter.reconcile.models import DONE, FAILED, ReconcileRun
from onemeter.reconcile.service import (
    account_frame,
    get_run,
    list_runs,
    plan_check,
    result_bytes,
    start_upload,
)
from onemeter.registry.models import Community, Household, MeterAccount
from onemeter.registry.plan import load_plan
from onemeter.tenancy import TenantScope, use_scope
from tests.support.stack import Stack
from tests.support.worker import run_burst_worker
from tests.test_import_jobs import read_row, tenant_scope, user_id


@pytest.fixture(autouse=True)
def empty_reconcile_queue(app: Flask) -> Iterator[None]:
    def empty() -> None:
        with app.app_context():
            Queue(queue_name("reconcile", app), connection=redis_connection(app)).empty()

    empty()
    yield
    empty()


@pytest.fixture
def tag() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=6))


def numbers(k: int) -> list[str]:
    base = random.randrange(10**11, 9 * 10**11)
    return [str(base + i) for i in range(k)]


def seed_ledger(app: Flask, tenant_id: int, community: str) -> dict[str, Any]:
    """Six households of one community with water accounts (户号, 表号, 户主)."""
    accounts = numbers(7)
    meters = [f"SB{a}" for a in accounts]
    people = ["张三", "李四", "王五", "赵六", "钱七", "孙八"]
    with tenant_scope(app, tenant_id) as session:
        c = Community(tenant_id=tenant_id, name=community)
        session.add(c)
        session.flush()
        for i, name in enumerate(people):
            h = Household(tenant_id=tenant_id, community_id=c.id, building="3号楼",
                          unit="2单元", room=f"{101 + i}室", owner_name=name)
            session.add(h)
            session.flush()
            session.add(MeterAccount(tenant_id=tenant_id, household_id=h.id, utility="water",
                                     account_no=accounts[i], meter_no=meters[i]))
        session.commit()
    return {"accounts": accounts, "meters": meters, "community": community}


def account_list(s: dict[str, Any]) -> bytes:
    """The water company's export: title, header 用户编号/表号/用户名称/用水地址, 合计."""
    a, m, c = s["accounts"], s["meters"], s["community"]
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["平桥区自来水公司用户清单"])
    ws.merge_cells("A1:E1")
    ws.append(["序号", "用户编号", "表号", "用户名称", "用水地址"])
    ws.append([1, a[0], m[0], "张三", f"{c} 3号楼2单元101室"])       # by account
    ws.append([2, None, m[1], "李四", f"{c} 3号楼2单元102室"])        # by meter
    ws.append([3, None, None, "王五", f"{c} 三栋二单元103"])          # by address
    ws.append([4, a[3], "SB000000999", "赵六", f"{c} 3号楼2单元104室"])  # other meter
    ws.append([5, a[4], m[4], "钱 八", f"{c} 3号楼2单元105室"])       # other name
    ws.append([6, a[6], m[6], "+SUM(A1)", f"{c} 9号楼1单元901室"])  # company only
    ws.append(["合计", None, None, None, None])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def water_accounts(app: Flask, tenant_id: int) -> int:
    with tenant_scope(app, tenant_id) as session:
        return session.execute(sa.select(sa.func.count()).select_from(MeterAccount)
                               .where(MeterAccount.utility == "water")).scalar_one()


def upload(app: Flask, tenant_id: int, user: int, data: bytes, name: str = "水司清单.xlsx",
           utility: str = "water") -> tuple[int, int]:
    with tenant_scope(app, tenant_id) as session:
        run, job = start_upload(session, tenant_id, user, utility, name, io.BytesIO(data))
        return run.id, job.id


def test_engine_pairs_in_three_rounds_and_finds_conflicts() -> None:
    ledger = pd.DataFrame({"account_no": ["1", "2", "3", "4"], "meter_no": ["A", "B", "C", "D"],
                           "owner_name": ["甲", "乙", "丙", "丁"], "community": ["X"] * 4,
                           "natural_key": ["1-1-101", "1-1-102", "1-1-103", "1-1-104"]})
    accounts = pd.DataFrame({"account_no": [1.0, None, None, "9"],
                             "meter_no": ["Ａ", "B", None, "Z"],
                             "owner_name": ["甲", "乙 ", "丙丙", "戊"], "community": ["X"] * 4,
                             "building": ["一号楼"] * 4, "unit": ["1单元"] * 4,
                             "room": ["101", "102", "103室", "909"]})
    result = reconcile(ledger, accounts)
    assert result.counts["matched"] == 2 and result.counts["conflict"] == 1
    assert result.counts["by_account_no"] == 1 and result.counts["by_meter_no"] == 1
    assert result.counts["by_address"] == 1 and result.counts["name_differs"] == 1
    assert list(result.ledger_only) == [3] and list(result.utility_only) == [3]


def test_an_account_list_is_reconciled_through_a_real_worker(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int], tag: str,
        login: Any) -> None:
    pingqiao, pingxi = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    staff = user_id(app, "pingqiao_staff")
    s = seed_ledger(app, pingqiao, f"桂园小区{tag}")
    others = water_accounts(app, pingqiao) - 6
    run_id, job_id = upload(app, pingqiao, staff, account_list(s))
    run_burst_worker(stack, tmp_path, "reconcile")
    job = read_row(app, JobRun, job_id)
    assert job["state"] == FINISHED, job["error"]
    run = read_row(app, ReconcileRun, run_id)
    assert run["state"] == DONE, run
    counts = run["counts"]
    assert (counts["matched"], counts["conflict"], counts["utility_only"]) == (3, 2, 1), counts
    assert counts["ledger_only"] == others + 1
    assert (counts["by_account_no"], counts["by_meter_no"], counts["by_address"]) == (3, 1, 1)
    assert counts["meter_differs"] == 1 and counts["name_differs"] == 1
    conflicts = run["samples"]["conflict"]
    texts = [" ".join(str(v) for v in row) for row in conflicts["rows"]]
    assert any("表号不同" in t and "SB000000999" in t and s["meters"][3] in t for t in texts)
    assert any("户名不同" in t and "钱七" in t and "钱 八" in t for t in texts)

    with tenant_scope(app, pingqiao):
        body = result_bytes(db.session.get(ReconcileRun, run_id))
    wb = openpyxl.load_workbook(io.BytesIO(body))
    assert wb.sheetnames == ["一致", "信息不一致", "仅台账有", "仅公司有"]
    assert wb["一致"].max_row == 4 and wb["信息不一致"].max_row == 3
    assert wb["仅台账有"].max_row == others + 2 and wb["仅公司有"].max_row == 2
    cells = [c.value for c in wb["仅公司有"][2]]
    assert "'+SUM(A1)" in cells and s["accounts"][6] in cells

    # Isolation: another sub-district sees nothing, its pages 404; the district reads.
    with tenant_scope(app, pingxi) as session:
        assert get_run(session, run_id) is None
        assert run_id not in [r.id for r in list_runs(session, limit=1000)]
    assert login("pingxi_staff").get(f"/reconcile/show/{run_id}").status_code == 404
    assert login("pingxi_staff").get(f"/reconcile/download/{run_id}").status_code == 404
    page = login("district").get(f"/reconcile/show/{run_id}")
    assert page.status_code == 200 and "信息不一致" in page.get_data(as_text=True)
    assert login("district").get(f"/reconcile/download/{run_id}").status_code == 200
    own = login("pingqiao_staff").get(f"/reconcile/show/{run_id}")
    assert own.status_code == 200 and "下载核对结果" in own.get_data(as_text=True)
    listing = login("pingqiao_staff").get("/reconcile/list/").get_data(as_text=True)
    assert "上传公司账户清单" in listing and "台账与改造计划核对" in listing
    assert "上传公司账户清单" not in login("district").get("/reconcile/list/").get_data(
        as_text=True)


def test_an_upload_through_the_page_starts_the_job(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int], tag: str,
        login: Any) -> None:
    s = seed_ledger(app, tenant_ids["pingqiao"], f"建业小区{tag}")
    client = login("pingqiao_staff")
    response = client.post("/reconcile/upload", data={
        "utility": "water", "accounts": (io.BytesIO(account_list(s)), "清单.xlsx")},
        content_type="multipart/form-data")
    assert response.status_code == 302 and "/reconcile/show/" in response.location
    run_id = int(response.location.rstrip("/").rsplit("/", 1)[-1])
    run_burst_worker(stack, tmp_path, "reconcile")
    assert read_row(app, ReconcileRun, run_id)["counts"]["conflict"] == 2
    assert login("district").post("/reconcile/upload", data={"utility": "water"}
                                  ).status_code in (302, 403)


def test_a_hostile_file_fails_the_run_in_words(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int]) -> None:
    pingqiao = tenant_ids["pingqiao"]
    staff = user_id(app, "pingqiao_staff")
    run_id, job_id = upload(app, pingqiao, staff, "用户编号,表号\n1,2\n".encode(), "清单.xlsx")
    run_burst_worker(stack, tmp_path, "reconcile")
    assert read_row(app, JobRun, job_id)["counts"] == {"file_refused": 1}
    run = read_row(app, ReconcileRun, run_id)
    assert run["state"] == FAILED
    assert run["message"].startswith("文件内容不是Excel表格"), run["message"]
    assert run["result_file"] is None


def test_the_plan_check_lists_a_difference_we_create(
        app: Flask, tenant_ids: dict[str, int], tag: str) -> None:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        load_plan(db.session)  # idempotent
        db.session.commit()

    def water_total() -> tuple[int, int]:
        with app.app_context(), use_scope(TenantScope.all_read_only()), \
                Session(db.engine) as session:
            from onemeter.registry.models import PlanTarget
            target = session.execute(sa.select(PlanTarget).where(
                PlanTarget.utility == "water", PlanTarget.phase_year.is_(None),
                PlanTarget.category.is_(None))).scalars().first()
            assert target is not None, "the plan is loaded in the test database"
            check = plan_check(session)
            found = [d for d in check.differences if d.utility == "water" and
                     d.phase_year is None and d.category is None and d.measure == "households"]
            return (found[0].registry if found else target.households), len(check.by_community)

    before, _ = water_total()
    seed_ledger(app, tenant_ids["pingdong"], f"老城小区{tag}")
    after, communities = water_total()
    assert after == before + 6 and communities > 0
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        lines = [d.describe() for d in plan_check(session).differences]
    assert any(line.startswith("三年合计 供水 合计 户数：台账") for line in lines), lines


def test_the_same_list_twice_is_one_run_and_a_cancelled_run_can_be_run_again(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int], tag: str,
        login: Any) -> None:
    s = seed_ledger(app, tenant_ids["pingxi"], f"羊山小区{tag}")
    client = login("pingxi_staff")
    data = account_list(s)

    def post() -> Any:
        return client.post("/reconcile/upload", data={
            "utility": "water", "accounts": (io.BytesIO(data), "清单.xlsx")},
            content_type="multipart/form-data", follow_redirects=False)

    first = post()
    run_id = int(first.location.rstrip("/").rsplit("/", 1)[-1])
    first_job = read_row(app, ReconcileRun, run_id)["job_id"]
    # Cancelled before a worker took it: the run settles to 失败 and says why.
    cancelled = client.post(f"/reconcile/cancel/{run_id}", follow_redirects=True)
    assert "已取消核对" in cancelled.get_data(as_text=True)
    assert read_row(app, JobRun, first_job)["state"] == "cancelled"
    page = client.get(f"/reconcile/show/{run_id}").get_data(as_text=True)
    assert read_row(app, ReconcileRun, run_id)["state"] == FAILED and "重新核对" in page

    again = post()   # the same bytes: the same run, no second job
    assert again.location.endswith(f"/reconcile/show/{run_id}")
    assert "已于核对" in client.get(f"/reconcile/show/{run_id}").get_data(as_text=True)

    assert login("pingqiao_staff").post(f"/reconcile/rerun/{run_id}").status_code == 404
    assert login("district").post(f"/reconcile/rerun/{run_id}").status_code in (302, 403)
    client.post(f"/reconcile/rerun/{run_id}")
    run = read_row(app, ReconcileRun, run_id)
    assert run["attempts"] == 2 and run["job_id"] != first_job
    run_burst_worker(stack, tmp_path, "reconcile")
    run = read_row(app, ReconcileRun, run_id)
    assert run["state"] == DONE and run["counts"]["conflict"] == 2
    assert read_row(app, JobRun, run["job_id"])["state"] == FINISHED
    with tenant_scope(app, tenant_ids["pingxi"]) as session:
        assert [r.id for r in list_runs(session, limit=1000)].count(run_id) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(ReconcileRun).where(
            ReconcileRun.content_hash == run["content_hash"])) == 1


def test_a_sub_district_sees_its_own_counts_not_a_comparison_with_the_district_plan(
        app: Flask, tenant_ids: dict[str, int], tag: str, login: Any) -> None:
    seed_ledger(app, tenant_ids["pingxi"], f"明港小区{tag}")
    with tenant_scope(app, tenant_ids["pingxi"]) as session:
        check = plan_check(session)
    assert check.scoped and check.differences == []
    assert {row["tenant"] for row in check.by_tenant} == {"平西办事处"}
    page = login("pingxi_staff").get("/reconcile/list/").get_data(as_text=True)
    assert "只给出全区的目标" in page and "处与计划不一致" not in page
    district = login("district").get("/reconcile/list/").get_data(as_text=True)
    assert "只给出全区的目标" not in district


def test_an_error_cell_in_the_account_list_is_compared_as_empty(app: Flask) -> None:
    """A failed formula's #N/A (an .xlsx error cell, which the reader now keeps) says nothing
    about the account: it is compared as an empty cell, not as a name that differs."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["户号", "户名", "水表编号"])
    ws.append(["1001", "张三", "M1"])
    ws.append(["1002", "#N/A", "#REF!"])
    buffer = io.BytesIO()
    wb.save(buffer)
    raw = read_table(buffer.getvalue(), "清单.xlsx", max_bytes=1 << 20,
                     max_uncompressed_bytes=1 << 24, max_cells=10_000)
    assert raw.rows[2][1:] == ["#N/A", "#REF!"]  # kept by the reader …
    with app.app_context():
        frame = account_frame(raw, "water")
    assert frame["owner_name"].tolist() == ["张三", ""]  # … and blank for the comparison
    assert frame["meter_no"].tolist() == ["M1", ""]
