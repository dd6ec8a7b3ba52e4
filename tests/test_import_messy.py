"""A clerk's messier ledgers: merged 小区 cells, floors in addresses, 门牌号 columns, Excel's
dates and error values where text belongs, placeholders, export wrappings, bracketed header
notes, totals written inside a cell, a 填表说明 sheet first, CSVs with other separators.

Each case was found by reading real-looking ledgers through the planner; each asserts what
the clerk should get (the exact action, key or reason), on the run's database.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile
from typing import Any

import openpyxl
import pandas as pd
import pytest

from onemeter.database import db
from onemeter.imports import reader
from onemeter.imports.headers import MERGED_FILL_LIMIT, fill_merged_down, split_address
from onemeter.imports.ledger import pick_sheet, plan_households
from onemeter.imports.normalize import (
    normalize_dates,
    normalize_flags,
    normalize_id_numbers,
    normalize_names,
    normalize_phones,
    normalize_room,
    normalize_table,
)
from onemeter.imports.reader import RawSheet, read_table

LIMITS = {"max_bytes": 5 * 1024 * 1024, "max_uncompressed_bytes": 50 * 1024 * 1024,
          "max_cells": 1_000_000}
ID_1 = "11010519491231002X"


@pytest.fixture
def tenant(pingdong_scope: int) -> int:
    """平东办事处's scope (read and write), inside an app context."""
    return pingdong_scope


