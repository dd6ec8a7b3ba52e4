"""台账导入 through the pages, as a clerk does it: upload, dry run on a real RQ worker,
confirm, download the error list, undo; other sub-districts and read-only roles kept out."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import sqlalchemy as sa
from flask import Flask

from onemeter.database import db
from onemeter.imports.models import ImportBatch
from onemeter.jobs import JobRun
from onemeter.registry.models import Community, Household
from onemeter.tenancy import TenantScope, use_scope
from tests.support.stack import Stack
from tests.support.worker import run_burst_worker
from tests.test_import_jobs import empty_imports_queue  # noqa: F401 (fixture)


def ledger(community: str) -> bytes:
    """A GBK-free, BOM-prefixed CSV the way a clerk exports it: 3 good rows, 1 bad phone."""
    text = ("小区,楼栋,单元,室号,户主,联系电话\n"
            f"{community},三号楼,二单元,１０１,张三,13800000001\n"
            f"{community},3#,2,102室,李四,13800000002\n"
            f"{community},3栋,2单元,103,王五,\n"
            f"{community},3,2,104,赵六,12345\n")
    return "\ufeff".encode() + text.encode("utf-8")


def upload(client: Any, data: bytes, name: str = "台账.csv") -> Any:
    return client.post("/imports/upload", data={"ledger": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def households(app: Flask, tenant_id: int, community: str) -> list[str]:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        return sorted(db.session.scalars(
            sa.select(Household.natural_key).join(
                Community, Community.id == Household.community_id)
            .where(Community.name == community)))


def batch_id(response: Any) -> int:
    return int(re.search(r"/imports/show/(\d+)", response.headers["Location"]).group(1))


def test_a_clerk_uploads_previews_commits_downloads_errors_and_undoes(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., Any],
        tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingxi"]
    community = f"导入页面{uuid.uuid4().hex[:6]}"
    staff, district = login("pingxi_staff"), login("district")
    assert 'name="ledger"' in staff.get("/imports/list/").get_data(as_text=True)
    assert 'name="ledger"' not in district.get("/imports/list/").get_data(as_text=True)

    response = upload(staff, ledger(community))
    assert response.status_code == 302
    pk = batch_id(response)
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "已开始预览" in page and 'http-equiv="refresh"' in page  # polls while it runs
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        run = db.session.get(JobRun, db.session.get(ImportBatch, pk).preview_job_id)
        run.counts = {"rows_read": 12345, "rows_validated": 5000, "rows_written": 0}
        db.session.commit()  # as the worker's progress reports leave it
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "已读取 12,345 行" in page and "已校验 5,000 行" in page and "rows_read" not in page
    run_burst_worker(stack, tmp_path, "imports")

    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "预览（尚未写入）" in page and "已预览" in page
    counts = re.search(r'om-counts.*?</table>', page, re.S).group(0)
    assert re.findall(r"<td>([\d,]+) 行</td>", counts) == ["3", "0", "0", "1"]
    assert "13800000001" in page                       # the clerk sees residents' data
    assert households(app, tenant, community) == []     # a dry run writes nothing
    viewer_page = district.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "13800000001" not in viewer_page and "138****0001" in viewer_page
    assert "确认导入" not in viewer_page
    assert district.get(f"/imports/errors/{pk}").status_code in (302, 403)

    other = login("pingqiao_staff")
    assert other.get(f"/imports/show/{pk}").status_code == 404
    assert other.post(f"/imports/run/{pk}/commit").status_code == 404

    staff.post(f"/imports/run/{pk}/commit")
    run_burst_worker(stack, tmp_path, "imports")
    assert households(app, tenant, community) == ["3-2-101", "3-2-102", "3-2-103"]
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "导入结果" in page and "撤销本批导入" in page

    errors = staff.get(f"/imports/errors/{pk}")
    assert errors.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(errors.data)).active
    text = "\n".join(" ".join(str(c) for c in row if c is not None)
                     for row in sheet.iter_rows(values_only=True))
    assert "12345" in text and "5" in text and "手机号" in text   # Excel row 5, the reason

    again = upload(staff, ledger(community), "台账（重传）.csv")
    assert batch_id(again) == pk                        # the same bytes: the same batch
    assert "没有重复导入" in staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert households(app, tenant, community) == ["3-2-101", "3-2-102", "3-2-103"]

    staff.post(f"/imports/run/{pk}/rollback")
    run_burst_worker(stack, tmp_path, "imports")
    assert households(app, tenant, community) == []
    assert "已撤销" in staff.get(f"/imports/show/{pk}").get_data(as_text=True)


def test_a_renamed_text_file_fails_in_words_and_writes_nothing(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., Any]) -> None:
    staff = login("pingdong_staff")
    pk = batch_id(upload(staff, "这不是表格\n".encode() * 20, "台账.xlsx"))
    run_burst_worker(stack, tmp_path, "imports")
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "失败" in page and "文件内容不是Excel表格" in page
    assert "确认导入" not in page


def test_an_empty_upload_is_refused_on_the_list_page(login: Callable[..., Any]) -> None:
    staff = login("pingdong_staff")
    assert upload(staff, b"", "台账.csv").status_code == 302
    page = staff.get("/imports/list/").get_data(as_text=True)
    assert "文件是空的（0字节）" in page
    staff.post("/imports/upload", data={})
    assert "请选择要导入的台账文件" in staff.get("/imports/list/").get_data(as_text=True)


def test_with_redis_down_the_pages_serve_and_the_upload_says_the_queue_is_unavailable(
        make_app: Callable[..., Flask], login: Callable[..., Any]) -> None:
    no_redis = make_app(ONEMETER_REDIS_URL="redis://127.0.0.1:1/0")
    staff = login("pingdong_staff", application=no_redis)
    assert staff.get("/imports/list/").status_code == 200
    response = upload(staff, ledger(f"无队列{uuid.uuid4().hex[:6]}"))
    pk = batch_id(response)
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "任务队列暂不可用（Redis 无法连接）" in page
    assert "已上传" in page and "重新预览" in page   # stored, and can be previewed later


def _owner_names(app: Flask, tenant_id: int, community: str) -> list[str | None]:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        return sorted(db.session.scalars(
            sa.select(Household.owner_name).join(
                Community, Community.id == Household.community_id)
            .where(Community.name == community)))


def test_a_clerk_fixes_the_column_choices_saves_them_and_reuses_them_on_the_next_file(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., Any],
        tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    community = f"列对应{uuid.uuid4().hex[:6]}"
    name = f"产权人作户主{uuid.uuid4().hex[:4]}"
    staff = login("pingdong_staff")
    # 户主 is the tenant living there; the clerk wants the property owner (产权人), which
    # the automatic header match does not know.
    first = ("小区,楼栋,单元,室号,户主,产权人,联系电话\n"
             f"{community},1,1,101,租户甲,产权人甲,13800000001\n"
             f"{community},1,1,102,租户乙,产权人乙,13800000002\n").encode()
    pk = batch_id(upload(staff, first, "一月.csv"))
    run_burst_worker(stack, tmp_path, "imports")
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "列对应" in page and "租户甲" in page and "产权人甲" not in page

    doubled = staff.post(f"/imports/mapping/{pk}", data={
        "col_0": "community", "col_1": "building", "col_2": "unit", "col_3": "room",
        "col_4": "owner_name", "col_5": "owner_name", "col_6": "phone"},
        follow_redirects=True).get_data(as_text=True)
    assert "同时对应了E列和F列" in doubled

    chosen = {"col_0": "community", "col_1": "building", "col_2": "unit", "col_3": "room",
              "col_4": "", "col_5": "owner_name", "col_6": "phone", "profile_name": name}
    saved = staff.post(f"/imports/mapping/{pk}", data=chosen, follow_redirects=True)
    assert f"已保存列对应方案“{name}”" in saved.get_data(as_text=True)
    run_burst_worker(stack, tmp_path, "imports")
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "产权人甲" in page and "租户甲" not in page

    profiles = staff.get("/imports/profiles/list/").get_data(as_text=True)
    assert name in profiles and "户主姓名 ← 产权人" in profiles
    listing = staff.get("/imports/list/").get_data(as_text=True)
    profile_id = int(re.search(rf'<option value="(\d+)"[^>]*>{name}</option>', listing).group(1))

    # Next month's file puts the columns in another order; the profile finds them by header.
    second = ("产权人,联系电话,户主,小区,楼栋,单元,室号\n"
              f"产权人丙,13800000003,租户丙,{community},1,1,103\n").encode()
    response = staff.post("/imports/upload", data={
        "ledger": (io.BytesIO(second), "二月.csv"), "profile": str(profile_id)},
        content_type="multipart/form-data")
    second_pk = batch_id(response)
    run_burst_worker(stack, tmp_path, "imports")
    staff.post(f"/imports/run/{second_pk}/commit")
    run_burst_worker(stack, tmp_path, "imports")
    assert _owner_names(app, tenant, community) == ["产权人丙"]

    # Another sub-district neither sees nor uses the profile.
    other = login("pingqiao_staff")
    assert name not in other.get("/imports/profiles/list/").get_data(as_text=True)
    assert name not in other.get("/imports/list/").get_data(as_text=True)
    refused = other.post("/imports/upload", data={
        "ledger": (io.BytesIO(second), "二月.csv"), "profile": str(profile_id)},
        content_type="multipart/form-data")
    assert refused.status_code == 404
    assert "二月.csv" not in other.get("/imports/list/").get_data(as_text=True)  # nothing stored
    assert other.post(f"/imports/mapping/{pk}", data=chosen).status_code == 404


def test_the_dry_run_names_hidden_rows_and_shows_error_cells_as_excel_shows_them(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., Any],
        tenant_ids: dict[str, int]) -> None:
    community = f"隐藏行{uuid.uuid4().hex[:6]}"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["小区", "楼栋", "单元", "室号", "户主", "联系电话"])
    for n in range(1, 6):
        ws.append([community, 1, 1, 100 + n, "#N/A" if n == 4 else f"住户{n}", None])
    for row in (3, 4):
        ws.row_dimensions[row].hidden = True
    buffer = io.BytesIO()
    wb.save(buffer)
    staff = login("pingxi_staff")
    pk = batch_id(upload(staff, buffer.getvalue(), "台账.xlsx"))
    run_burst_worker(stack, tmp_path, "imports")

    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    counts = re.search(r'om-counts.*?</table>', page, re.S).group(0)
    assert re.findall(r"<td>([\d,]+) 行</td>", counts) == ["4", "0", "0", "1"]
    assert "有2行在Excel中是隐藏的（第3、4行）" in page
    assert "Excel的错误值#N/A" in page and households(app, tenant_ids["pingxi"], community) == []
