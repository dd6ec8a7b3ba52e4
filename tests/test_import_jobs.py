"""Imports end to end through the pages' API (onemeter.imports.service), real Redis and real
`onemeter worker --queue imports` processes, on this run's database: exact counts, the
same file uploaded twice, a second file's updates, rollback to the exact rows before, a
refused rollback, a worker killed with SIGKILL mid-commit, a hostile file, tenant isolation
and Redis down.
"""

from __future__ import annotations

import io
import resource
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from flask import Flask
from rq import Queue
from sqlalchemy.orm import Session

from onemeter.database import db
from onemeter.imports.models import (
    COMMITTED,
    COMMITTING,
    FAILED,
    PREVIEWED,
    ROLLED_BACK,
    UPLOADED,
    ImportBatch,
    ImportRow,
)
from onemeter.imports.service import (
    ImportRefused,
    batch_file,
    batch_rows,
    error_file,
    error_workbook_bytes,
    get_batch,
    list_batches,
    settle,
    start_commit,
    start_preview,
    start_rollback,
    start_upload,
)
from onemeter.jobs import (
    CANCELLED,
    FINISHED,
    STARTED,
    JobProgress,
    JobRun,
    QueueUnavailable,
    cancel_job,
    enqueue_job,
    job_progress,
    queue_name,
    redis_connection,
    rerun_job,
)
from onemeter.jobs import (
    FAILED as RUN_FAILED,
)
from onemeter.registry.models import Community, Household, MeterAccount
from onemeter.security import OMUser
from onemeter.tenancy import TenantScope, use_scope
from onemeter_worker.runner import limit_memory
from tests.support.stack import Stack
from tests.support.worker import run_burst_worker, worker_process
from tests.test_import_ledger import (
    FIRST_COUNTS,
    ID_1,
    ledger_rows,
    ledger_xlsx,
    names,
    second_rows,
    seed,
    snapshot,
)

WAIT = 180.0


# --- helpers ----------------------------------------------------------------------------------

@contextmanager
def tenant_scope(app: Flask, tenant_id: int) -> Iterator[Any]:
    """A fresh app context (so a fresh session) under one tenant's read/write scope."""
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        try:
            yield db.session
        finally:
            db.session.rollback()


def read_row(app: Flask, model: type, row_id: int) -> dict[str, Any]:
    """A row as the database holds it now (fresh session, every tenant readable)."""
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        row = session.get(model, row_id)
        assert row is not None, f"{model.__name__} {row_id} does not exist"
        return {c.key: getattr(row, c.key) for c in model.__table__.columns}


def user_id(app: Flask, username: str) -> int:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return db.session.query(OMUser).filter_by(username=username).one().id


def wait_for(condition: Callable[[], Any], what: str, explain: Callable[[], str],
             timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting ({timeout:.0f} s) for {what}\n{explain()}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def empty_imports_queue(app: Flask) -> Iterator[None]:
    def empty() -> None:
        with app.app_context():
            Queue(queue_name("imports", app), connection=redis_connection(app)).empty()

    empty()
    yield
    empty()


@pytest.fixture
def staff(app: Flask) -> int:
    return user_id(app, "pingqiao_staff")


@pytest.fixture
def tenant(tenant_ids: dict[str, int]) -> int:
    return tenant_ids["pingqiao"]


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:6]


def upload(app: Flask, tenant_id: int, user: int, data: bytes,
           filename: str = "平桥办事处台账.xlsx") -> tuple[int, bool, str | None]:
    with tenant_scope(app, tenant_id) as session:
        batch = start_upload(session, tenant_id, user, filename, io.BytesIO(data))
        return batch.id, batch.reused, batch.notice


def step(app: Flask, tenant_id: int, start: Callable[..., JobRun], batch_id: int,
         user: int, **kwargs: Any) -> int:
    with tenant_scope(app, tenant_id):
        batch = get_batch(db.session, batch_id)
        return start(batch, user_id=user, **kwargs).id


def refused(app: Flask, tenant_id: int, start: Callable[..., JobRun], batch_id: int,
            user: int) -> str:
    with tenant_scope(app, tenant_id), pytest.raises(ImportRefused) as caught:
        start(get_batch(db.session, batch_id), user_id=user)
    return str(caught.value)