def xlsx(rows: list[list[Any]], setup: Any = None, *, title: str = "台账",
         sheets: dict[str, list[list[Any]]] | None = None) -> bytes:
    """A workbook whose first sheet (`title`) holds `rows` (then `setup(ws)`), then `sheets`."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for row in rows:
        ws.append(row)
    if setup is not None:
        setup(ws)
    for name, more in (sheets or {}).items():
        extra = wb.create_sheet(name)
        for row in more:
            extra.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def plan(tenant: int, data: bytes, filename: str = "台账.xlsx") -> pd.DataFrame:
    return plan_households(db.session, tenant, read_table(data, filename, **LIMITS)).rows


_SAFE = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"


def community(name: str) -> str:
    """`name` with a suffix no other test uses (the run's database is shared), in characters
    an address never splits on (no digits, letters or counters)."""
    return name + "".join(random.choice(_SAFE) for _ in range(8))


# --- merged cells, addresses, 门牌号 ----------------------------------------------------------

def test_a_community_merged_down_over_its_households_names_every_row(tenant: int) -> None:
    gui, jian = community("桂园"), community("建业")

    def merge(ws: Any) -> None:
        ws.merge_cells("A2:A4")
        ws.merge_cells("B2:B4")
        ws.merge_cells("A5:E6")  # a section title over two rows: not copied down

    found = plan_households(db.session, tenant, read_table(xlsx(
        [["小区", "楼栋", "单元", "室号", "户主"], [gui, 3, 2, 101, "张三"],
         [None, None, 2, 102, "李四"], [None, None, 2, 103, "王五"], ["二、其他小区"], [None],
         [jian, 1, 1, 101, "赵六"]], merge), "台账.xlsx", **LIMITS))
    rows = found.rows
    assert rows["action"].tolist() == ["create"] * 4
    assert rows["natural_key"].tolist() == ["3-2-101", "3-2-102", "3-2-103", "1-1-101"]
    assert rows["community"].tolist() == [gui, gui, gui, jian]
    # The section title over two rows is neither a household nor an error.
    skipped = dict(found.data.skipped)
    assert skipped[5] == skipped[6] == "分节标题（跨列合并的单元格）"


def test_merged_fill_is_bounded_and_keeps_the_header_and_filled_cells(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["小区", "室号"], ["桂园", "1"], ["", "2"], ["建业", "3"], ["", "4"]]
    filled = fill_merged_down(rows, [(0, 0, 1, 1), (1, 0, 4, 0), (3, 1, 4, 1)], start=1)
    assert filled == 2  # rows 3 and 5; 建业 is its own value, the header range is skipped
    assert [r[0] for r in rows] == ["小区", "桂园", "桂园", "建业", "桂园"]
    # Ranges wider than a column are not filled; overlapping ranges count every cell looked
    # at, so a pile of them (a hostile file) stops at the limit instead of walking on.
    rows = [["a", "b"]] + [["", ""] for _ in range(10)]
    assert fill_merged_down(rows, [(1, 0, 10, 1)], start=1) == 0
    rows[1] = ["桂园", ""]
    monkeypatch.setattr("onemeter.imports.headers.MERGED_FILL_LIMIT", 15)
    assert fill_merged_down(rows, [(1, 0, 10, 0)] * 1000, start=1) == 9  # 9 + 9 > 15: stop
    assert MERGED_FILL_LIMIT >= 1_000_000


def test_an_address_with_a_floor_is_split_and_never_names_a_staircase_community() -> None:
    parts = split_address(pd.Series(["桂园小区3栋2单元18楼1801", "桂园小区3号楼二单元十二楼1201",
                                     "桂园小区3栋2单元1801", "桂园小区3栋2单元18号1801",
                                     "建设路12号1楼101", "建设路12号2楼101"]))
    assert parts["community"].tolist()[:3] == ["桂园小区"] * 3
    assert parts[["building", "unit", "room"]].values.tolist()[:3] == [
        ["3", "2", "1801"], ["3", "2", "1201"], ["3", "2", "1801"]]
    # A form not understood is not split at all (the row is refused), rather than creating
    # a community called "桂园小区3栋2单元".
    assert parts.iloc[3].tolist() == [None, None, None, None]
    # A floor only after a unit: here 12号 is the street number and 1楼, 2楼 the buildings.
    assert parts.iloc[4].tolist() == ["建设路12号", "1", None, "101"]
    assert parts.iloc[5].tolist() == ["建设路12号", "2", None, "101"]


def test_a_door_number_column_is_split_and_ambiguous_digit_groups_are_refused(
        tenant: int) -> None:
    gui = community("桂园")
    rows = plan(tenant, xlsx([["小区", "门牌号", "户主"], [gui, "3-2-1801", "张三"],
                              [gui, "3-2-1802", "李四"], [gui, "32-1801", "王五"],
                              [gui, "18楼1801", "赵六"], [gui, "1801", "钱七"]]))
    assert rows["natural_key"].tolist()[:2] == ["3-2-1801", "3-2-1802"]
    assert rows["action"].tolist() == ["create", "create", "error", "error", "create"]
    assert "室号里有几段数字" in rows.loc[4, "reason"]  # not a duplicate of row 2 (3-2-1801)
    assert "重复" not in rows.loc[4, "reason"]
    assert rows.loc[6, "natural_key"] == "--1801"


def test_rooms_buildings_that_excel_turned_into_dates_are_refused() -> None:
    clean, reasons = normalize_room(pd.Series([dt.datetime(2021, 1, 2), dt.time(10, 1),
                                               "1-1101", "1801.5", "１０２", 1801.0]))
    assert clean.tolist() == [None, None, None, None, "102", "1801"]
    assert "存成了日期或时间" in reasons[0] and "存成了日期或时间" in reasons[1]
    assert "几段数字" in reasons[2] and "几段数字" in reasons[3]


def test_an_address_column_beside_room_columns_names_the_community(tenant: int) -> None:
    gui, road = community("桂园小区"), community("平桥区建设路12号")
    rows = plan(tenant, xlsx([["地址", "楼栋", "单元", "室号", "户主"],
                              [gui, 3, 2, 101, "张三"], [road, 1, 1, 101, "李四"],
                              [f"{gui}3号楼2单元", 3, 2, 102, "王五"]]))
    assert rows["action"].tolist() == ["create", "create", "error"]
    assert rows["community"].tolist()[:2] == [gui, road]
    # An address naming a staircase is not a community name: refused, not created.
    assert pd.isna(rows.loc[4, "community"]) and "缺少小区名称" in rows.loc[4, "reason"]


# --- Excel's error values, placeholders, wrappings ------------------------------------------

def test_excel_error_values_are_refused_with_what_went_wrong(tenant: int) -> None:
    gui = community("桂园")
    csv = (f"小区,楼栋,单元,室号,户主,电话\n{gui},3,2,#N/A,张三,\n{gui},#REF!,2,102,李四,\n"
           f"{gui},3,2,103,#VALUE!,13812345678\n{gui},3,2,104,王五,13812345679\n")
    rows = plan(tenant, csv.encode("utf-8"), "台账.csv")
    assert rows["action"].tolist() == ["error", "error", "error", "create"]
    assert "Excel的错误值#N/A" in rows.loc[2, "reason"] and "缺少室号" not in rows.loc[2, "reason"]
    assert "Excel的错误值#REF!" in rows.loc[3, "reason"]
    assert "Excel的错误值#VALUE!" in rows.loc[4, "reason"]


def _error_cells_workbook(gui: str, rows: int) -> bytes:
    """`rows` households of `gui`; every 3rd has #N/A as owner (a failed VLOOKUP), every 7th
    #REF! as room: openpyxl writes such strings as error cells (t="e"), as Excel does."""
    def household(n: int) -> list[Any]:
        return [gui, 3, 2, "#REF!" if n % 7 == 0 else 100 + n,
                "#N/A" if n % 3 == 0 else "张三", "13812345678"]
    return xlsx([["小区", "楼栋", "单元", "室号", "户主", "电话"],
                 *(household(n) for n in range(1, rows + 1))])


def test_xlsx_error_cells_are_refused_instead_of_read_as_empty(tenant: int) -> None:
    gui = community("桂园")
    data = _error_cells_workbook(gui, 21)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # they really are error cells in the file
        assert zf.read("xl/worksheets/sheet1.xml").count(b't="e"') == 7 + 3
    rows = plan(tenant, data)
    refused = rows[rows["action"] == "error"]
    # Rows 3, 6, 9 … (owner) and 7, 14 (room; 21 has both) are spreadsheet rows n + 1.
    assert sorted(refused.index.tolist()) == sorted(
        {n + 1 for n in range(1, 22) if n % 3 == 0 or n % 7 == 0})
    assert "Excel的错误值#N/A" in rows.loc[4, "reason"] and "户主" in rows.loc[4, "reason"]
    assert "Excel的错误值#REF!" in rows.loc[8, "reason"] and "缺少室号" not in rows.loc[8, "reason"]
    assert (rows["action"] == "create").sum() == 21 - len(refused)


def test_excel_365_errors_refuse_their_rows_not_the_whole_file(tenant: int) -> None:
    """calamine refuses a whole sheet for one #SPILL! or #CALC! ('Unsupported cell error
    value'), which the clerk read as 文件已损坏; the reader reads a copy with #N/A there."""
    gui = community("桂园")
    data = _error_cells_workbook(gui, 6)  # #N/A owners in rows 4 and 7 (n = 3, 6)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        xml = zf.read("xl/worksheets/sheet1.xml")
    xml = xml.replace(b"<v>#N/A</v>", b"<v>#SPILL!</v>", 1).replace(b"<v>#N/A</v>",
                                                                    b"<v>#CALC!</v>", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, xml if info.filename == "xl/worksheets/sheet1.xml"
                         else src.read(info))
    rows = plan(tenant, out.getvalue())
    assert rows["action"].tolist() == ["create", "create", "error", "create", "create", "error"]
    assert "Excel的错误值#SPILL!" in rows.loc[4, "reason"]
    assert "Excel的错误值#CALC!" in rows.loc[7, "reason"]


def test_newer_error_cells_are_rewritten_for_calamine_across_chunk_boundaries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy for calamine is written in chunks: each cut falls before a start tag, so no
    #SPILL! is split from the "<" after it; #TIMEOUT! (not in any list) is read too."""
    data = _error_cells_workbook("桂园小区", 60)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        xml = zf.read("xl/worksheets/sheet1.xml")
    xml = xml.replace(b"<v>#N/A</v>", b"<v>#SPILL!</v>").replace(b"<v>#REF!</v>",
                                                                 b"<v>#TIMEOUT!</v>")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, xml if info.filename == "xl/worksheets/sheet1.xml"
                         else src.read(info))
    monkeypatch.setattr(reader, "_CHUNK", 37)
    rows = read_table(out.getvalue(), "台账.xlsx", **LIMITS).rows
    assert [r[4] for r in rows[1:]].count("#SPILL!") == 20
    assert [r[3] for r in rows[1:]].count("#TIMEOUT!") == 8


