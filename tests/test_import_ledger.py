"""The household ledger import in process (onemeter.imports.ledger): a realistic ledger
planned, committed, updated by a second file, rolled back, and refused when later changes
depend on it — on the run's database (PostgreSQL with RLS as the app role, or SQLite).

The worker, Redis and the pages' API are exercised in tests/test_import_jobs.py; here the
same functions run in the test process so every count and image can be checked exactly.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import threading
import time
import uuid
from typing import Any

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa

from onemeter.database import db
from onemeter.imports.ledger import (
    BuilderFailed,
    ForkedBuild,
    RollbackRefused,
    commit_plan,
    commit_with_error_workbook,
    error_workbook,
    lock_tenant_imports,
    plan_and_commit,
    plan_households,
    rollback_batch,
)
from onemeter.imports.models import COMMITTED, ROLLED_BACK, ImportBatch, ImportRow
from onemeter.imports.reader import ImportFileError, RawSheet, read_table
from onemeter.registry.models import Community, Household, MeterAccount
from onemeter.registry.normalize import household_key

TITLE = "平桥区一户一表改造工作台账"
FILLER = "填报单位：平桥办事处  填报日期：2021年8月1日"
ID_1 = "11010519491231002X"
LIMITS = {"max_bytes": 5 * 1024 * 1024, "max_uncompressed_bytes": 50 * 1024 * 1024,
          "max_cells": 1_000_000}


# --- building ledgers -----------------------------------------------------------------------

def names(tag: str) -> dict[str, str]:
    """Community names unique to one test (the run's database is shared by the suite)."""
    return {"gui": f"桂园小区{tag}", "jian": f"建业小区{tag}", "xin": f"新村小区{tag}",
            "old": f"老城小区{tag}"}


def ledger_rows(n: dict[str, str]) -> list[list[Any]]:
    """The data rows of the first ledger (rows 5…16 of the sheet), as a clerk types them."""
    return [
        [1, "张三", n["gui"], "三号楼", "二单元", "１０２", "138 1234 5678", ID_1, "否", None],  # 5
        [2, "李四", n["gui"], "3#", 2, 103, 13912345678, None, None, "整栋改造"],             # 6
        [3, "王五", n["gui"], "3栋", "2单元", "102室", "13800000001", None, None, None],       # 7 dup 5
        ["小计", None, None, None, None, None, None, None, None, "3户"],                       # 8
        [4, "赵六", n["jian"], "1号楼", 1, 201, "1381234", None, None, "电话待核"],             # 9 bad
        [5, "钱七", n["jian"], "1", "1", "202", "13700000000", None, None, None],              # 10 same
        [None, None, None, None, None, None, None, None, None, None],                          # 11
        [6, "周九", n["jian"], "一号楼", "一单元", "203", "136 1111 2222", None, None, None],   # 12 upd
        [7, "孙八", n["xin"], "２", "１", "１０１", "13500000000", None, "是", None],           # 13 new
        [8, "吴十", n["xin"], "2号楼", "1单元", "102", None, None, None, None],               # 14 new
        ["合 计", "8户", None, None, None, None, None, None, None, None],                      # 15
        ["填表人：郑一    审核人：王二"],                                                       # 16
    ]


def ledger_xlsx(rows: list[list[Any]]) -> bytes:
    """Two merged title rows, a two-level header (住址 over 小区/楼栋/单元/室号, the other
    headers merged down over the empty cell below them), then `rows` from row 5."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "台账"
    ws.append([TITLE])
    ws.merge_cells("A1:J1")
    ws.append([FILLER])
    ws.merge_cells("A2:J2")
    ws.append(["序号", "户主姓名", "住址", None, None, None, "联系电话", "身份证号",
               "是否自愿不改造", "备注"])
    ws.append([None, None, "小区", "楼栋", "单元", "室号"])
    for col in "ABGHIJ":
        ws.merge_cells(f"{col}3:{col}4")
    ws.merge_cells("C3:F3")
    for row in rows:
        ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def sheet(data: bytes, filename: str = "台账.xlsx") -> RawSheet:
    return read_table(data, filename, **LIMITS)


def seed(tenant_id: int, n: dict[str, str]) -> dict[str, int]:
    """What the registry holds before the import: two of the ledger's communities and three
    households (one the ledger repeats unchanged, one it updates, one it does not mention)."""
    gui = Community(tenant_id=tenant_id, name=n["gui"], delivery_date=dt.date(2015, 5, 1))
    jian = Community(tenant_id=tenant_id, name=n["jian"], delivery_date=dt.date(2008, 9, 1))
    db.session.add_all([gui, jian])
    db.session.flush()
    same = Household(tenant_id=tenant_id, community_id=jian.id, building="1号楼", unit="1单元",
                     room="202室", owner_name="钱七", phone="13700000000")
    changed = Household(tenant_id=tenant_id, community_id=jian.id, building="1", unit="1",
                        room="203", owner_name="周九", phone="13600000000", opted_out=True)
    other = Household(tenant_id=tenant_id, community_id=gui.id, building="5", unit="1",
                      room="501", owner_name="冯五", phone="13300000000")
    db.session.add_all([same, changed, other])
    db.session.commit()
    return {"gui": gui.id, "jian": jian.id, "same": same.id, "changed": changed.id,
            "other": other.id}


HOUSEHOLD_COLUMNS = [c.name for c in Household.__table__.columns]
COMMUNITY_COLUMNS = [c.name for c in Community.__table__.columns]


def snapshot(tenant_id: int) -> dict[str, dict[int, tuple]]:
    """Every household and community row of the tenant, every column."""
    out = {}
    for table, columns in ((Household.__table__, HOUSEHOLD_COLUMNS),
                           (Community.__table__, COMMUNITY_COLUMNS)):
        rows = db.session.execute(sa.select(table).where(table.c.tenant_id == tenant_id)
                                  .order_by(table.c.id)).all()
        out[table.name] = {r.id: tuple(getattr(r, c) for c in columns) for r in rows}
    return out


def new_batch(tenant_id: int, data: bytes, filename: str = "台账.xlsx") -> ImportBatch:
    digest = uuid.uuid4().hex + uuid.uuid4().hex  # in-process tests do not store the file
    batch = ImportBatch(tenant_id=tenant_id, kind="households", filename=filename,
                        content_hash=digest, size=len(data),
                        file_key=f"{tenant_id}/imports/{digest}.xlsx", state="previewed",
                        counts={})
    db.session.add(batch)
    db.session.commit()
    return batch


def commit(tenant_id: int, data: bytes) -> tuple[ImportBatch, dict[str, int]]:
    """Plan and commit `data` as the worker does (lock, plan, write, one transaction)."""
    batch = new_batch(tenant_id, data)
    lock_tenant_imports(db.session, batch)
    plan = plan_households(db.session, tenant_id, sheet(data), lock=True)
    counts = commit_plan(db.session, batch, plan)
    db.session.commit()
    return batch, counts


@pytest.fixture
def tenant(pingdong_scope: int) -> int:
    """平东办事处's scope (read and write), inside an app context."""
    return pingdong_scope


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:6]