def tenant_snapshot(app: Flask, tenant_id: int) -> dict[str, dict[int, tuple]]:
    with tenant_scope(app, tenant_id):
        return snapshot(tenant_id)


def import_rows(app: Flask, tenant_id: int, batch_id: int) -> dict[int, dict[str, Any]]:
    with tenant_scope(app, tenant_id) as session:
        return {r.row_number: {c.key: getattr(r, c.key) for c in ImportRow.__table__.columns}
                for r in session.execute(sa.select(ImportRow)
                                         .where(ImportRow.batch_id == batch_id)).scalars()}


def batches_of(app: Flask, tenant_id: int) -> list[int]:
    with tenant_scope(app, tenant_id) as session:
        return sorted(session.execute(sa.select(ImportBatch.id)).scalars())


# --- 1. a realistic ledger, start to finish ------------------------------------------------------

def test_a_ledger_is_previewed_committed_updated_and_rolled_back_through_a_real_worker(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int, tag: str) -> None:
    n = names(tag)
    with tenant_scope(app, tenant):
        ids = seed(tenant, n)
    before_import = tenant_snapshot(app, tenant)
    data = ledger_xlsx(ledger_rows(n))

    batch_id, reused, _ = upload(app, tenant, staff, data)
    assert not reused
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == UPLOADED and batch["tenant_id"] == tenant
    assert batch["created_by"] == staff and batch["size"] == len(data)
    with app.app_context():
        stored = batch_file(_detached(batch))
    assert stored.read_bytes() == data
    assert stored.parent == stack.work / "uploads" / str(tenant) / "imports"

    # Commit before a preview is refused; a double submit of the preview starts one job.
    assert "请先预览" in refused(app, tenant, start_commit, batch_id, staff)
    preview_run = step(app, tenant, start_preview, batch_id, staff)
    assert step(app, tenant, start_preview, batch_id, staff) == preview_run
    assert "预览还没有完成" in refused(app, tenant, start_commit, batch_id, staff)
    run = read_row(app, JobRun, preview_run)
    assert (run["kind"], run["queue"], run["idempotency_key"], run["params"]) == (
        "imports.preview", "imports", f"imports.preview:{batch_id}", {"batch_id": batch_id})

    run_burst_worker(stack, tmp_path, "imports")
    run = read_row(app, JobRun, preview_run)
    assert run["state"] == FINISHED, run
    assert run["counts"]["rows_read"] == run["counts"]["rows_validated"] == 8
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == PREVIEWED, batch
    assert batch["counts"] == FIRST_COUNTS == batch["preview_counts"]
    assert batch["preview_job_id"] == preview_run
    assert [s["row"] for s in batch["samples"]["error"]] == [7, 9]
    assert batch["samples"]["error"][0]["reason"] == "与第5行重复"
    assert batch["samples"]["update"][0]["changes"] == {"phone": ["13600000000", "13611112222"]}
    with app.app_context():
        errors = openpyxl.load_workbook(error_file(_detached(batch))).active
    assert [r[0] for r in errors.iter_rows(min_row=4, values_only=True)] == [7, 9]
    assert tenant_snapshot(app, tenant) == before_import  # the preview wrote nothing

    commit_run = step(app, tenant, start_commit, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    run = read_row(app, JobRun, commit_run)
    assert run["state"] == FINISHED, run
    assert run["idempotency_key"] == f"imports.commit:{batch_id}"
    assert run["counts"]["rows_written"] == 5 and run["counts"]["rows_read"] == 8
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == COMMITTED and batch["committed_at"] is not None
    assert {k: batch["counts"][k] for k in FIRST_COUNTS} == FIRST_COUNTS
    after_first = tenant_snapshot(app, tenant)
    created = set(after_first["om_household"]) - set(before_import["om_household"])
    assert len(created) == 4
    assert len(after_first["om_community"]) == len(before_import["om_community"]) + 1
    rows = import_rows(app, tenant, batch_id)
    assert {k: r["action"] for k, r in rows.items()} == {
        5: "create", 6: "create", 7: "error", 9: "error", 10: "unchanged", 12: "update",
        13: "create", 14: "create"}
    assert rows[12]["before"]["phone"] == "13600000000"
    assert rows[12]["household_id"] == ids["changed"]
    assert {r["household_id"] for r in rows.values() if r["action"] == "create"} == created

    with tenant_scope(app, tenant) as session:
        committed = get_batch(session, batch_id)
        assert [r.row_number for r in batch_rows(session, committed, action="error")] == [7, 9]
        assert len(batch_rows(session, committed)) == 8
        assert batch_id in [b.id for b in list_batches(session)]
        workbook = openpyxl.load_workbook(io.BytesIO(error_workbook_bytes(committed))).active
        assert [r[0] for r in workbook.iter_rows(min_row=4, values_only=True)] == [7, 9]

    # Never twice; no preview after the commit.
    assert "不能重复导入" in refused(app, tenant, start_commit, batch_id, staff)
    assert "不能再预览" in refused(app, tenant, start_preview, batch_id, staff)

    # The same bytes again: recognized, the same batch, nothing new anywhere.
    count = batches_of(app, tenant)
    again_id, reused, notice = upload(app, tenant, staff, data, "台账（再传一次）.xlsx")
    assert (again_id, reused) == (batch_id, True)
    assert "已于" in notice and "没有重复导入" in notice and f"#{batch_id}" in notice
    assert batches_of(app, tenant) == count
    assert tenant_snapshot(app, tenant) == after_first

    # A second file updating some households.
    second_id, _, _ = upload(app, tenant, staff, ledger_xlsx(second_rows(n)))
    step(app, tenant, start_preview, second_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, ImportBatch, second_id)["counts"]["update"] == 2
    step(app, tenant, start_commit, second_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    second = read_row(app, ImportBatch, second_id)
    assert second["state"] == COMMITTED, second
    assert {k: second["counts"][k] for k in ("create", "update", "unchanged", "error")} == {
        "create": 1, "update": 2, "unchanged": 1, "error": 0}
    rows2 = import_rows(app, tenant, second_id)
    assert rows2[5]["before"]["owner_name"] == "张三" and rows2[5]["after"]["owner_name"] == \
        "张三丰"
    assert rows2[6]["before"]["opted_out"] is False and rows2[6]["after"]["opted_out"] is True
    assert rows2[5]["before"]["id_number"] == rows2[5]["after"]["id_number"] == ID_1

    # The first batch cannot be undone while the second has changed its households.
    message = refused(app, tenant, start_rollback, batch_id, staff)
    assert "不能撤销这批导入" in message and "第5行新增的住户" in message

    # Undo the second, then the first: every row exactly as before each import.
    rollback_run = step(app, tenant, start_rollback, second_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, JobRun, rollback_run)["state"] == FINISHED
    assert read_row(app, ImportBatch, second_id)["state"] == ROLLED_BACK
    assert tenant_snapshot(app, tenant) == after_first
    step(app, tenant, start_rollback, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == ROLLED_BACK and batch["rolled_back_at"] is not None
    assert tenant_snapshot(app, tenant) == before_import
    assert "已经撤销过了" in refused(app, tenant, start_rollback, batch_id, staff)
    assert "已撤销" in refused(app, tenant, start_commit, batch_id, staff)

    # After a rollback the same bytes start a new batch.
    fresh_id, reused, _ = upload(app, tenant, staff, data)
    assert not reused and fresh_id != batch_id


def _detached(values: dict[str, Any]) -> ImportBatch:
    """An ImportBatch carrying `values` (for the file-path helpers)."""
    return ImportBatch(**{k: v for k, v in values.items()
                          if k in {"id", "tenant_id", "file_key", "error_file"}})


# --- 2. a refused rollback ------------------------------------------------------------------

def test_a_rollback_is_refused_when_a_created_household_got_a_meter_account_afterwards(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int, tag: str) -> None:
    n = names(tag)
    with tenant_scope(app, tenant):
        seed(tenant, n)
    batch_id, _, _ = upload(app, tenant, staff, ledger_xlsx(ledger_rows(n)))
    step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    step(app, tenant, start_commit, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, ImportBatch, batch_id)["state"] == COMMITTED
    household_id = import_rows(app, tenant, batch_id)[6]["household_id"]

    # The rollback job is started, and before it runs the household gets its water account:
    # the job, under its lock, sees it and refuses; nothing changes.
    run_id = step(app, tenant, start_rollback, batch_id, staff)
    with tenant_scope(app, tenant) as session:
        session.add(MeterAccount(tenant_id=tenant, household_id=household_id, utility="water",
                                 account_no=f"4115{uuid.uuid4().int % 10**8:08d}"))
        session.commit()
    before = tenant_snapshot(app, tenant)
    run_burst_worker(stack, tmp_path, "imports")
    run = read_row(app, JobRun, run_id)
    assert run["state"] == FINISHED and run["counts"] == {"refused": 1}, run
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == COMMITTED
    assert f"第6行新增的住户（{n['gui']} 3-2-103）已有供水户表" in batch["message"]
    assert tenant_snapshot(app, tenant) == before

    # Asked again, the page is told at once, without a job.
    message = refused(app, tenant, start_rollback, batch_id, staff)
    assert "不能撤销这批导入" in message and "已有供水户表" in message
    assert read_row(app, ImportBatch, batch_id)["state"] == COMMITTED


# --- 3. kill -9 in the middle of a commit ------------------------------------------------------

def big_ledger(n: dict[str, str], households: int) -> bytes:
    rows = [[i + 1, f"住户{i}", n["gui"] if i % 2 else n["xin"], str(i % 30 + 1), str(i % 4 + 1),
             str(1000 + i), f"13{i % 10}{i:08d}", None, None, None] for i in range(households)]
    return ledger_xlsx(rows)


def households_in(app: Flask, tenant_id: int, community_names: list[str]) -> int:
    with tenant_scope(app, tenant_id) as session:
        return session.execute(
            sa.select(sa.func.count()).select_from(Household).join(
                Community, Community.id == Household.community_id)
            .where(Community.name.in_(community_names))).scalar()


#: Steps of 100 rows with a pause, in blocks of 700 rows: a 2,000-row commit is caught while
#: its blocks are still being planned (in the planning thread) and written.
SLOW = {"ONEMETER_IMPORT_CHUNK_ROWS": "100", "ONEMETER_IMPORT_CHUNK_PAUSE": "0.25",
        "ONEMETER_IMPORT_BLOCK_ROWS": "700"}


def test_a_worker_killed_mid_commit_leaves_no_household_and_the_commit_can_run_again(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int, tag: str) -> None:
    n = names(tag)
    total = 2000
    batch_id, _, _ = upload(app, tenant, staff, big_ledger(n, total))
    step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["counts"]["create"] == total, batch
    before = tenant_snapshot(app, tenant)

    run_id = step(app, tenant, start_commit, batch_id, staff)
    with worker_process(stack, tmp_path, "imports", "killed", env=SLOW) as worker:
        # The page's view of the progress: on SQLite, where the commit holds the write lock,
        # it comes from Redis (onemeter.jobs.job_progress), on PostgreSQL from the row.
        shown = wait_for(lambda: writing(app, run_id), "the commit to be writing", worker.log)
        assert 0 < shown.counts["rows_written"] < total
        horses = worker.horses()
        assert len(horses) == 1, horses
        horses[0].send_signal(signal.SIGKILL)
        run = wait_for(lambda: (r := read_row(app, JobRun, run_id))["state"] == RUN_FAILED and r,
                       "the JobRun to be marked failed", worker.log)
        assert worker.wait() == 0, worker.log()
    assert "任务中断" in run["error"] and "可重新运行" in run["error"], run["error"]

    # Nothing of the import is left: no household, no community, no row, batch not committed.
    assert households_in(app, tenant, [n["gui"], n["xin"]]) == 0
    assert tenant_snapshot(app, tenant) == before
    assert import_rows(app, tenant, batch_id) == {}
    assert read_row(app, ImportBatch, batch_id)["state"] == COMMITTING

    # The failed run is re-run (as the jobs page does) and this time the commit goes through.
    with tenant_scope(app, tenant):
        again, new = rerun_job(db.session.get(JobRun, run_id), user_id=staff)
        again_id = again.id
    assert new and again_id != run_id
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, JobRun, again_id)["state"] == FINISHED
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == COMMITTED and batch["commit_job_id"] == again_id
    assert households_in(app, tenant, [n["gui"], n["xin"]]) == total
    assert read_row(app, JobRun, run_id)["state"] == RUN_FAILED  # the history stays


def writing(app: Flask, run_id: int) -> JobProgress | None:
    """The job's progress as its page shows it, once it runs and has written rows."""
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        run = db.session.get(JobRun, run_id)
        shown = job_progress(run)
        return shown if run.state == STARTED and shown.counts.get("rows_written") else None


def test_a_commit_cancelled_half_way_writes_nothing_and_the_batch_is_previewed_again(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int, tag: str) -> None:
    """On SQLite too, where the commit holds the database's one write lock: the cancel flags
    the job in Redis, the job stops at its next step and rolls back, and only then does the
    cancel's UPDATE of the JobRun get the database."""
    n = names(tag)
    batch_id, _, _ = upload(app, tenant, staff, big_ledger(n, 1000))
    step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    run_id = step(app, tenant, start_commit, batch_id, staff)
    with worker_process(stack, tmp_path, "imports", "cancelled", env=SLOW) as worker:
        wait_for(lambda: writing(app, run_id), "the commit to be writing", worker.log)
        with tenant_scope(app, tenant) as session:
            assert cancel_job(session.get(JobRun, run_id))
        run = wait_for(lambda: (r := read_row(app, JobRun, run_id))["ended_at"] and r,
                       "the cancelled job to end", worker.log)
        assert worker.wait() == 0, worker.log()
    assert run["state"] == CANCELLED and "未写入任何数据" in run["message"], run
    assert households_in(app, tenant, [n["gui"], n["xin"]]) == 0
    assert import_rows(app, tenant, batch_id) == {}
    with tenant_scope(app, tenant) as session:
        batch = settle(get_batch(session, batch_id))
        assert batch.state == PREVIEWED and "已取消" in batch.message


def test_a_commit_whose_job_failed_is_settled_back_to_previewed_and_can_start_again(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int, tag: str) -> None:
    """The page's path after a kill: the batch shows as previewed with a note; 导入 again."""
    n = names(tag)
    batch_id, _, _ = upload(app, tenant, staff, big_ledger(n, 30))
    step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    run_id = step(app, tenant, start_commit, batch_id, staff)
    with tenant_scope(app, tenant) as session:  # as the worker's crash handler leaves it
        run = session.get(JobRun, run_id)
        run.state, run.error = RUN_FAILED, "任务中断（工作进程异常退出），未写入部分数据，可重新运行。"
        session.commit()
        settle(get_batch(session, batch_id))
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == PREVIEWED
    assert f"上次的导入任务 #{run_id} 失败" in batch["message"]
    again = step(app, tenant, start_commit, batch_id, staff)
    assert again != run_id
    assert read_row(app, JobRun, again)["idempotency_key"] == f"imports.commit:{batch_id}"
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, ImportBatch, batch_id)["state"] == COMMITTED
    assert households_in(app, tenant, [n["gui"], n["xin"]]) == 30


# --- 4. hostile and broken files ----------------------------------------------------------------

def test_a_text_file_renamed_xlsx_fails_its_batch_with_the_readers_message_and_writes_nothing(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int) -> None:
    before = tenant_snapshot(app, tenant)
    data = f"小区,室号\n桂园小区{uuid.uuid4().hex[:6]},102\n".encode()
    batch_id, _, _ = upload(app, tenant, staff, data, "台账.xlsx")
    run_id = step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, JobRun, run_id)["counts"] == {"file_refused": 1}
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == FAILED and batch["failed_at"] is not None
    assert batch["message"].startswith("文件内容不是Excel表格，可能是改了扩展名的文本文件")
    assert tenant_snapshot(app, tenant) == before
    assert import_rows(app, tenant, batch_id) == {}
    assert "已失败" in refused(app, tenant, start_commit, batch_id, staff)
    assert "已失败" in refused(app, tenant, start_preview, batch_id, staff)
    # A failed batch does not hold the file: the same bytes make a new batch.
    again_id, reused, _ = upload(app, tenant, staff, data, "台账.xlsx")
    assert not reused and again_id != batch_id