def test_error_cells_split_between_scan_chunks_keep_their_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = _error_cells_workbook("桂园小区", 300)
    whole = read_table(data, "台账.xlsx", **LIMITS)
    monkeypatch.setattr(reader, "_SCAN_CHUNK", 700)  # cells straddle most chunk boundaries
    chunked = read_table(data, "台账.xlsx", **LIMITS)
    assert chunked.rows == whole.rows
    assert [r[4] for r in chunked.rows[1:]].count("#N/A") == 100
    assert [r[3] for r in chunked.rows[1:]].count("#REF!") == 42


def test_one_error_cell_written_over_and_over_is_refused_in_bounded_memory() -> None:
    """More error cells than the sheet may have cells: the same cell again and again."""
    data = _error_cells_workbook("桂园小区", 3)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        xml = zf.read("xl/worksheets/sheet1.xml")
    cell = b'<c r="A2" t="e"><v>#N/A</v></c>'
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, xml.replace(b"</sheetData>", cell * 501 + b"</sheetData>")
                         if info.filename == "xl/worksheets/sheet1.xml" else src.read(info))
    with pytest.raises(reader.ImportFileError, match="错误值单元格超过500个"):
        read_table(out.getvalue(), "台账.xlsx", **{**LIMITS, "max_cells": 500})
    assert read_table(data, "台账.xlsx", **{**LIMITS, "max_cells": 500}).rows[3][4] == "#N/A"