# --- the plan ---------------------------------------------------------------------------------

FIRST_COUNTS = {"rows": 8, "create": 4, "update": 1, "unchanged": 1, "error": 2,
                "duplicate_in_file": 1, "skipped": 4, "communities_create": 1}


def test_plan_of_a_realistic_ledger_counts_every_row_exactly_and_writes_nothing(
        tenant: int, tag: str) -> None:
    n = names(tag)
    ids = seed(tenant, n)
    before = snapshot(tenant)
    plan = plan_households(db.session, tenant, sheet(ledger_xlsx(ledger_rows(n))))

    assert plan.counts == FIRST_COUNTS
    actions = plan.rows["action"].to_dict()
    assert actions == {5: "create", 6: "create", 7: "error", 9: "error", 10: "unchanged",
                       12: "update", 13: "create", 14: "create"}
    assert plan.rows.at[7, "reason"] == "与第5行重复"
    assert plan.rows.at[9, "reason"].startswith("联系电话：手机号应为11位")
    assert plan.rows.at[12, "household_id"] == ids["changed"]
    assert plan.rows.at[12, "changes"] == {"phone": ["13600000000", "13611112222"]}
    assert plan.rows.at[12, "reason"] == "联系电话有变化"
    assert plan.rows.at[10, "household_id"] == ids["same"]
    # The natural key is the registry's: 三号楼/二单元/１０２ is 3-2-102.
    assert plan.rows.at[5, "natural_key"] == household_key("3#", "2", "102") == "3-2-102"
    assert plan.rows.at[13, "natural_key"] == "2-1-101"
    assert plan.rows.at[5, "phone"] == "13812345678"
    assert plan.new_communities == {n["xin"]: None}
    assert dict(plan.data.skipped) == {8: "小计/合计行", 11: "空行", 15: "小计/合计行",
                                       16: "表尾（填表人/审核人/备注）"}
    assert plan.mapping["header_rows"] == [3, 4]
    assert plan.mapping["fields"]["room"]["letter"] == "F"
    samples = plan.samples()
    assert [s["row"] for s in samples["error"]] == [7, 9]
    assert samples["error"][1]["source"]["phone"] == "1381234"
    assert samples["update"][0]["changes"] == {"phone": ["13600000000", "13611112222"]}
    db.session.commit()
    assert snapshot(tenant) == before


