"""Normalizing ledger columns (onemeter.imports.normalize) and splitting addresses
(onemeter.imports.headers.split_address): every local form with its expected value, bad cells
as error rows with the spreadsheet row number, and 200,000 rows through the vectorized path.
No database.
"""

from __future__ import annotations

import datetime as dt
import io
import random

import numpy as np
import openpyxl
import pandas as pd
import pytest
from openpyxl.utils.datetime import from_excel
from stdnum.cn import ric

from onemeter.imports.headers import (
    CORE_ALIASES,
    cell_strings,
    drop_non_data_rows,
    locate_header,
    split_address,
)
from onemeter.imports.normalize import (
    ERROR_COLUMNS,
    as_text,
    frame_from_rows,
    id_number_valid,
    normalize_building,
    normalize_dates,
    normalize_flags,
    normalize_id_numbers,
    normalize_phones,
    normalize_room,
    normalize_table,
    normalize_text,
    normalize_unit,
)
from onemeter.imports.reader import read_table
from onemeter.registry.normalize import household_key

ID_1 = "11010519491231002X"
ID_2 = "110105194912310029"  # not valid: check digit
ID_3 = "411502199001011237"


def run(normalizer, values):
    series = pd.Series(values, index=pd.RangeIndex(5, 5 + len(values), name="row"), dtype=object)
    clean, reasons = normalizer(series)
    assert list(clean.index) == list(series.index) and list(reasons.index) == list(series.index)
    return clean.tolist(), reasons.tolist()


def test_text_full_width_spaces_and_numbers():
    clean, reasons = run(normalize_text, [
        "Ｚｈａｎｇ　Ｓａｎ", " 张  三 ", "桂园\u3000小区", "ABC 公司", "\u200b李四\ufeff", 3.0,
        "", None])
    assert clean == ["Zhang San", "张三", "桂园小区", "ABC 公司", "李四", "3", None, None]
    assert reasons == [None] * 8
    assert as_text(pd.Series(["１０２", 102.0, 44409.5, True])).tolist() == [
        "102", "102", "44409.5", "True"]


def test_buildings():
    clean, reasons = run(normalize_building, [
        "3#", "3号楼", "3栋", "三号楼", "3幢", "十二号楼", "３＃", 3.0, 3, " 3 号楼 ", "A座", "", None])
    assert clean == ["3", "3", "3", "3", "3", "12", "3", "3", "3", "3", "A", None, None]
    assert reasons == [None] * 13


def test_units_and_rooms():
    clean, _ = run(normalize_unit, ["二单元", "2单元", "２", 2.0, "十单元", "1-"])
    assert clean == ["2", "2", "2", "2", "10", "1"]
    clean, _ = run(normalize_room, ["１０２", "102室", 102.0, "一〇二", "0102", "102A"])
    assert clean == ["102", "102", "102", "102", "102", "102A"]


def test_parts_errors():
    _, reasons = run(normalize_building, ["3号楼2单元", "#"])
    assert reasons == ["楼栋号一栏里还写了单元或室号，请分列填写", "无法识别的楼栋号"]
    clean, reasons = run(normalize_room, ["2单元102", "102"])
    assert clean == [None, "102"] and reasons[0] == "室号一栏里还写了楼栋或单元，请分列填写"


def test_parts_agree_with_the_registry_key():
    buildings, _ = run(normalize_building, ["三号楼"])
    units, _ = run(normalize_unit, ["二单元"])
    rooms, _ = run(normalize_room, ["１０２室"])
    assert "-".join((buildings[0], units[0], rooms[0])) == household_key("3#", "2", "102")


def test_dates_every_local_form():
    clean, reasons = run(normalize_dates, [
        44409, 44409.0, "44409", 44408.75, "2021.5.3", "2021年5月3日", "2021年05月03日",
        "20210503", "2021/05/03", "2021-5-3", "2021 - 5 - 3", dt.datetime(2021, 5, 3, 10, 30),
        dt.date(2021, 5, 3), pd.Timestamp("2021-05-03"), "２０２１．５．３", "", None])
    assert clean == [dt.date(2021, 8, 1)] * 3 + [dt.date(2021, 7, 31)] + [
        dt.date(2021, 5, 3)] * 11 + [None, None]
    assert reasons == [None] * 17