def test_hidden_rows_are_read_and_named_on_the_batch_page(tenant: int) -> None:
    gui = community("桂园")

    def hide(ws: Any) -> None:
        for row in (4, 5, 9, 30):  # 30 is below the last row: nothing to say about it
            ws.row_dimensions[row].hidden = True
        ws.row_dimensions[1].hidden = True  # the title line: not a household either

    found = plan_households(db.session, tenant, read_table(xlsx([
        ["平东办事处台账"], ["小区", "楼栋", "单元", "室号", "户主"],
        *([gui, 1, 1, 100 + n, "张三"] for n in range(1, 9)),
    ], hide), "台账.xlsx", **LIMITS))
    assert found.counts["create"] == 8  # read like the others
    assert found.mapping["hidden_rows"] == [4, 5, 9] and found.mapping["hidden_row_count"] == 3
    plain = plan_households(db.session, tenant, read_table(xlsx([
        ["小区", "楼栋", "单元", "室号", "户主"], [gui, 1, 1, 201, "张三"]]), "台账.xlsx", **LIMITS))
    assert "hidden_rows" not in plain.mapping


def test_a_hidden_total_row_is_not_named_as_read(tenant: int) -> None:
    """Only hidden rows read as households are named: a hidden 合计 row is skipped, and the
    page says the hidden rows were 读取并计入上面的数字."""
    gui = community("桂园")

    def hide(ws: Any) -> None:
        ws.row_dimensions[3].hidden = True
        ws.row_dimensions[5].hidden = True

    found = plan_households(db.session, tenant, read_table(xlsx([
        ["小区", "楼栋", "单元", "室号", "户主"], [gui, 1, 1, 101, "张三"],
        [gui, 1, 1, 102, "李四"], [gui, 1, 1, 103, "王五"], ["合计", "3户"]], hide),
        "台账.xlsx", **LIMITS))
    assert found.data.skipped == [(5, "小计/合计行")]
    assert found.mapping["hidden_rows"] == [3] and found.mapping["hidden_row_count"] == 1


def test_a_formula_filled_down_past_the_data_leaves_blank_rows_not_errors(tenant: int) -> None:
    """=VLOOKUP(…) in 户主 filled down below the last household gives #N/A rows with nothing
    else (some numbered by 序号): skipped as blank, as before the reader kept error cells."""
    gui = community("桂园")
    found = plan_households(db.session, tenant, read_table(xlsx([
        ["序号", "小区", "楼栋", "单元", "室号", "户主"],
        [1, gui, 1, 1, 101, "张三"], [2, gui, 1, 1, 102, "#N/A"],
        [3, None, None, None, None, "#N/A"], [None, None, None, None, None, "#N/A"],
    ]), "台账.xlsx", **LIMITS))
    assert found.counts["create"] == 1 and found.counts["error"] == 1  # row 3: a household
    assert found.data.skipped == [(4, "空行（只有序号等未识别的列和公式的错误值，如#N/A）"),
                                  (5, "空行（只有公式的错误值，如#N/A）")]