def test_a_sheet_without_room_or_community_column_is_refused_in_chinese(tenant: int) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["户主姓名", "联系电话", "小区"])
    wb.active.append(["张三", "13800000000", "桂园小区"])
    buffer = io.BytesIO()
    wb.save(buffer)
    with pytest.raises(ImportFileError, match="没有“室号”列"):
        plan_households(db.session, tenant, sheet(buffer.getvalue()))


def test_chosen_columns_override_the_aliases(tenant: int, tag: str) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["小区", "楼", "门牌", "负责人"])
    wb.active.append([f"桂园小区{tag}", "3", "101", "张三"])
    buffer = io.BytesIO()
    wb.save(buffer)
    plan = plan_households(db.session, tenant, sheet(buffer.getvalue()),
                           mapping_overrides={"room": "门牌", "building": 1,
                                              "owner_name": "负责人"})
    assert plan.counts["create"] == 1, plan.rows
    assert plan.rows.iloc[0]["natural_key"] == "3--101"
    assert plan.rows.iloc[0]["owner_name"] == "张三"


def _same_plan(a: Any, b: Any) -> None:
    """Two plans of one sheet decide the same for every row."""
    pd.testing.assert_frame_equal(a.rows, b.rows)
    assert a.counts == b.counts and a.new_communities == b.new_communities
    assert a.existing == b.existing and a.mapping == b.mapping
    assert (a.data.row_numbers, a.data.skipped) == (b.data.row_numbers, b.data.skipped)
    assert a.data.rows == b.data.rows and a.samples() == b.samples()


def test_the_plan_is_the_same_for_any_block_size(tenant: int, tag: str) -> None:
    """A plan is made in blocks of rows (so a commit can write one while it plans the next):
    a duplicate of a row in an earlier block, an update, the 小计 and blank rows land the
    same way whatever the block size, down to one row per block."""
    n = names(tag)
    seed(tenant, n)
    raw = sheet(ledger_xlsx(ledger_rows(n)))
    whole = plan_households(db.session, tenant, raw, block_rows=1000)
    assert whole.counts == FIRST_COUNTS
    for size in (1, 2, 3, 5):
        _same_plan(plan_households(db.session, tenant, raw, block_rows=size), whole)


def test_a_new_communitys_first_delivery_date_counts_even_from_a_later_block(
        tenant: int, tag: str) -> None:
    """The first date the file gives for a new community is its date, even when the rows of
    the block that creates it give none; a commit in blocks of one row writes that date."""
    xin = f"新村小区{tag}"
    wb = openpyxl.Workbook()
    wb.active.append(["小区", "楼栋", "室号", "交付日期"])
    wb.active.append([xin, "1", "101", None])
    wb.active.append([xin, "1", "102", "2012年6月1日"])
    wb.active.append([xin, "1", "103", "2013年1月1日"])
    buffer = io.BytesIO()
    wb.save(buffer)
    data = buffer.getvalue()
    for size in (1, 1000):
        plan = plan_households(db.session, tenant, sheet(data), block_rows=size)
        assert plan.new_communities == {xin: dt.date(2012, 6, 1)}, size
    batch = new_batch(tenant, data)
    lock_tenant_imports(db.session, batch)
    _, counts, _ = plan_and_commit(db.session, batch, sheet(data), block_rows=1)
    db.session.commit()
    assert counts["create"] == 3 and counts["communities_create"] == 1
    community = db.session.execute(sa.select(Community).where(
        Community.tenant_id == tenant, Community.name == xin)).scalar_one()
    assert community.delivery_date == dt.date(2012, 6, 1)