def test_a_file_that_gets_calamine_to_ask_for_gigabytes_fails_its_job_under_the_memory_cap(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int) -> None:
    """The backstop behind the reader's checks (ONEMETER_JOB_MEMORY_LIMIT_MB): a reference
    the scan does not read (lowercase, as calamine accepts it) makes calamine allocate a grid
    of 4,000 × 16,384 cells, about 2 GB. Under a 3 GiB cap the horse aborts, the worker lives
    on, the JobRun says why in Chinese, and nothing is written."""
    wb = openpyxl.Workbook()
    wb.active.append(["小区", "室号"])
    wb.active.append([f"桂园小区{uuid.uuid4().hex[:6]}", 102])
    buffer = io.BytesIO()
    wb.save(buffer)
    with zipfile.ZipFile(buffer) as zf:
        xml = zf.read("xl/worksheets/sheet1.xml").replace(
            b"</sheetData>", b'<row r="4000"><c r="xfd4000"><v>1</v></c></row></sheetData>')
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, xml if info.filename == "xl/worksheets/sheet1.xml"
                         else src.read(info))
    before = tenant_snapshot(app, tenant)
    batch_id, _, _ = upload(app, tenant, staff, out.getvalue(), "台账.xlsx")
    run_id = step(app, tenant, start_preview, batch_id, staff)
    log = run_burst_worker(stack, tmp_path, "imports",
                           env={"ONEMETER_JOB_MEMORY_LIMIT_MB": "3072"})
    run = read_row(app, JobRun, run_id)
    assert run["state"] == RUN_FAILED, log[-3000:]
    assert run["error"].startswith("任务中断：读取文件时内存超出上限"), run["error"]
    assert "(signal 6)" in run["error"]
    assert tenant_snapshot(app, tenant) == before
    assert import_rows(app, tenant, batch_id) == {}
    # The batch says why, and is not offered a preview that would only abort again.
    assert "已失败" in refused(app, tenant, start_preview, batch_id, staff)
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == FAILED and batch["message"].startswith("任务中断：读取文件时内存超出上限")