def test_placeholders_mean_empty_and_export_wrappings_are_removed() -> None:
    phones, reasons = normalize_phones(pd.Series(
        ["'13812345678", '="13812345678"', "无", "/", "—", "0376 1234567", "（0376）1234567",
         "03761234567", "13812345"]))
    assert phones.tolist() == ["13812345678", "13812345678", None, None, None,
                               "0376-1234567", "0376-1234567", "03761234567", None]
    assert reasons.notna().tolist() == [False] * 8 + [True]
    ids, id_reasons = normalize_id_numbers(pd.Series([f"'{ID_1}", f'="{ID_1}"', "暂无", "/"]))
    assert ids.tolist() == [ID_1, ID_1, None, None] and id_reasons.isna().all()
    flags, flag_reasons = normalize_flags(pd.Series(["/", "无", "是", "-"]))
    assert flags.tolist() == [False, False, True, False] and flag_reasons.isna().all()
    dates, date_reasons = normalize_dates(pd.Series(["2021年5月3号", "/"]))
    assert dates.tolist() == [dt.date(2021, 5, 3), None] and date_reasons.isna().all()


def test_two_names_on_two_lines_of_one_cell_stay_two_names() -> None:
    owners, _ = normalize_names(pd.Series(["张三\n李四", "张 三", "王五\n", None]))
    assert owners.tolist() == ["张三、李四", "张三", "王五", None]
    # Elsewhere a line break is a space as before: 桂园\n小区 is one community name.
    table = normalize_table(pd.DataFrame({"community": ["桂园\n小区"], "room": ["101"]}))
    assert table.data["community"].tolist() == ["桂园小区"]


# --- headers, totals, sheets, separators ------------------------------------------------------

def test_bracketed_notes_and_common_spellings_in_headers_are_recognized(tenant: int) -> None:
    gui = community("桂园")
    data = xlsx([["小区", "楼栋号", "单元", "房号（室）", "住户姓名", "联系电话（手机）",
                  "身份证号码（18位）", "是否自愿不改造（是/否）"],
                 [gui, 3, 2, 101, "张三", "13812345678", ID_1, "是"]])
    found = plan_households(db.session, tenant, read_table(data, "台账.xlsx", **LIMITS))
    assert set(found.mapping["fields"]) == {"community", "building", "unit", "room",
                                            "owner_name", "phone", "id_number", "opted_out"}
    assert bool(found.rows.loc[2, "opted_out"]) is True
    # A note saying the column holds part of the value keeps it out of the field.
    partial = plan_households(db.session, tenant, read_table(xlsx([
        ["小区", "室号", "身份证号（后六位）"], [gui, 101, "01002X"]]), "台账.xlsx", **LIMITS))
    assert "id_number" not in partial.mapping["fields"]
    assert partial.rows["action"].tolist() == ["create"]


def test_totals_inside_a_cell_and_more_footers_are_not_households(tenant: int) -> None:
    gui = community("桂园小区")
    found = plan_households(db.session, tenant, read_table(xlsx([
        ["小区", "楼栋", "单元", "室号", "户主"],
        [gui, 3, 2, 101, "张三"],
        [f"{gui}合计", None, None, None, "1户"],
        ["共计", None, None, None, "1户"],
        ["填报单位：平桥办事处"], ["经办人：郑一"], ["单位（盖章）："],
    ]), "台账.xlsx", **LIMITS))
    assert found.rows["action"].tolist() == ["create"]
    assert dict(found.data.skipped) == {3: "小计/合计行", 4: "小计/合计行",
                                        5: "表尾（填表人/审核人/备注）",
                                        6: "表尾（填表人/审核人/备注）",
                                        7: "表尾（填表人/审核人/备注）"}