def _planner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("planner")]


def test_plan_and_commit_in_blocks_writes_what_plan_then_commit_would(
        tenant: int, tag: str) -> None:
    """Planned and written block by block (a thread plans the next block while this one is
    written): the same rows decided, the same households and undo records, the same error
    workbook as the plan of the whole sheet; no planning thread and no child left."""
    n = names(tag)
    ids = seed(tenant, n)
    data = ledger_xlsx(ledger_rows(n))
    expected = plan_households(db.session, tenant, sheet(data))
    batch = new_batch(tenant, data)
    lock_tenant_imports(db.session, batch)
    children = _children()
    written: list[tuple[int, int]] = []
    checked: list[tuple[int, int]] = []
    plan, counts, workbook = plan_and_commit(
        db.session, batch, sheet(data), block_rows=2, chunk_rows=1,
        progress=lambda done, total, _: written.append((done, total)),
        plan_progress=lambda done, total, _: checked.append((done, total)))
    db.session.commit()
    assert _children() == children and _planner_threads() == []
    _same_plan(plan, expected)
    assert {k: counts[k] for k in FIRST_COUNTS} == FIRST_COUNTS and counts["written"] == 5
    assert checked[-1] == (8, 8) and written[-1] == (5, 5)
    assert [d for d, _ in written] == sorted(d for d, _ in written)  # never backwards
    rows = {r.row_number: r for r in db.session.execute(sa.select(ImportRow).where(
        ImportRow.batch_id == batch.id)).scalars()}
    assert {k: r.action for k, r in rows.items()} == expected.rows["action"].to_dict()
    assert rows[12].household_id == ids["changed"] and rows[12].before["phone"] == "13600000000"
    created = {rows[k].household_id for k in (5, 6, 13, 14)}
    households = {h.id: h for h in db.session.execute(sa.select(Household).where(
        Household.id.in_(created))).scalars()}
    assert sorted(h.natural_key for h in households.values()) == [
        "2-1-101", "2-1-102", "3-2-102", "3-2-103"]
    xin = db.session.execute(sa.select(Community.id).where(
        Community.tenant_id == tenant, Community.name == n["xin"])).scalar_one()
    assert {households[rows[k].household_id].community_id for k in (13, 14)} == {xin}
    assert rows[7].action == "error" and rows[7].reason == "与第5行重复"
    assert workbook is not None
    values = lambda blob: [list(r) for r in openpyxl.load_workbook(  # noqa: E731
        io.BytesIO(blob)).active.iter_rows(values_only=True)]
    assert values(workbook) == values(error_workbook(expected))


def test_each_communitys_households_are_read_once_however_many_blocks_mention_it(
        tenant: int, tag: str) -> None:
    """In blocks of one row, 桂园 (rows 5 and 6) and 建业 (rows 10 and 12) are each read
    (and locked) once, before anything is written — not again by a later block, which would
    also lock the households earlier blocks of the same commit have just inserted."""
    n = names(tag)
    seed(tenant, n)
    data = ledger_xlsx(ledger_rows(n))
    batch = new_batch(tenant, data)
    lock_tenant_imports(db.session, batch)
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM om_household" in statement and "om_household.community_id IN" in statement:
            reads.append(statement)  # the plan's read of a community's households

    engine = db.session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        _, counts, _ = plan_and_commit(db.session, batch, sheet(data), block_rows=1)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    db.session.commit()
    assert {k: counts[k] for k in FIRST_COUNTS} == FIRST_COUNTS
    assert len(reads) == 2, reads