def test_excel_serial_numbers_follow_excel():
    """Excel's 1900 date system: 44409 is 2021-08-01 and 44408 is 2021-07-31 (Excel counts
    from 1899-12-30 because it treats 1900 as a leap year); openpyxl agrees, and so does a
    date cell written by openpyxl and read back by calamine as a number."""
    assert from_excel(44409).date() == dt.date(2021, 8, 1)
    assert from_excel(44408).date() == dt.date(2021, 7, 31)
    wb = openpyxl.Workbook()
    wb.active.append(["交付日期"])
    wb.active.append([dt.date(2021, 7, 31)])
    wb.active["A2"].number_format = "General"  # the clerk changed the format: a bare number
    buffer = io.BytesIO()
    wb.save(buffer)
    sheet = read_table(buffer.getvalue(), "a.xlsx", max_bytes=1 << 20,
                       max_uncompressed_bytes=1 << 24, max_cells=1000)
    assert sheet.rows[1][0] == 44408.0
    clean, _ = run(normalize_dates, [sheet.rows[1][0]])
    assert clean == [dt.date(2021, 7, 31)]


def test_bad_dates():
    clean, reasons = run(normalize_dates, ["2021-02-30", "2021年13月1日", "明年", "2021", "21.5.3",
                                           "1900-01-01", 12, dt.time(10, 0)])
    assert clean == [None] * 8
    assert reasons == [
        "日期不存在（请核对月、日）", "日期不存在（请核对月、日）",
        "无法识别的日期，请写成2021-05-03或2021年5月3日",
        "无法识别的日期，请写成2021-05-03或2021年5月3日",
        "无法识别的日期，请写成2021-05-03或2021年5月3日",
        "日期超出合理范围（1950—2100年）",
        "无法识别的日期，请写成2021-05-03或2021年5月3日",
        "无法识别的日期，请写成2021-05-03或2021年5月3日"]


def test_phones():
    clean, reasons = run(normalize_phones, [
        "13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "8613812345678",
        "+8613812345678", "0086 13812345678", "１３８１２３４５６７８", 13812345678.0,
        "0376-1234567", "0376-12345678", "03761234567", "", None])
    assert clean == ["13812345678"] * 9 + ["0376-1234567", "0376-12345678", "03761234567",
                                           None, None]
    assert reasons == [None] * 14


def test_bad_phones():
    clean, reasons = run(normalize_phones, ["1381234567", "12812345678", "138123456789",
                                            "电话未知", "13812345678/13912345678"])
    assert clean == [None] * 5
    assert all(reason.startswith("手机号应为11位") for reason in reasons)
    assert "这里有10位数字" in reasons[0] and "这里有12位数字" in reasons[2]


def test_id_numbers():
    clean, reasons = run(normalize_id_numbers, [
        ID_1, ID_1.lower(), "１１０１０５１９４９１２３１００２Ｘ", f" {ID_1[:6]} {ID_1[6:]} ",
        ID_3, ID_2, "110105194902300029", "110105491231002", "11010519491231", 4.1010219900101e17,
        "", None])
    assert clean == [ID_1] * 4 + [ID_3] + [None] * 7
    assert reasons == [None] * 5 + [
        "身份证号校验位不对，请逐位核对", "身份证号中的出生日期无效",
        "这是15位的旧身份证号，请填写18位身份证号", "身份证号应为18位（最后一位可以是X）",
        "身份证号被Excel存成了数字，后几位已丢失；请把该列设为文本格式后重新填写", None, None]


def stdnum_verdict(number: str) -> bool:
    """python-stdnum's check digit and birth date (its county-code table is not used)."""
    try:
        born = ric.get_birth_date(number)
    except Exception:
        return False
    return ric.calc_check_digit(number) == number[-1] and dt.date(1900, 1, 1) <= born