def test_a_workbook_opening_with_an_instructions_sheet_is_read_from_its_ledger(
        tenant: int) -> None:
    gui = community("桂园")
    data = xlsx([["填表说明"], ["1. 每户一行"], ["2. 室号只填数字"]], title="填表说明", sheets={
        "台账": [["小区", "楼栋", "单元", "室号", "户主"], [gui, 3, 2, 101, "张三"]]})
    first = read_table(data, "台账.xlsx", **LIMITS)
    assert first.sheet_name == "填表说明" and first.sheet_names == ("填表说明", "台账")

    def read(name: str) -> RawSheet:
        return read_table(data, "台账.xlsx", sheet=name, **LIMITS)

    chosen = pick_sheet(db.session, tenant, first, None, read)
    assert chosen.rows[0][0] == "小区"
    found = plan_households(db.session, tenant, chosen)
    assert found.counts["create"] == 1
    assert found.mapping["sheet"] == "台账"
    assert found.mapping["sheets"] == ["填表说明", "台账"]
    # A sheet with a header is kept even when a later sheet also has one.
    assert pick_sheet(db.session, tenant, chosen, None, read) is chosen


def test_a_comma_csv_with_tab_kept_numbers_and_commas_in_quotes_stays_a_comma_csv(
        tenant: int) -> None:
    gui = community("桂园")
    lines = ["小区,楼栋,单元,室号,户主,电话,身份证号,备注"] + [
        f'{gui},3,2,{180 + n},张三,"1381234567{n}\t","{ID_1}\t","{n},需核对,已通知"'
        for n in range(4)]
    rows = plan(tenant, "\n".join(lines).encode("utf-8"), "台账.csv")
    assert rows["natural_key"].tolist() == ["3-2-180", "3-2-181", "3-2-182", "3-2-183"]
    assert rows["phone"].tolist() == [f"1381234567{n}" for n in range(4)]


@pytest.mark.parametrize("separator", [";", "|", "\t"])
def test_csv_separators_other_than_commas_are_recognized(tenant: int, separator: str) -> None:
    gui = community("桂园")
    lines = ["平桥区一户一表改造工作台账", separator.join(["小区", "楼栋", "单元", "室号", "户主",
                                                          "备注"]),
             separator.join([gui, "3", "2", "1801", "张三", "1,2,3,4,5,6,7,8"]),
             separator.join([gui, "3", "2", "1802", "李四", "1,2,3,4,5,6,7,8"])]
    rows = plan(tenant, "\n".join(lines).encode("gbk"), "台账.csv")
    assert rows["natural_key"].tolist() == ["3-2-1801", "3-2-1802"]
    assert rows["action"].tolist() == ["create", "create"]


def test_an_error_sample_shows_a_refused_cell_as_the_clerk_wrote_it(tenant: int) -> None:
    gui = community("桂园")
    found = plan_households(db.session, tenant, read_table(xlsx([
        ["小区", "楼栋", "单元", "室号", "户主", "电话", "是否自愿不改造"],
        [gui, 3, 2, "1-1101", "张三", "1381234", "/"]]), "台账.xlsx", **LIMITS))
    (sample,) = found.samples()["error"]
    assert sample["room"] == "1-1101" and sample["phone"] == "1381234"
    assert sample["building"] == "3" and sample["owner_name"] == "张三"
    assert sample["opted_out"] is False  # "/" is a placeholder: shown as not opted out


@pytest.mark.parametrize("title", [["小区名称：{name}  填报日期：2021年8月1日"],
                                   ["填报单位：平桥办事处", "小区名称：", None, "{name}"]])
def test_a_sheet_of_one_community_named_in_its_title_line(tenant: int,
                                                          title: list[Any]) -> None:
    gui = community("桂园小区")
    first = [cell.format(name=gui) if isinstance(cell, str) else cell for cell in title]
    found = plan_households(db.session, tenant, read_table(xlsx([
        ["平桥区一户一表改造工作台账"], first, ["楼栋", "单元", "室号", "户主"],
        [3, 2, 101, "张三"], [3, 2, 102, "李四"]]), "台账.xlsx", **LIMITS))
    assert found.rows["action"].tolist() == ["create", "create"]
    assert set(found.rows["community"]) == {gui}
    assert found.mapping["title_community"] == gui


def test_a_sheet_without_community_column_or_title_is_refused_in_words(tenant: int) -> None:
    from onemeter.imports.reader import ImportFileError

    with pytest.raises(ImportFileError, match="小区名称"):
        plan_households(db.session, tenant, read_table(xlsx([
            ["平桥区一户一表改造工作台账"], ["楼栋", "单元", "室号", "户主"], [3, 2, 101, "张三"]]),
            "台账.xlsx", **LIMITS))