def test_a_failure_in_a_later_block_leaves_nothing_and_stops_the_planner(
        tenant: int, tag: str) -> None:
    """An exception while a block is written (here: the cancellation check of the third
    step) reaches the caller; after its rollback nothing of the import is left, and the
    planning thread is gone."""
    n = names(tag)
    seed(tenant, n)
    before = snapshot(tenant)
    data = ledger_xlsx(ledger_rows(n))
    batch = new_batch(tenant, data)
    lock_tenant_imports(db.session, batch)
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("已取消")

    with pytest.raises(RuntimeError, match="已取消"):
        plan_and_commit(db.session, batch, sheet(data), block_rows=2, chunk_rows=1,
                        check=check)
    assert _planner_threads() == []
    db.session.rollback()
    assert snapshot(tenant) == before
    assert db.session.execute(sa.select(sa.func.count()).select_from(ImportRow).where(
        ImportRow.batch_id == batch.id)).scalar() == 0


# --- commit, second file, rollback --------------------------------------------------------------

def second_rows(n: dict[str, str]) -> list[list[Any]]:
    """A later ledger: two households of the first file corrected, one new, one the same."""
    return [
        [1, "张三丰", n["gui"], "3", "2", "102", "13812345678", ID_1, None, None],      # update
        [2, "李四", n["gui"], "3", "2", "103", "13912345678", None, "是", None],        # update
        [3, "冯五", n["gui"], "5", "1", "501", None, None, None, None],                # unchanged
        [4, "陈二", n["old"], "8", "3", "301", "13100000000", None, None, None],       # create
    ]


def test_commit_writes_exactly_the_good_rows_and_a_rollback_restores_every_row(
        tenant: int, tag: str) -> None:
    n = names(tag)
    ids = seed(tenant, n)
    before_first = snapshot(tenant)

    batch, counts = commit(tenant, ledger_xlsx(ledger_rows(n)))
    assert {k: counts[k] for k in FIRST_COUNTS} == FIRST_COUNTS
    assert counts["written"] == 5
    assert batch.state == COMMITTED and batch.committed_at is not None
    after_first = snapshot(tenant)
    new_ids = set(after_first["om_household"]) - set(before_first["om_household"])
    assert len(new_ids) == 4
    created = {(r.natural_key, r.owner_name, r.phone, r.opted_out) for r in db.session.execute(
        sa.select(Household).where(Household.id.in_(new_ids))).scalars()}
    assert created == {("3-2-102", "张三", "13812345678", False),
                       ("3-2-103", "李四", "13912345678", False),
                       ("2-1-101", "孙八", "13500000000", True),
                       ("2-1-102", "吴十", None, False)}
    xin = db.session.execute(sa.select(Community).where(Community.name == n["xin"])).scalar_one()
    assert batch.created_communities == [xin.id]
    assert db.session.get(Household, ids["changed"]).phone == "13611112222"
    assert db.session.get(Household, ids["changed"]).opted_out is True  # empty cell: kept
    assert after_first["om_household"][ids["same"]] == before_first["om_household"][ids["same"]]
    assert after_first["om_household"][ids["other"]] == before_first["om_household"][ids["other"]]

    rows = {r.row_number: r for r in db.session.execute(
        sa.select(ImportRow).where(ImportRow.batch_id == batch.id)).scalars()}
    assert sorted(rows) == [5, 6, 7, 9, 10, 12, 13, 14]
    assert {n_: r.action for n_, r in rows.items()} == {
        5: "create", 6: "create", 7: "error", 9: "error", 10: "unchanged", 12: "update",
        13: "create", 14: "create"}
    assert rows[12].before["phone"] == "13600000000" and rows[12].after["phone"] == "13611112222"
    assert rows[12].household_id == ids["changed"]
    assert rows[5].household_id in new_ids and rows[5].before is None
    assert rows[9].source["phone"] == "1381234" and rows[9].household_id is None
    assert all(r.tenant_id == tenant for r in rows.values())

    # The second file: updates with before-images taken from what the first wrote.
    second, counts2 = commit(tenant, ledger_xlsx(second_rows(n)))
    assert {k: counts2[k] for k in ("create", "update", "unchanged", "error")} == {
        "create": 1, "update": 2, "unchanged": 1, "error": 0}
    rows2 = {r.row_number: r for r in db.session.execute(
        sa.select(ImportRow).where(ImportRow.batch_id == second.id)).scalars()}
    assert rows2[5].before["owner_name"] == "张三" and rows2[5].after["owner_name"] == "张三丰"
    assert rows2[6].before["opted_out"] is False and rows2[6].after["opted_out"] is True
    assert rows2[6].after["opted_out_at"] is not None
    assert rows2[5].reason == "户主姓名有变化"

    # Rolling back the first batch now is refused: the second changed its households.
    with pytest.raises(RollbackRefused, match="第5行新增的住户.*又被修改过"):
        rollback_batch(db.session, db.session.get(ImportBatch, batch.id))
    db.session.rollback()

    # Newest first: each rollback restores exactly what was there before its batch.
    before_second = after_first
    result = rollback_batch(db.session, db.session.get(ImportBatch, second.id))
    db.session.commit()
    assert result == {"deleted": 1, "restored": 2, "communities_deleted": 1}
    assert snapshot(tenant) == before_second
    result = rollback_batch(db.session, db.session.get(ImportBatch, batch.id))
    db.session.commit()
    assert result == {"deleted": 4, "restored": 1, "communities_deleted": 1}
    assert snapshot(tenant) == before_first
    assert db.session.get(ImportBatch, batch.id).state == ROLLED_BACK
    with pytest.raises(RollbackRefused, match="只有已导入的批次可以撤销"):
        rollback_batch(db.session, db.session.get(ImportBatch, batch.id))