def test_id_numbers_agree_with_stdnum():
    rng = random.Random(26)
    numbers = []
    for _ in range(3000):
        body = f"{rng.randint(110000, 659999)}{rng.randint(1950, 2010)}" \
               f"{rng.randint(1, 13):02d}{rng.randint(1, 31):02d}{rng.randint(0, 999):03d}"
        numbers.append(body + rng.choice("0123456789X"))
    checked = id_number_valid(pd.Series(numbers)).tolist()
    assert checked == [ric.calc_check_digit(n) == n[-1] for n in numbers]
    clean, _ = normalize_id_numbers(pd.Series(numbers, dtype=object))
    assert clean.notna().tolist() == [stdnum_verdict(n) for n in numbers]
    assert 100 < sum(checked) < 2900 and clean.notna().sum() > 100  # both outcomes occur


def test_flags():
    clean, reasons = run(normalize_flags, ["是", "否", "√", "Y", "yes", True, False, 1.0, 0, "",
                                           None, "自愿不改造", "也许"])
    assert clean == [True, False, True, True, True, True, False, True, False, False, False, True,
                     None]
    assert reasons == [None] * 12 + ["应填“是”或“否”"]


@pytest.mark.parametrize(("address", "expected"), [
    ("桂园小区3号楼2单元102室", ("桂园小区", "3", "2", "102")),
    ("桂园小区 3-2-102", ("桂园小区", "3", "2", "102")),
    ("3#2-102", (None, "3", "2", "102")),
    ("桂园小区三栋二单元一〇二", ("桂园小区", "3", "2", "102")),
    ("桂园小区３＃２－１０２", ("桂园小区", "3", "2", "102")),
    ("平桥区桂园小区二期 12幢1单元301", ("平桥区桂园小区二期", "12", "1", "301")),
    ("建业一号院3号楼102室", ("建业一号院", "3", None, "102")),
    ("A座1单元1201", (None, "A", "1", "1201")),
    ("乱写的地址", (None, None, None, None)),
    ("", (None, None, None, None)),
])
def test_split_address(address, expected):
    parts = split_address(pd.Series([address], index=[7]))
    assert list(parts.columns) == ["community", "building", "unit", "room"]
    assert tuple(parts.loc[7]) == expected


def test_split_address_keeps_index_and_is_vectorized_over_many():
    series = pd.Series(["桂园小区3号楼2单元102室", "3#2-102"] * 50_000,
                       index=range(3, 100_003))
    parts = split_address(series)
    assert list(parts.index[:2]) == [3, 4]
    assert (parts["room"] == "102").all() and parts["community"].isna().sum() == 50_000


def test_normalize_table_errors_carry_row_numbers_labels_and_values():
    frame = pd.DataFrame({
        "owner_name": ["张 三", "李四", "王五"],
        "building": ["三号楼", "3#", "#"],
        "phone": ["138 1234 5678", "12345", "0376-1234567"],
        "id_number": [ID_1, ID_2, ""],
        "delivery_date": [44409, "2021年2月30日", "2021.5.3"],
        "account_no": [" 00123 ", "Ａ-01", None],
    }, index=pd.Index([5, 7, 10], name="row"), dtype=object)
    result = normalize_table(frame, labels={"phone": "联系电话（必填）"})
    assert result.data.loc[5].tolist() == ["张三", "3", "13812345678", ID_1, dt.date(2021, 8, 1),
                                           "00123"]
    assert result.data.loc[7, "account_no"] == "A-01"
    assert result.data.loc[7, "phone"] is None and result.data.loc[10, "building"] is None
    assert list(result.errors.columns) == ERROR_COLUMNS
    assert result.errors[["row", "column", "value"]].values.tolist() == [
        [7, "联系电话（必填）", "12345"], [7, "身份证号", ID_2], [7, "交付日期", "2021年2月30日"],
        [10, "楼栋", "#"]]
    assert result.errors["reason"].tolist()[1] == "身份证号校验位不对，请逐位核对"
    assert result.error_rows.tolist() == [7, 10]