def test_the_memory_cap_is_set_below_the_hard_limit_and_skipped_when_too_small() -> None:
    code = textwrap.dedent("""
        import resource, sys
        from onemeter_worker.runner import limit_memory
        print(limit_memory(int(sys.argv[1])), resource.getrlimit(resource.RLIMIT_AS)[0])
    """)
    done = subprocess.run([sys.executable, "-c", code, "4096"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == [str(4096 << 20)] * 2
    done = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["None", str(resource.RLIM_INFINITY)]  # below what it uses
    assert limit_memory(0) is None


def test_an_empty_or_oversized_upload_is_refused_and_leaves_no_file(
        app: Flask, make_app: Callable[..., Flask], stack: Stack, tenant: int,
        staff: int) -> None:
    folder = stack.work / "uploads" / str(tenant) / "imports"
    count = batches_of(app, tenant)
    files = set(folder.glob("*")) if folder.exists() else set()
    with tenant_scope(app, tenant) as session, pytest.raises(ImportRefused, match="文件是空的"):
        start_upload(session, tenant, staff, "台账.xlsx", io.BytesIO(b""))
    small = make_app(ONEMETER_IMPORT_MAX_BYTES=1000)
    with tenant_scope(small, tenant) as session, \
            pytest.raises(ImportRefused, match="文件太大：超过1,000 字节的上限"):
        start_upload(session, tenant, staff, "台账.xlsx", io.BytesIO(b"x" * 1001))
    assert batches_of(app, tenant) == count
    assert (set(folder.glob("*")) if folder.exists() else set()) == files


def test_a_sheet_without_a_recognizable_header_stays_uploaded_for_a_preview_with_chosen_columns(
        app: Flask, stack: Stack, tmp_path: Path, tenant: int, staff: int, tag: str) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["名称", "楼", "门牌"])
    wb.active.append([f"桂园小区{tag}", "3", "101"])
    buffer = io.BytesIO()
    wb.save(buffer)
    batch_id, _, _ = upload(app, tenant, staff, buffer.getvalue())
    step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == UPLOADED, batch
    assert "没有找到表头" in batch["message"] and "指定各列对应的字段" in batch["message"]

    with tenant_scope(app, tenant), pytest.raises(ImportRefused, match="未知的字段"):
        start_preview(get_batch(db.session, batch_id), user_id=staff,
                      mapping_overrides={"colour": "名称"})
    step(app, tenant, start_preview, batch_id, staff,
         mapping_overrides={"community": "名称", "building": "楼", "room": 2})
    run_burst_worker(stack, tmp_path, "imports")
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == PREVIEWED, batch
    assert batch["counts"]["create"] == 1
    assert batch["mapping_overrides"] == {"community": "名称", "building": "楼", "room": 2}


# --- 5. tenants ---------------------------------------------------------------------------------

def test_a_batch_is_invisible_and_unusable_from_another_sub_district(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int], staff: int,
        tag: str) -> None:
    pingqiao, pingxi = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    other = user_id(app, "pingxi_staff")
    n = names(tag)
    batch_id, _, _ = upload(app, pingqiao, staff, ledger_xlsx(ledger_rows(n)))

    with tenant_scope(app, pingxi) as session:
        assert get_batch(session, batch_id) is None
        assert batch_id not in [b.id for b in list_batches(session, limit=1000)]
        assert session.execute(sa.select(ImportBatch).where(ImportBatch.id == batch_id)
                               ).first() is None
    with tenant_scope(app, pingqiao) as session:
        batch = get_batch(session, batch_id)
        session.expunge(batch)
    for start in (start_preview, start_commit, start_rollback):
        with tenant_scope(app, pingxi), pytest.raises(ImportRefused, match="其他办事处"):
            start(batch, user_id=other)
    with tenant_scope(app, pingxi) as session, pytest.raises(ImportRefused, match="其他办事处"):
        start_upload(session, pingqiao, other, "a.xlsx", io.BytesIO(b"data"))

    # The same bytes in another sub-district are that sub-district's own new batch.
    theirs, reused, _ = upload(app, pingxi, other, ledger_xlsx(ledger_rows(n)))
    assert not reused and theirs != batch_id

    # A job of pingxi naming pingqiao's batch finds nothing and writes nothing.
    with tenant_scope(app, pingxi):
        run_id = enqueue_job("imports.preview", tenant_id=pingxi, user_id=other,
                             queue="imports", params={"batch_id": batch_id}).id
    run_burst_worker(stack, tmp_path, "imports")
    run = read_row(app, JobRun, run_id)
    assert run["state"] == RUN_FAILED and "不存在" in run["error"], run
    assert read_row(app, ImportBatch, batch_id)["state"] == UPLOADED

    # pingqiao's own commit lands in pingqiao only.
    step(app, pingqiao, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    step(app, pingqiao, start_commit, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, ImportBatch, batch_id)["state"] == COMMITTED
    rows = import_rows(app, pingqiao, batch_id)
    assert {r["tenant_id"] for r in rows.values()} == {pingqiao}
    assert import_rows(app, pingxi, batch_id) == {}
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        owners = set(session.execute(
            sa.select(Household.tenant_id).join(Community, Community.id ==
                                                Household.community_id)
            .where(Community.name.in_([n["gui"], n["xin"]]))).scalars())
    assert owners == {pingqiao}


# --- 6. Redis down -------------------------------------------------------------------------------

def test_with_redis_down_starting_a_preview_says_so_and_the_batch_stays_previewable(
        app: Flask, make_app: Callable[..., Flask], stack: Stack, tmp_path: Path, tenant: int,
        staff: int, tag: str) -> None:
    no_redis = make_app(ONEMETER_REDIS_URL="redis://127.0.0.1:1/0")
    n = names(tag)
    batch_id, _, _ = upload(no_redis, tenant, staff, ledger_xlsx(ledger_rows(n)))
    with tenant_scope(no_redis, tenant), \
            pytest.raises(QueueUnavailable, match="任务队列暂不可用（Redis 无法连接）"):
        start_preview(get_batch(db.session, batch_id), user_id=staff)
    batch = read_row(app, ImportBatch, batch_id)
    assert batch["state"] == UPLOADED and batch["message"] is None

    # Redis back: the same batch previews.
    step(app, tenant, start_preview, batch_id, staff)
    run_burst_worker(stack, tmp_path, "imports")
    assert read_row(app, ImportBatch, batch_id)["state"] == PREVIEWED


def test_the_commit_progress_bar_only_grows_while_blocks_are_checked_and_written() -> None:
    """A commit reports its blocks' checks and writes in turns; the bar (per mille) adds the
    two phases' shares, so it never goes back, and ends with the exact counts."""
    from onemeter_worker.jobs.imports import _Reporter

    class Recorder:  # the JobContext's two calls the reporter makes
        def __init__(self) -> None:
            self.bars: list[tuple[int, dict[str, int]]] = []
            self.messages: list[str] = []

        def check_cancelled(self) -> None:
            pass

        def progress(self, done: int, total: int, counts: dict[str, int],
                     message: str) -> None:
            self.bars.append((done, counts))
            self.messages.append(message)

    ctx = Recorder()
    report = _Reporter(ctx)  # type: ignore[arg-type]
    report.read(120)
    report.validating(0, 110, "已读取")
    report.validating(25, 110, "正在校验…")
    report.writing(20, 110, "已写入 20 行")
    report.validating(75, 110, "正在校验…")
    report.writing(60, 110, "已写入 60 行")
    report.validating(100, 100, "校验完成")  # the data rows found: 100 of the 110 below the header
    report.writing(70, 95, "已写入 70 行")
    report.writing(95, 95, "导入完成")
    bars = [bar for bar, _ in ctx.bars]
    assert bars == sorted(bars) and bars[0] == 200 and bars[-1] == 1000, bars
    assert ctx.bars[-1][1] == {"rows_read": 100, "rows_validated": 100, "rows_written": 95}
    assert ctx.messages[0] == "已读取 120 行数据"
    report.read(12_345)
    assert ctx.messages[-1] == "已读取 12,345 行数据"  # numbers in local form


def test_on_sqlite_a_long_write_never_locks_the_readers_out(tmp_path: Path) -> None:
    """The embedded install's SQLite runs with a write-ahead log (`onemeter.database`): while
    one connection holds a large uncommitted write — an import — another still reads the last
    committed rows at once. In rollback-journal mode the writer, having spilled its page cache,
    locks every reader out ("database is locked"): the pages and the job's own cancellation
    check failed during an import of 60,000 rows."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'embedded.db'}",
                              connect_args={"timeout": 0.5})
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE ledger (id INTEGER PRIMARY KEY, v TEXT)")
        connection.exec_driver_sql("INSERT INTO ledger (v) VALUES ('a'), ('b'), ('c')")
    with engine.connect() as writer, writer.begin():
        writer.exec_driver_sql(  # ≈24 MB: far more than SQLite's 2 MB page cache
            "INSERT INTO ledger (v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
            "SELECT i + 1 FROM n WHERE i < 60000) SELECT hex(randomblob(200)) FROM n")
        with engine.connect() as reader:
            assert reader.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert reader.exec_driver_sql("SELECT count(*) FROM ledger").scalar() == 3
        writer.rollback()
    engine.dispose()


def test_on_sqlite_a_second_writer_waits_for_an_import_longer_than_five_seconds(
        tmp_path: Path) -> None:
    """A page that saves while an import writes waits for the import's commit instead of
    failing after pysqlite's 5 s with "database is locked" (`SQLITE_BUSY_TIMEOUT_MS`)."""
    import threading

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'embedded.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE ledger (id INTEGER PRIMARY KEY, v TEXT)")
    holding = threading.Event()

    def long_import() -> None:
        with engine.begin() as writer:
            writer.exec_driver_sql("INSERT INTO ledger (v) VALUES ('import')")
            holding.set()
            time.sleep(6.0)

    thread = threading.Thread(target=long_import)
    thread.start()
    assert holding.wait(10)
    started = time.monotonic()
    with engine.begin() as page:
        page.exec_driver_sql("INSERT INTO ledger (v) VALUES ('page')")
    waited = time.monotonic() - started
    thread.join()
    with engine.connect() as reader:
        rows = reader.exec_driver_sql("SELECT v FROM ledger ORDER BY id").scalars().all()
    engine.dispose()
    assert rows == ["import", "page"] and waited > 4, (rows, waited)