def test_rollback_is_refused_when_a_created_household_got_a_meter_account(
        tenant: int, tag: str) -> None:
    n = names(tag)
    seed(tenant, n)
    batch, _ = commit(tenant, ledger_xlsx(ledger_rows(n)))
    row = db.session.execute(sa.select(ImportRow).where(
        ImportRow.batch_id == batch.id, ImportRow.row_number == 13)).scalar_one()
    account = MeterAccount(tenant_id=tenant, household_id=row.household_id, utility="water",
                           account_no="41150001")
    db.session.add(account)
    db.session.commit()
    before = snapshot(tenant)

    with pytest.raises(RollbackRefused) as refused:
        rollback_batch(db.session, db.session.get(ImportBatch, batch.id))
    db.session.rollback()
    message = str(refused.value)
    assert "不能撤销这批导入" in message
    assert f"第13行新增的住户（{n['xin']} 2-1-101）已有供水户表" in message
    assert f"导入时新建的小区“{n['xin']}”" not in message  # its households are the batch's
    assert snapshot(tenant) == before
    assert db.session.get(ImportBatch, batch.id).state == COMMITTED

    # Once the account is gone the batch rolls back.
    db.session.delete(db.session.get(MeterAccount, account.id))
    db.session.commit()
    rollback_batch(db.session, db.session.get(ImportBatch, batch.id))
    db.session.commit()
    assert db.session.get(Household, row.household_id) is None


def test_rollback_is_refused_when_a_created_community_got_other_households(
        tenant: int, tag: str) -> None:
    n = names(tag)
    seed(tenant, n)
    batch, _ = commit(tenant, ledger_xlsx(ledger_rows(n)))
    xin = db.session.execute(sa.select(Community).where(Community.name == n["xin"])).scalar_one()
    db.session.add(Household(tenant_id=tenant, community_id=xin.id, room="999"))
    db.session.commit()
    with pytest.raises(RollbackRefused, match=f"导入时新建的小区“{n['xin']}”已有其他住户"):
        rollback_batch(db.session, db.session.get(ImportBatch, batch.id))
    db.session.rollback()


def test_an_updated_household_changed_again_by_hand_blocks_the_rollback(
        tenant: int, tag: str) -> None:
    n = names(tag)
    ids = seed(tenant, n)
    batch, _ = commit(tenant, ledger_xlsx(ledger_rows(n)))
    household = db.session.get(Household, ids["changed"])
    household.owner_name = "周九九"
    db.session.commit()
    with pytest.raises(RollbackRefused, match="第12行更新的住户.*又被修改过（户主姓名）"):
        rollback_batch(db.session, db.session.get(ImportBatch, batch.id))
    db.session.rollback()