def test_normalize_table_without_errors_and_plugin_normalizer():
    frame = pd.DataFrame({"room": ["102室"], "account_no": ["0012345"]}, dtype=object)

    def account(column):
        clean = as_text(column)
        bad = ~clean.str.fullmatch(r"\d{10}")
        return clean.where(~bad), pd.Series(None, index=column.index, dtype=object).mask(
            bad, "户号应为10位数字")

    plain = normalize_table(frame)
    assert plain.errors.empty and list(plain.errors.columns) == ERROR_COLUMNS
    checked = normalize_table(frame, normalizers={"account_no": account})
    assert checked.errors["reason"].tolist() == ["户号应为10位数字"]


def test_address_column_is_split_when_parts_are_missing():
    frame = pd.DataFrame({"address": ["桂园小区3号楼2单元102室", "不知道", ""]},
                         index=[4, 5, 6], dtype=object)
    result = normalize_table(frame, labels={"address": "住址"})
    assert result.data.loc[4, ["community", "building", "unit", "room"]].tolist() == [
        "桂园小区", "3", "2", "102"]
    assert result.errors[["row", "column"]].values.tolist() == [[5, "住址"]]
    assert "地址无法拆分" in result.errors["reason"].iloc[0]


def test_workbook_to_normalized_frame():
    """Read → header → data rows → frame → normalize, on a ledger with a two-level header."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["平桥区一户一表改造工作台账"])
    ws.merge_cells("A1:H1")
    ws.append(["序号", "户主姓名", "住址", None, None, None, "联系电话", "交付日期"])
    ws.append([None, None, "小区", "楼栋", "单元", "室号"])
    ws.merge_cells("C2:F2")
    ws.append([1, "张三", "桂园小区", "三号楼", "二单元", "１０２", "138-1234-5678",
               dt.date(2021, 5, 3)])
    ws.append(["小计", 1])
    ws.append([2, "李四", "桂园小区", "3#", "2", "103室", "1234", "2021年5月3日"])
    buffer = io.BytesIO()
    wb.save(buffer)
    sheet = read_table(buffer.getvalue(), "台账.xlsx", max_bytes=1 << 20,
                       max_uncompressed_bytes=1 << 24, max_cells=10_000)
    header = locate_header(sheet.rows, CORE_ALIASES, merged=sheet.merged)
    frame = frame_from_rows(drop_non_data_rows(sheet.rows, header), header)
    result = normalize_table(frame, labels=header.labels)
    assert result.data.index.tolist() == [4, 6]
    assert result.data[["building", "unit", "room"]].values.tolist() == [
        ["3", "2", "102"], ["3", "2", "103"]]
    assert result.data["delivery_date"].tolist() == [dt.date(2021, 5, 3)] * 2
    assert result.errors[["row", "column", "value"]].values.tolist() == [[6, "联系电话", "1234"]]


def test_200000_rows_vectorized():
    """200,000 rows through every normalizer (no timing asserted), checked value by value.
    Phones and rooms are mostly distinct (the normalizers run on the whole column); the other
    columns repeat (they run once per distinct value and are taken back by code)."""
    n = 200_000
    rows = np.arange(n)
    forms = rows % 4
    numbers = pd.Series(rows).astype(str).str.zfill(8)
    phone_forms = [("138" + numbers).to_numpy(dtype=object),
                   ("+86 138 " + numbers).to_numpy(dtype=object),
                   ("０３７６-" + numbers.str.slice(1)).to_numpy(dtype=object),
                   numbers.str.slice(3).to_numpy(dtype=object)]
    phones = np.choose(forms, phone_forms)
    frame = pd.DataFrame({
        "community": np.where(forms == 0, "桂园\u3000小区", "桂园小区"),
        "building": np.array(["三号楼", "3#", "３栋", 3.0], dtype=object)[forms],
        "unit": np.array(["二单元", "2", "２", 2.0], dtype=object)[forms],
        "room": (rows % 90_000 + 10_000).astype(str).astype(object) + "室",
        "owner_name": np.where(forms == 1, "张 三", "张三"),
        "phone": phones,
        "id_number": np.array([ID_1, ID_1.lower(), ID_2, ID_3], dtype=object)[forms],
        "delivery_date": np.array([44409, "2021.8.1", "2021年8月1日", "20210801"],
                                  dtype=object)[forms],
        "opted_out": np.array(["否", "是", "", "√"], dtype=object)[forms],
    }, index=pd.Index(rows + 4, name="row")).astype(object)
    frame.loc[frame.index[-1], "delivery_date"] = "2021-02-30"
    result = normalize_table(frame)
    data = result.data
    assert len(data) == n and data.index[0] == 4
    assert (data["community"] == "桂园小区").all() and (data["owner_name"] == "张三").all()
    assert (data["building"] == "3").all() and (data["unit"] == "2").all()
    assert (data["room"] == (rows % 90_000 + 10_000).astype(str)).all()
    expected_phones = np.choose(forms, [("138" + numbers).to_numpy(dtype=object),
                                        ("138" + numbers).to_numpy(dtype=object),
                                        ("0376-" + numbers.str.slice(1)).to_numpy(dtype=object),
                                        np.full(n, None, dtype=object)])
    assert data["phone"].tolist() == expected_phones.tolist()
    assert data["id_number"].tolist()[:4] == [ID_1, ID_1, None, ID_3]
    assert (data["delivery_date"].iloc[:-1] == dt.date(2021, 8, 1)).all()
    assert data["opted_out"].tolist()[:4] == [False, True, False, True]
    errors = result.errors
    assert len(errors) == n // 4 * 2 + 1  # bad phones, bad ID numbers, one impossible date
    assert errors.groupby("field").size().to_dict() == {
        "delivery_date": 1, "id_number": n // 4, "phone": n // 4}
    assert errors.iloc[-1].tolist() == [n + 3, "delivery_date", "交付日期", "2021-02-30",
                                        "日期不存在（请核对月、日）"]
    assert errors.iloc[0].tolist()[:3] == [6, "id_number", "身份证号"]
    assert errors.iloc[1].tolist() == [7, "phone", "联系电话", "00003",
                                       "手机号应为11位（以1开头，这里有5位数字）；座机请写成区号-号码，如0376-1234567"]
    assert errors["row"].is_monotonic_increasing


def test_as_text_treats_every_unicode_space_as_python_does():
    """as_text runs on Arrow arrays with RE2, whose own \\s is ASCII only: the separators
    Python counts as whitespace (line separator, NEL, vertical tab, file separators, thin and
    ideographic spaces) still collapse to one space and are trimmed; zero-width characters go."""
    cells = pd.Series(["a\u2028b", "x\x85y", " \v1\x1c ", "三\u2009号\u3000楼", "\u200b2\ufeff",
                       "张\u202f\u205f三", 3.0, -5.0, "7.50", None])
    cleaned = as_text(cells).tolist()
    assert cleaned == ["a b", "x y", "1", "三 号 楼", "2", "张 三", "3", "-5", "7.50", ""]
    spaced = [0, 1, 2, 3, 5]  # Python's own idea of whitespace agrees
    assert [" ".join(cells[i].split()) for i in spaced] == [cleaned[i] for i in spaced]


SPACES = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


@pytest.mark.parametrize("cells", [
    ["3号楼", None, f"{SPACES}二单元{SPACES}", np.nan, pd.NA, "", SPACES, "１０２ 室"],  # strings only
    [None, np.nan, pd.NA],  # nothing
    [f" 3{SPACES}", 3, 3.0, 2.5, True, dt.datetime(2021, 5, 3, 8, 0), dt.date(2021, 5, 3),
     None, np.nan, "合 计", 13800138000],  # mixed, as calamine gives a sheet's cells
])
@pytest.mark.parametrize("strip", [False, True])
def test_cell_strings_is_str_per_cell(cells, strip):
    """Whichever path a column takes (Arrow for strings only, pandas for mixed), each cell is
    what `str` (and `str.strip`) make of it, "" when empty, in pandas' Arrow-backed str dtype."""
    column = pd.Series(cells, dtype=object, index=range(10, 10 + len(cells)))
    expected = ["" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                else (str(v).strip() if strip else str(v)) for v in cells]
    result = cell_strings(column, strip=strip)
    assert result.tolist() == expected
    assert result.dtype == "str" and result.index.equals(column.index)