@pytest.mark.postgres
def test_a_household_inserted_between_plan_and_write_is_kept_and_its_row_is_an_error(
        tenant: int, tag: str) -> None:
    """PostgreSQL plans without the write lock SQLite takes: a household someone adds to the
    community meanwhile meets the create row's ON CONFLICT, stays as they wrote it, and the
    row is reported (the chunk's count tells; only then are its rows looked up)."""
    n = names(tag)
    ids = seed(tenant, n)
    batch = new_batch(tenant, ledger_xlsx(ledger_rows(n)))
    plan = plan_households(db.session, tenant, sheet(ledger_xlsx(ledger_rows(n))))
    theirs = Household(tenant_id=tenant, community_id=ids["gui"], building="3", unit="2",
                       room="102", owner_name="别人录入")
    db.session.add(theirs)
    db.session.flush()
    counts = commit_plan(db.session, batch, plan, chunk_rows=2)
    db.session.commit()
    assert {k: counts[k] for k in ("create", "update", "unchanged", "error")} == {
        "create": 3, "update": 1, "unchanged": 1, "error": 3}
    row = db.session.execute(sa.select(ImportRow).where(
        ImportRow.batch_id == batch.id, ImportRow.row_number == 5)).scalar_one()
    assert row.action == "error" and "提交时本小区已有同一住户" in row.reason
    assert plan.rows.at[5, "action"] == "create"  # the commit worked on its own copy
    assert db.session.get(Household, theirs.id).owner_name == "别人录入"
    created = db.session.execute(sa.select(ImportRow.row_number).where(
        ImportRow.batch_id == batch.id, ImportRow.action == "create")
        .order_by(ImportRow.row_number)).scalars().all()
    assert created == [6, 13, 14]


# --- the error workbook -----------------------------------------------------------------------

def test_error_workbook_repeats_each_bad_row_with_its_row_number_and_reason(
        tenant: int, tag: str) -> None:
    n = names(tag)
    seed(tenant, n)
    data = ledger_xlsx(ledger_rows(n))
    plan = plan_households(db.session, tenant, sheet(data))
    from_plan = openpyxl.load_workbook(io.BytesIO(error_workbook(plan))).active
    batch, _ = commit(tenant, data)
    from_batch = openpyxl.load_workbook(io.BytesIO(error_workbook(batch))).active

    for ws in (from_plan, from_batch):
        values = [list(r) for r in ws.iter_rows(values_only=True)]
        assert values[0][0] == "导入错误明细（请修改后重新上传）"
        assert values[1][0].startswith("填报单位：平东办事处")
        assert values[2] == ["原表行号", "序号", "户主姓名", "住址/小区", "住址/楼栋", "住址/单元",
                             "住址/室号", "联系电话", "身份证号", "是否自愿不改造", "备注", "错误原因"]
        assert values[3] == [7, 3, "王五", n["gui"], "3栋", "2单元", "102室", "13800000001",
                             None, None, None, "与第5行重复"]
        assert values[4][:11] == [9, 4, "赵六", n["jian"], "1号楼", 1, 201, "1381234", None,
                                  None, "电话待核"]
        assert values[4][11].startswith("联系电话：手机号应为11位")
        assert len(values) == 5


def test_commit_builds_the_error_workbook_in_a_fork_and_keeps_its_connection(
        tenant: int, tag: str) -> None:
    """commit_with_error_workbook builds the workbook in a forked child while the same
    connection writes; afterwards the workbook equals the plan's, the connection still serves
    (the child closed nothing of the parent's) and no child is left behind."""
    n = names(tag)
    seed(tenant, n)
    data = ledger_xlsx(ledger_rows(n))
    batch = new_batch(tenant, data)
    lock_tenant_imports(db.session, batch)
    plan = plan_households(db.session, tenant, sheet(data), lock=True)
    backend = db.session.connection().connection.dbapi_connection
    children = _children()
    counts, workbook = commit_with_error_workbook(db.session, batch, plan)
    assert _children() == children  # the fork was reaped
    assert db.session.connection().connection.dbapi_connection is backend
    assert db.session.execute(sa.select(sa.func.count()).select_from(ImportRow).where(
        ImportRow.batch_id == batch.id)).scalar() == counts["rows"] == 8
    db.session.commit()
    assert workbook is not None
    values = lambda blob: [list(r) for r in openpyxl.load_workbook(  # noqa: E731
        io.BytesIO(blob)).active.iter_rows(values_only=True)]
    assert values(workbook) == values(error_workbook(plan)) and len(values(workbook)) == 5


def _children() -> set[int]:
    """This process's live and unreaped child processes (Linux /proc)."""
    pid = os.getpid()
    return {int(c) for task in os.listdir(f"/proc/{pid}/task")
            for c in open(f"/proc/{pid}/task/{task}/children").read().split()}


def test_forked_build_returns_bytes_and_reports_failures_clearly() -> None:
    assert ForkedBuild(lambda: b"x" * 300_000).result() == b"x" * 300_000  # > a pipe's buffer

    def broken() -> bytes:
        raise ValueError("第3行的格式坏了")

    with pytest.raises(BuilderFailed, match="ValueError: 第3行的格式坏了"):
        ForkedBuild(broken).result()

    def killed() -> bytes:
        os.kill(os.getpid(), signal.SIGKILL)
        return b""

    with pytest.raises(BuilderFailed, match="子进程意外退出（信号 9）"):
        ForkedBuild(killed).result()

    children = _children()
    slow = ForkedBuild(lambda: time.sleep(60) or b"")
    assert len(_children() - children) == 1
    slow.abandon()  # killed and reaped at once, not after its minute
    assert _children() == children

def test_formula_like_cells_are_neutralized_in_the_error_workbook(tenant: int, tag: str) -> None:
    rows = [[1, "@HYPERLINK(\"http://x\")", f"桂园小区{tag}", "1", "1", None, None, None, None,
             None]]
    plan = plan_households(db.session, tenant, sheet(ledger_xlsx(rows)))
    assert plan.counts["error"] == 1 and plan.rows.iloc[0]["reason"] == "缺少室号"
    ws = openpyxl.load_workbook(io.BytesIO(error_workbook(plan))).active
    assert ws.cell(row=4, column=3).value == "'@HYPERLINK(\"http://x\")"


def test_a_gbk_csv_with_one_address_column_and_account_numbers(tenant: int, tag: str) -> None:
    """Addresses in one column (split into community/building/unit/room), the same household
    written two ways, a utility's 户号 column recognized by the plugin's aliases (and not
    imported into households), GBK as Excel writes CSV on a Chinese Windows."""
    # A community name ending in letters or digits would run into the building number.
    tag = "".join("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳"[int(c, 16)] for c in tag)
    text = "\n".join([
        "序号,户主,详细地址,联系电话,用水户号",
        f"1,张三,桂园小区{tag}3号楼2单元102室,13812345678,41150001",
        f"2,李四,桂园小区{tag} 3-2-103,１３９１２３４５６７８,41150002",
        f"3,王五,桂园小区{tag}三栋二单元１０２,13800000001,41150003",
        f"4,赵六,桂园小区{tag}不知道哪栋,13800000002,41150004",
        "合计,4户,,,",
    ]) + "\n"
    plan = plan_households(db.session, tenant, sheet(text.encode("gbk"), "台账.csv"))
    assert plan.counts == {"rows": 4, "create": 2, "update": 0, "unchanged": 0, "error": 2,
                           "duplicate_in_file": 1, "skipped": 1, "communities_create": 1}
    assert plan.rows["natural_key"].tolist()[:3] == ["3-2-102", "3-2-103", "3-2-102"]
    assert plan.rows.at[4, "reason"] == "与第2行重复"
    assert plan.rows.at[5, "reason"].startswith("详细地址：地址无法拆分")
    assert plan.rows.at[3, "phone"] == "13912345678"
    assert plan.mapping["ignored"] == ["account_no"]
    assert plan.new_communities == {f"桂园小区{tag}": None}


def test_a_ledger_with_a_header_and_no_data_plans_nothing(tenant: int) -> None:
    plan = plan_households(db.session, tenant, sheet(ledger_xlsx([])))
    assert plan.counts == {"rows": 0, "create": 0, "update": 0, "unchanged": 0, "error": 0,
                           "duplicate_in_file": 0, "skipped": 0, "communities_create": 0}
    assert plan.samples() == {"create": [], "update": [], "unchanged": [], "error": []}
