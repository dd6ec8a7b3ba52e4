"""Reading uploaded spreadsheets (onemeter.imports.reader) and finding their header
(onemeter.imports.headers): real workbooks built here with openpyxl, CSVs in every encoding a
clerk's computer writes, and hostile files, each refused with its Chinese message.

No database: pure functions. The four .xls files under tests/fixtures/imports/ (5.5 KB
each) were written by xlwt 1.3.0, which is not a dependency:

    ws.write_merge(0, 0, 0, 6, "平桥区一户一表改造工作台账"); ...  # ledger.xls
    ws.write(0, 0, "小区"); ws.write(65535, 255, 1)                 # far_corner.xls
    # errors_hidden.xls: 小区 楼栋 单元 室号 户主 辅助列, 5 households of 桂园小区 3-2-10n;
    ws.row(2).set_cell_error(3, "#REF!")      # a BOOLERR error cell in 室号
    ws.write(4, 4, xlwt.Formula("NA()"))      # its FORMULA record's cached result then
    ws.row(3).hidden = True                   # patched to #N/A (02 00 2A 00 00 00 FF FF),
    ws.col(5).hidden = True                   # as Excel saves a failed VLOOKUP
    # dup_names.xls: sheets AA (#REF! in B2, row 2 hidden) and AB (#REF! in B5, row 4
    # hidden), each 户主 电话 + 5 rows; then AB's BOUNDSHEET name patched to AA
"""

from __future__ import annotations

import datetime as dt
import io
import random
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from onemeter.imports.headers import (
    CORE_ALIASES,
    HeaderNotFound,
    drop_non_data_rows,
    header_key,
    locate_header,
    merge_aliases,
)
from onemeter.imports.reader import ImportFileError, RawSheet, read_table

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
LIMITS = {"max_bytes": 5 * 1024 * 1024, "max_uncompressed_bytes": 50 * 1024 * 1024,
          "max_cells": 1_000_000}
TITLE = "平桥区一户一表改造工作台账"
FILLER = "填报单位：平桥办事处  填报日期：2021年8月1日"
ID_1 = "11010519491231002X"


def read(data: bytes | Path, filename: str, **overrides: int) -> RawSheet:
    return read_table(data, filename, **{**LIMITS, **overrides})


def refused(data: bytes | Path, filename: str, **overrides: int) -> str:
    with pytest.raises(ImportFileError) as caught:
        read(data, filename, **overrides)
    return str(caught.value)


def ledger_xlsx() -> bytes:
    """A ledger the way a sub-district office keeps it: two merged title rows, a two-level
    header (住址 over 小区/楼栋/单元/室号, the other headers merged down), a hidden helper
    column, blank rows, 小计/合计 rows, a header repeated for printing, a footer."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "台账"
    ws.append([TITLE])
    ws.merge_cells("A1:L1")
    ws.append([FILLER])
    ws.merge_cells("A2:L2")
    ws.append(["序号", "户主姓名", "住址", None, None, None, "联系电话\n（必填）", "身份证号*",
               "交付日期", "是否自愿不改造", "小区", "备注"])
    ws.append([None, None, "小区", "楼栋", "单元", "室号"])
    for col in "ABGHIJKL":
        ws.merge_cells(f"{col}3:{col}4")
    ws.merge_cells("C3:F3")
    ws.append([1, "张三", "桂园小区", "3号楼", "二单元", "１０２", "138 1234 5678", ID_1,
               dt.date(2021, 5, 3), "否", "辅助", None])                                # row 5
    ws.append([])                                                                    # row 6
    ws.append([2, "李 四", "桂园小区", "三栋", "2", 103, 13912345678, None, "2021.5.3", None,
               "辅助", "整栋改造"])                                                   # row 7
    ws.append(["小计", None, None, None, None, None, None, None, None, None, None, "2户"])  # 8
    ws.append(["序号", "户主姓名", "住址", None, None, None, "联系电话\n（必填）", "身份证号*",
               "交付日期", "是否自愿不改造", "小区", "备注"])                            # row 9
    ws.append([3, "王五", "建业小区", "3#", "1", "201室", "0376-1234567", "110105194912310021",
               44409, "是", "辅助", None])                                              # row 10
    ws.append([None, None, None])                                                    # row 11
    ws.append(["合 计", "3户"])                                                        # row 12
    ws.append(["填表人：赵六    审核人：钱七"])                                         # row 13
    ws.column_dimensions["K"].hidden = True
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def replace_part(data: bytes, part: str, content: bytes, *, stored: bool = False) -> bytes:
    """The same xlsx with one part's bytes replaced (`stored`: without compression, so no
    compression-ratio check stops it before the part's own scan)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == part:
                dst.writestr(info.filename, content,
                             compress_type=zipfile.ZIP_STORED if stored else None)
            else:
                dst.writestr(info.filename, src.read(info))
    return out.getvalue()


def sheet_xml(body: str, head: str = "") -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + head +
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            + body + "</worksheet>").encode()


def small_xlsx() -> bytes:
    wb = openpyxl.Workbook()
    wb.active.title = "台账"
    wb.active.append(["小区", "室号"])
    wb.active.append(["桂园小区", 102])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def in_subprocess(path: Path, filename: str) -> str:
    """Read in a child process limited to 2 GB of address space, so a regression that lets
    calamine allocate a dense 17-billion-cell range fails this test instead of aborting the
    whole test run (a Rust allocation failure is not a Python exception)."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from onemeter.imports.reader import ImportFileError, read_table
        try:
            read_table({str(path)!r}, {filename!r}, max_bytes=5 << 20,
                       max_uncompressed_bytes=50 << 20, max_cells=1_000_000)
        except ImportFileError as exc:
            print("REFUSED", exc)
        else:
            print("READ")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def compound_file(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE2 compound file (512-byte sectors, one FAT sector): streams of 4096 bytes
    or more in regular sectors, smaller ones in the mini stream, as Excel 97-2003 stores them."""
    size, free, end = 512, 0xFFFFFFFF, 0xFFFFFFFE
    fat, sectors, minifat, mini_data, entries = [0xFFFFFFFD, end], [], [], b"", []

    def chain(start: int, count: int) -> list[int]:
        return [start + k + 1 if k < count - 1 else end for k in range(count)]

    def place(data: bytes) -> int:
        start = 2 + len(sectors)
        chunks = [data[i:i + size].ljust(size, b"\0") for i in range(0, len(data), size)]
        fat.extend(chain(start, len(chunks)))
        sectors.extend(chunks)
        return start

    for name, data in streams.items():
        if len(data) >= 4096:
            entries.append((name, 2, place(data), len(data)))
        else:
            count = -(-len(data) // 64)
            entries.append((name, 2, len(minifat), len(data)))
            minifat.extend(chain(len(minifat), count))
            mini_data += data.ljust(count * 64, b"\0")
    root_start = place(mini_data) if mini_data else end
    minifat_start = place(struct.pack(f"<{len(minifat)}I", *minifat)) if minifat else end

    def entry(name: str, kind: int, start: int, length: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0"
        return (raw.ljust(64, b"\0") + struct.pack("<HBB", len(raw), kind, 1)
                + struct.pack("<III", free, free, 1 if kind == 5 else free) + bytes(36)
                + struct.pack("<IQ", start, length))

    directory = entry("Root Entry", 5, root_start, len(mini_data))
    directory += b"".join(entry(*e) for e in entries)
    header = (bytes.fromhex("D0CF11E0A1B11AE1") + bytes(16)
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<9I", 0, 1, 1, 0, 4096, minifat_start, 1 if minifat else 0, end, 0)
              + struct.pack("<I", 0) + b"\xff" * (4 * 108))
    fat_sector = struct.pack(f"<{len(fat)}I", *fat).ljust(size, b"\xff")
    return header + fat_sector + directory.ljust(size, b"\0") + b"".join(sectors)


def biff_workbook(*cells: tuple[int, int]) -> bytes:
    """A BIFF8 Workbook stream: globals naming one sheet "台账", the sheet with NUMBER cells."""
    def record(kind: int, body: bytes) -> bytes:
        return struct.pack("<HH", kind, len(body)) + body
    name = "台账".encode("utf-16-le")
    boundsheet_len = 4 + 6 + 2 + len(name)
    sheet_at = 20 + boundsheet_len + 4
    globals_ = (record(0x0809, bytes(16))
                + record(0x0085, struct.pack("<IBBBB", sheet_at, 0, 0, 2, 1) + name)
                + record(0x000A, b""))
    assert len(globals_) == sheet_at
    body = b"".join(record(0x0203, struct.pack("<HHHd", r, c, 0, 1.0)) for r, c in cells)
    return globals_ + record(0x0809, bytes(16)) + body + record(0x000A, b"")


# --------------------------------------------------------------------------------------------
# Good files


def test_ledger_xlsx_reads_with_row_numbers_merges_and_hidden_column():
    sheet = read(ledger_xlsx(), "台账.xlsx")
    assert sheet.source_kind == "xlsx" and sheet.sheet_name == "台账"
    assert sheet.rows[0][0] == TITLE and sheet.rows[1][0] == FILLER  # row 0 = Excel row 1
    assert sheet.rows[4][:3] == [1.0, "张三", "桂园小区"]
    assert sheet.rows[4][8] == dt.date(2021, 5, 3)  # a date cell arrives as a date
    assert sheet.hidden_columns == frozenset({10})  # column K
    assert (2, 2, 2, 5) in sheet.merged and (0, 0, 0, 11) in sheet.merged
    assert sheet.width == 12 and sheet.height == 13


def test_ledger_header_two_level_under_title_rows():
    sheet = read(ledger_xlsx(), "台账.xlsx")
    header = locate_header(sheet.rows, CORE_ALIASES, merged=sheet.merged,
                           hidden=sheet.hidden_columns)
    assert header.header_rows == (2, 3) and header.data_start == 4
    assert header.spreadsheet_row == 3
    assert header.columns == {
        "owner_name": 1, "community": 2, "building": 3, "unit": 4, "room": 5, "phone": 6,
        "id_number": 7, "delivery_date": 8, "opted_out": 9}
    assert header.labels["room"] == "住址/室号"
    assert header.labels["phone"] == "联系电话 （必填）"
    # The hidden helper column K is also headed 小区: the visible column wins.
    assert header.duplicates == {"community": (10,)}
    assert header.unmapped == {0: "序号", 11: "备注"}


def test_ledger_data_rows_keep_spreadsheet_row_numbers():
    sheet = read(ledger_xlsx(), "台账.xlsx")
    header = locate_header(sheet.rows, CORE_ALIASES, merged=sheet.merged,
                           hidden=sheet.hidden_columns)
    data = drop_non_data_rows(sheet.rows, header)
    assert data.row_numbers == [5, 7, 10]
    assert [row[1] for row in data.rows] == ["张三", "李 四", "王五"]
    assert dict(data.skipped) == {6: "空行", 8: "小计/合计行", 9: "重复的表头", 11: "空行",
                                  12: "小计/合计行", 13: "表尾（填表人/审核人/备注）"}
    # Only the first four columns count for 小计/合计: a data row may say 合计 in its notes.
    rows = [list(row) for row in sheet.rows]
    rows[4][11] = "合计两户"
    assert drop_non_data_rows(rows, header).row_numbers == [5, 7, 10]


def test_hidden_column_is_used_when_no_visible_column_has_the_field():
    """Clerks hide the ID column before printing; it is still the ledger's ID column."""
    rows = [["小区", "室号", "户主姓名", "身份证号"], ["桂园小区", "102", "张三", "x"]]
    header = locate_header(rows, CORE_ALIASES, hidden={3})
    assert header.columns["id_number"] == 3 and header.hidden_fields == ("id_number",)


def test_header_without_merge_information_is_inferred():
    """A CSV loses merges: 住址 followed by empty top cells over labels still spans them."""
    rows = [[TITLE, "", "", "", "", ""], ["户主姓名", "住址", "", "", "", "联系电话"],
            ["", "小区", "楼栋", "单元", "室号", ""], ["张三", "桂园小区", "3", "2", "102", "138"]]
    header = locate_header(rows, CORE_ALIASES)
    assert header.header_rows == (1, 2) and header.data_start == 3
    assert header.columns == {"owner_name": 0, "community": 1, "building": 2, "unit": 3,
                              "room": 4, "phone": 5}


def test_single_header_row_is_preferred_to_header_plus_data():
    rows = [["小区", "楼栋", "单元", "室号"], ["桂园小区", "3", "2", "102"]]
    header = locate_header(rows, CORE_ALIASES)
    assert header.header_rows == (0,) and header.data_start == 1


def test_header_spellings_and_plugin_aliases():
    assert header_key("联系电话\n（必填）") == "联系电话"
    assert header_key("＊ 姓 名") == "姓名"
    assert header_key("身份证号码*") == "身份证号码"
    aliases = merge_aliases(CORE_ALIASES, {"account_no": ("户号", "用户编号", "用电户号")})
    rows = [["说明：本表由办事处填写"], ["小区名称", "房 号", "业主姓名", "用电户号", "手机号"]]
    header = locate_header(rows, aliases)
    assert header.columns == {"community": 0, "room": 1, "owner_name": 2, "account_no": 3,
                              "phone": 4}
    with pytest.raises(ValueError, match="户号"):
        merge_aliases(CORE_ALIASES, {"account_no": ("户号",)}, {"meter_no": ("户号",)})


def test_no_header_is_refused_in_chinese():
    rows = [["通知"], ["各办事处：请于8月前完成摸底"], ["联系电话", "0376-1234567"]]
    with pytest.raises(HeaderNotFound) as caught:
        locate_header(rows, CORE_ALIASES)
    assert "没有找到表头" in str(caught.value) and "第3行" in str(caught.value)
    assert isinstance(caught.value, ImportFileError)


def test_column_number_row_and_template_rows_are_dropped():
    rows = [["序号", "小区", "楼栋", "室号", "户主"], [1, 2, 3, 4, 5],
            [1, "桂园小区", "3", "102", "张三"], [2, "", "", "", ""], [3, None, None, None, None],
            ["备注：本表一式两份"]]
    header = locate_header(rows, CORE_ALIASES)
    data = drop_non_data_rows(rows, header)
    assert data.row_numbers == [3]
    assert [reason for _, reason in data.skipped] == [
        "栏次行（列序号）", "空行（只有序号等未识别的列）", "空行（只有序号等未识别的列）",
        "表尾（填表人/审核人/备注）"]


def test_xls_fixture_reads_merges_dates_and_first_nonempty_sheet():
    sheet = read(FIXTURES / "ledger.xls", "台账.xls")
    assert sheet.source_kind == "xls" and sheet.hidden_columns == frozenset()
    assert sheet.sheet_names == ("台账", "Sheet2")
    assert sheet.rows[3][7] == dt.date(2021, 7, 31)
    assert sheet.rows[4][4] == "１０３"
    assert (0, 0, 0, 6) in sheet.merged
    header = locate_header(sheet.rows, CORE_ALIASES, merged=sheet.merged)
    data = drop_non_data_rows(sheet.rows, header)
    assert header.header_rows == (2,) and data.row_numbers == [4, 5]
    assert data.skipped == [(6, "小计/合计行")]


CSV_TEXT = f"{TITLE},,,\n小区,楼栋,室号,户主姓名\n桂园小区,３号楼,１０２,张三\n\n桂园小区,三栋,103,李四\n"


@pytest.mark.parametrize(("encoded", "encoding"), [
    (CSV_TEXT.encode("utf-8"), "utf-8"),
    (b"\xef\xbb\xbf" + CSV_TEXT.encode("utf-8"), "utf-8-sig"),
    (CSV_TEXT.encode("gbk"), "gbk"),
    ((CSV_TEXT + "桂园小区,5号楼,101,𠮷明\n").encode("gb18030"), "gb18030"),
])
def test_csv_encodings(encoded, encoding):
    sheet = read(encoded, "台账.csv")
    assert sheet.source_kind == "csv" and sheet.encoding == encoding
    assert sheet.rows[0][0] == TITLE and sheet.rows[2] == ["桂园小区", "３号楼", "１０２", "张三"]
    assert all(len(row) == 4 for row in sheet.rows)
    header = locate_header(sheet.rows, CORE_ALIASES)
    assert drop_non_data_rows(sheet.rows, header).row_numbers[:2] == [3, 5]


def test_path_and_file_object_sources(tmp_path):
    path = tmp_path / "upload.bin"
    path.write_bytes(small_xlsx())
    assert read(path, "台账.xlsx").rows[1] == ["桂园小区", 102.0]
    assert read(io.BytesIO(small_xlsx()), "台账.XLSX").rows[1] == ["桂园小区", 102.0]
    assert read(small_xlsx(), "台账.xlsm").source_kind == "xlsx"
    closed = io.BytesIO(small_xlsx())
    closed.close()
    assert refused(closed, "台账.xlsx") == "读取上传的文件失败，请重新上传"  # type: ignore[arg-type]
    assert refused(tmp_path / "missing.xlsx", "台账.xlsx") == "读取上传的文件失败，请重新上传"


def test_ods_reads():
    sheet = read(ods_file('<table:table-row><table:table-cell office:value-type="string">'
                          "<text:p>小区</text:p></table:table-cell></table:table-row>"
                          '<table:table-row table:number-rows-repeated="1048575">'
                          '<table:table-cell table:number-columns-repeated="1024"/>'
                          "</table:table-row>"), "台账.ods")
    assert sheet.source_kind == "ods" and sheet.rows == [["小区"]]


def ods_file(rows: str, head: str = '<?xml version="1.0" encoding="UTF-8"?>') -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
            '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
            '<manifest:file-entry manifest:full-path="/" manifest:media-type='
            '"application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry '
            'manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
            "</manifest:manifest>"))
        z.writestr("content.xml", (
            f'{head}<office:document-content '
            'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
            '<office:body><office:spreadsheet><table:table table:style-name="ta1" '
            f'table:name="台账">{rows}</table:table></office:spreadsheet></office:body>'
            "</office:document-content>"))
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Hostile and broken files


def test_empty_file():
    assert refused(b"", "台账.xlsx") == "文件是空的（0字节），请检查是否选错了文件"


def test_file_over_max_bytes(tmp_path):
    assert "文件太大" in refused(small_xlsx(), "台账.xlsx", max_bytes=1000)
    path = tmp_path / "big.xlsx"
    path.write_bytes(small_xlsx())
    assert "文件太大" in refused(path, "台账.xlsx", max_bytes=1000)


def test_text_file_renamed_xlsx():
    message = refused("小区,室号\n桂园小区,102\n".encode(), "台账.xlsx")
    assert message.startswith("文件内容不是Excel表格，可能是改了扩展名的文本文件")


def test_html_saved_as_xls():
    message = refused(b"<html><body><table><tr><td>1</td></tr></table></body></html>", "a.xls")
    assert "网页（HTML）" in message


@pytest.mark.parametrize(("data", "filename", "expected"), [
    (small_xlsx, "台账.xls", "文件内容是新版Excel（.xlsx）格式，但扩展名是.xls"),
    (lambda: (FIXTURES / "ledger.xls").read_bytes(), "台账.xlsx",
     "文件内容是旧版Excel（.xls）格式，但扩展名是.xlsx"),
    (small_xlsx, "台账.csv", "扩展名是.csv，但文件内容是Excel工作簿"),
    (small_xlsx, "台账.txt", "不支持的文件类型“.txt”"),
    (small_xlsx, "台账", "不支持的文件类型“（无扩展名）”"),
])
def test_content_and_extension_must_agree(data, filename, expected):
    assert refused(data(), filename).startswith(expected)


def test_word_document_is_not_a_workbook():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<document/>")
    assert refused(out.getvalue(), "台账.xlsx").startswith("文件内容是Word文档")


def test_zip_bomb_declared_size(tmp_path):
    """200 MB of zeros, compressed (about 200 KB); written and checked in bounded memory."""
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member:
            zeros = bytes(1024 * 1024)
            for _ in range(200):
                member.write(zeros)
    assert path.stat().st_size < 1024 * 1024
    message = refused(path, "台账.xlsx")
    assert "压缩炸弹" in message and "解压后共200 MB" in message


def test_zip_bomb_compression_ratio():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/sharedStrings.xml", bytes(8 * 1024 * 1024))
    message = refused(out.getvalue(), "台账.xlsx")
    assert "压缩炸弹" in message and "xl/sharedStrings.xml" in message and "倍" in message


def test_zip_member_lying_about_its_size():
    """A member whose headers declare 100 bytes but whose data inflate to 4 MB: zipfile stops
    at the declared size, the CRC no longer matches, the file is refused as broken."""
    data = bytearray(small_xlsx())
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("xl/padding.xml", b"<a>" + b" " * (4 * 1024 * 1024) + b"</a>")
    raw = bytearray(out.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo("xl/padding.xml")
    real = info.file_size.to_bytes(4, "little")
    assert raw.count(real) >= 2
    raw = raw.replace(real, (100).to_bytes(4, "little"))  # local header and central directory
    message = refused(bytes(raw), "台账.xlsx", max_uncompressed_bytes=3 * 1024 * 1024)
    assert "文件已损坏或不完整" in message and "xl/padding.xml" in message


def test_xml_external_entity_is_refused():
    xml = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&xxe;</t></is></c>'
                    "</row></sheetData>",
                    head='<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')
    message = refused(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml), "台账.xlsx")
    assert "xl/worksheets/sheet1.xml" in message
    assert "DOCTYPE/ENTITY声明（XML外部实体）" in message and "不会解析实体" in message


@pytest.mark.parametrize("offset", [-5, -1, 0, 3])
def test_dtd_marker_after_the_data_and_across_a_read_boundary_is_refused(offset):
    """The worksheet is checked for DTD markers by the same streamed pass that scans its cells
    (in reads of `_SCAN_CHUNK`); a marker anywhere, also one split between two reads, is seen."""
    from onemeter.imports import reader

    head = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>小区</t></is></c>'
                     "</row>").removesuffix(b"</worksheet>")
    noise = random.Random(offset).randbytes(reader._SCAN_CHUNK).hex().encode()  # incompressible
    filler = b"<!-- " + noise[:reader._SCAN_CHUNK - len(head) - 9 + offset] + b" -->"
    xml = head + filler + b'<!ENTITY a "b"></sheetData></worksheet>'
    assert xml.index(b"<!ENTITY") - reader._SCAN_CHUNK == offset
    message = refused(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml), "台账.xlsx")
    assert "“xl/worksheets/sheet1.xml”部分含有DOCTYPE/ENTITY声明" in message


def test_worksheet_lying_about_its_size_is_refused_by_the_scan():
    """The worksheet is not streamed ahead with the other parts: its own scan reads it, and a
    worksheet inflating past its declared size is refused there as broken."""
    xml = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>小区</t></is></c>'
                    "</row>" + "<row/>" * 400_000 + "</sheetData>")
    raw = bytearray(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml))
    real = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo(
        "xl/worksheets/sheet1.xml").file_size.to_bytes(4, "little")
    assert raw.count(real) >= 2
    raw = raw.replace(real, (200).to_bytes(4, "little"))
    message = refused(bytes(raw), "台账.xlsx")
    assert "文件已损坏或不完整" in message and "xl/worksheets/sheet1.xml" in message


def test_entity_in_utf16_part_is_refused():
    xml = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x/>'
    data = replace_part(small_xlsx(), "docProps/app.xml", xml.encode("utf-16"))
    assert "XML外部实体" in refused(data, "台账.xlsx")


def test_truncated_xlsx():
    data = small_xlsx()
    message = refused(data[: len(data) // 2], "台账.xlsx")
    assert message.startswith("文件已损坏或不完整（压缩包无法打开")


def test_truncated_xls():
    data = (FIXTURES / "ledger.xls").read_bytes()
    message = refused(data[: len(data) // 2], "台账.xls")
    assert message.startswith("旧版Excel（.xls）文件已损坏或不完整")


def test_declared_dimension_too_large():
    xml = sheet_xml('<dimension ref="A1:XFD1048576"/><sheetData><row r="1">'
                    '<c r="A1" t="inlineStr"><is><t>小区</t></is></c></row></sheetData>')
    message = refused(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml), "台账.xlsx")
    assert "声明的范围是A1:XFD1048576" in message and "读取前已拒绝" in message


def test_far_value_cell_with_a_lying_dimension(tmp_path):
    """A1 and XFD1048576 under dimension "A1": calamine would ask for 17 billion cells."""
    xml = sheet_xml('<dimension ref="A1"/><sheetData><row r="1"><c r="A1" t="inlineStr">'
                    '<is><t>小区</t></is></c></row><row r="1048576"><c r="XFD1048576">'
                    "<v>1</v></c></row></sheetData>")
    path = tmp_path / "far.xlsx"
    path.write_bytes(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml))
    assert in_subprocess(path, "台账.xlsx").startswith("REFUSED 工作表“台账”超过200,000行的上限")


def test_wide_sheet_is_refused_before_calamine_reads_it(tmp_path):
    xml = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>小区</t></is></c>'
                    '<c r="XFD1"><v>1</v></c></row><row r="5000"><c r="A5000"><v>1</v></c>'
                    "</row></sheetData>")
    path = tmp_path / "wide.xlsx"
    path.write_bytes(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml))
    out = in_subprocess(path, "台账.xlsx")
    assert "第5,000行、第16,384列（XFD5000）" in out and "超过1,000,000的上限" in out


def test_cells_without_references_are_placed_and_bounded():
    many = "".join("<c><v>1</v></c>" for _ in range(300))
    xml = sheet_xml(f'<sheetData><row r="4000">{many}</row></sheetData>')
    data = replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml)
    message = refused(data, "台账.xlsx")  # stops at the first cell past the limit
    assert "一直延伸到第4,000行、第251列（IQ4000）" in message
    assert read(data, "台账.xlsx", max_cells=2_000_000).height == 4000


@pytest.mark.parametrize("far_cell", ['<c t="n" r="XFD5000"><v>1</v></c>',
                                      '<c\tr="XFD5000"><v>1</v></c>',
                                      '<c r="XFD5000"\n><v>1</v></c>'])
def test_far_cell_written_unusually_is_still_found(far_cell):
    """The fast scan only trusts buffers whose every cell tag starts `<c r="`; a far cell with
    its r after another attribute or after a tab (no writer seen does it; a crafted file can)
    sends the buffer to the tag-by-tag walk, which still places and refuses it."""
    xml = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>小区</t></is></c>'
                    f'</row><row r="5000">{far_cell}</row></sheetData>')
    message = refused(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml), "台账.xlsx")
    assert "第5,000行、第16,384列（XFD5000）" in message


def test_styled_empty_cells_far_away_do_not_count():
    xml = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>小区</t></is></c>'
                    '</row><row r="60000"><c r="XFD60000" s="1"/></row></sheetData>')
    sheet = read(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml), "台账.xlsx")
    assert sheet.rows == [["小区"]]


def test_far_corner_xls(tmp_path):
    out = in_subprocess(FIXTURES / "far_corner.xls", "台账.xls")
    assert "第65,536行、第256列（IV65536）" in out


def test_far_corner_in_a_small_xls_stream():
    """A workbook stream under 4096 bytes lives in the compound file's mini stream."""
    data = compound_file({"Workbook": biff_workbook((0, 0), (65535, 255))})
    assert "工作表“台账”的内容一直延伸到第65,536行、第256列" in refused(data, "台账.xls")
    large = compound_file({"Workbook": biff_workbook(*[(r, 0) for r in range(400)],
                                                      (30000, 200))})
    assert "第30,001行、第201列" in refused(large, "台账.xls")


def test_password_protected_and_other_office_files():
    encrypted = compound_file({"EncryptionInfo": b"\x04" * 200,
                               "EncryptedPackage": b"\x00" * 5000})
    assert refused(encrypted, "台账.xlsx") == "文件有密码保护，请在Excel中去掉密码后再上传"
    assert refused(encrypted, "台账.xls") == "文件有密码保护，请在Excel中去掉密码后再上传"
    word = compound_file({"WordDocument": b"\x00" * 600})
    assert refused(word, "台账.xls").startswith("文件内容是旧版Word文档（.doc）")


@pytest.mark.parametrize(("kind", "run", "end"), [
    ("xlsx", '<c t="e" ', ""), ("xlsx", "<c ", ""), ("xlsx", '<row hidden="1" ', ""),
    ("xlsx", '<c r="A1" ', ""), ("xlsx", '<c r="A1" t="e">', "</c><x/>"),
    ("ods", "<table:table-cell ", ""), ("ods", "<table:table-row ", "")])
def test_a_long_run_of_unclosed_tags_is_scanned_in_linear_time(tmp_path, kind, run, end):
    """200,000 tag openings and no ">" after them (or error cells with one end tag after them
    all): the scan's patterns used to try every opening against the rest of the part (n²
    steps: hours for this file; the child's two minutes run out). Now each stops at the next
    "<" (an error cell's end is looked for up to the next cell), and the file is refused."""
    tail = (run * 200_000 + end).encode()
    if kind == "xlsx":
        data = small_xlsx()
        part = "xl/worksheets/sheet1.xml"
    else:
        data = ods_file('<table:table-row><table:table-cell office:value-type="string">'
                        "<text:p>小区</text:p></table:table-cell></table:table-row>")
        part = "content.xml"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        content = zf.read(part)
    path = tmp_path / f"tags.{kind}"
    path.write_bytes(replace_part(data, part, content + tail, stored=True))
    out = in_subprocess(path, f"台账.{kind}")
    if end:  # closed at last: calamine reads it
        assert out == "READ\n"
    else:
        assert out.startswith("REFUSED ") and "无法读取" in out  # calamine: tag not closed


def test_ods_repeated_rows_bomb():
    message = refused(ods_file(
        '<table:table-row table:number-rows-repeated="100000">'
        '<table:table-cell table:number-columns-repeated="1000" office:value-type="float" '
        'office:value="1"/></table:table-row>'), "台账.ods")
    assert "工作表“台账”" in message and "第100,000行、第1,000列" in message


def test_ods_content_is_checked_for_a_dtd_and_its_real_size_in_the_extent_scan(
        monkeypatch: pytest.MonkeyPatch):
    # content.xml is decompressed once by our checks (the extent scan; calamine reads it
    # again in Rust): the DTD and real-size checks ride on that pass.
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def counting_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    dtd = ods_file("", head="<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>")
    assert "“content.xml”部分含有DOCTYPE/ENTITY声明" in refused(dtd, "台账.ods")
    big = ods_file('<table:table-row><table:table-cell office:value-type="string"><text:p>小区'
                   "</text:p></table:table-cell>" + "<table:table-cell/>" * 20_000
                   + "</table:table-row>")
    message = refused(big, "台账.ods", max_uncompressed_bytes=200_000)
    assert "文件解压后异常庞大" in message
    opened.clear()
    assert read(big, "台账.ods").rows == [["小区"]]  # the same file under the default limit
    assert opened.count("content.xml") == 1


def test_too_many_rows():
    wb = openpyxl.Workbook()
    for i in range(60):
        wb.active.append(["桂园小区", i])
    buffer = io.BytesIO()
    wb.save(buffer)
    assert "超过50行的上限" in refused(buffer.getvalue(), "台账.xlsx", max_rows=50)
    csv_text = "\n".join(f"桂园小区,{i}" for i in range(60)).encode()
    assert "超过50行的上限" in refused(csv_text, "台账.csv", max_rows=50)


def test_empty_workbook_and_no_sheets():
    wb = openpyxl.Workbook()
    buffer = io.BytesIO()
    wb.save(buffer)
    assert refused(buffer.getvalue(), "台账.xlsx") == "所有可见的工作表都是空的，没有可导入的行"
    workbook = (b'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.'
                b'openxmlformats.org/spreadsheetml/2006/main"><sheets/></workbook>')
    message = refused(replace_part(buffer.getvalue(), "xl/workbook.xml", workbook), "a.xlsx")
    assert message == "工作簿里没有可见的工作表，没有可导入的内容"
    assert refused(b"\n\n,,\n", "台账.csv") == "CSV文件中没有内容（只有空行）"


def test_named_sheet_must_exist():
    message = refused(small_xlsx(), "台账.xlsx", sheet="汇总")  # type: ignore[arg-type]
    assert message == "文件中没有名为“汇总”的工作表；文件中的工作表：台账"


def test_binary_junk_and_unknown_encodings():
    assert "含有二进制数据" in refused(bytes(range(256)) * 4, "台账.csv")
    assert "UTF-16" in refused("小区,室号".encode("utf-16"), "台账.csv")
    assert "无法识别文件的文字编码" in refused(b"\x81\x30\xff\xfe\xfd" * 10, "台账.csv")


def test_xls_error_cells_hidden_rows_and_columns_are_read_from_the_biff_records():
    """calamine reads an .xls error cell, and a formula whose cached result is an error, as
    "": the reader's walk of the BIFF records puts the text back and finds what is hidden."""
    sheet = read(FIXTURES / "errors_hidden.xls", "台账.xls")
    assert [row[3] for row in sheet.rows[1:]] == [101, "#REF!", 103, 104, 105]
    assert [row[4] for row in sheet.rows[1:]] == ["住户1", "住户2", "住户3", "#N/A", "住户5"]
    assert sheet.hidden_rows == frozenset({3}) and sheet.hidden_columns == frozenset({5})


def test_error_cells_closed_with_whitespace_in_the_end_tag_keep_their_text():
    xml = sheet_xml('<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>小区</t></is></c>'
                    '<c r="B1" t="e"><v>#N/A</v></c ><c r="C1" t="e"><v>#REF!</v></c\n>'
                    '<c r="D1" t="e"></c><c r="E1" t="inlineStr"><is><t>室号</t></is></c>'
                    '</row></sheetData>')
    sheet = read(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml), "台账.xlsx")
    assert sheet.rows[0] == ["小区", "#N/A", "#REF!", "", "室号"]  # no cached value: empty


def biff5_workbook() -> bytes:
    """An Excel 95 (BIFF5) Workbook stream in code page 936: sheet "台账" (its name in GBK,
    a length byte and no flags byte), a LABEL header, row 2 hidden (ROW fDyZero) with a
    BOOLERR #N/A in B3."""
    def record(kind: int, body: bytes) -> bytes:
        return struct.pack("<HH", kind, len(body)) + body

    def bof(kind: int) -> bytes:
        return record(0x0809, struct.pack("<HHHH", 0x0500, kind, 0x0DBB, 0x07CC))

    def label(r: int, c: int, text: str) -> bytes:
        raw = text.encode("gbk")
        return record(0x0204, struct.pack("<HHHH", r, c, 15, len(raw)) + raw)

    name = "台账".encode("gbk")

    def globals_(at: int) -> bytes:
        return (bof(0x0005) + record(0x0042, struct.pack("<H", 936))
                + record(0x0085, struct.pack("<IHB", at, 0, len(name)) + name)
                + record(0x000A, b""))

    sheet = (bof(0x0010) + record(0x0000, struct.pack("<HHHH", 0, 3, 0, 2))
             + record(0x0208, struct.pack("<HHHHHHH", 2, 0, 2, 0x8000 | 255, 0, 0, 0x0120))
             + label(0, 0, "户主") + label(0, 1, "电话") + label(1, 0, "张三")
             + record(0x0203, struct.pack("<HHHd", 1, 1, 15, 1.0)) + label(2, 0, "李四")
             + record(0x0205, struct.pack("<HHHBB", 2, 1, 15, 0x2A, 1)) + record(0x000A, b""))
    stream = globals_(len(globals_(0))) + sheet
    return stream + b"\x00" * (4096 - len(stream))


def test_an_excel_95_sheets_error_cells_and_hidden_rows_are_found():
    """A sheet's marks are filed by its position, not its name: calamine decodes a BIFF5
    name in a code page other than 1252 as replacement characters, and a BIFF5 BOUNDSHEET
    read as BIFF8 gave '敨瑥�'; either way the marks were lost. Our own messages name the
    sheet in the workbook's code page."""
    data = compound_file({"Book": biff5_workbook()})
    sheet = read(data, "台账.xls")
    assert sheet.rows[2][1] == "#N/A" and sheet.hidden_rows == frozenset({2})
    assert "工作表“台账”" in refused(data, "台账.xls", max_cells=4)


def test_of_two_xls_sheets_with_one_name_the_marks_are_those_of_the_sheet_calamine_reads():
    """calamine keeps the last sheet of a name; its error cell and hidden row go with it."""
    sheet = read(FIXTURES / "dup_names.xls", "台账.xls")
    assert sheet.rows[1][0] == "second1" and sheet.rows[4][1] == "#REF!"
    assert sheet.hidden_rows == frozenset({3})


def test_two_xlsx_sheets_with_one_name_are_refused(tmp_path):
    """calamine reads the first of them and the checks scanned the last: a far cell in the
    first made calamine allocate past the limit and abort the process."""
    wb = openpyxl.Workbook()
    wb.active.title = "台账"
    wb.active["XFD50000"] = 1
    wb.create_sheet("小计").append(["小区"])
    buffer = io.BytesIO()
    wb.save(buffer)
    with zipfile.ZipFile(buffer) as zf:
        workbook = zf.read("xl/workbook.xml").replace('name="小计"'.encode(),
                                                      'name="台账"'.encode())
    path = tmp_path / "dup.xlsx"
    path.write_bytes(replace_part(buffer.getvalue(), "xl/workbook.xml", workbook))
    assert in_subprocess(path, "台账.xlsx").startswith("REFUSED 工作簿中有两个都叫“台账”的工作表")


@pytest.mark.parametrize("prolog", ["<!-- <x:worksheet -->", ""])
@pytest.mark.parametrize("prefix", ["", "x:"])
def test_far_cells_are_found_whatever_prefix_a_comment_or_the_root_names(tmp_path, prolog, prefix):
    """The fast path took the cells' prefix from the first "…:worksheet" text: a comment
    naming x: made it look for <x:c and find no cells, so no limit applied."""
    ns = 'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    cells = "".join(f'<{prefix}c r="A{r}" t="e"><{prefix}v>#N/A</{prefix}v></{prefix}c>'
                    for r in range(1, 3))
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<{prefix or ""}worksheet '
           f'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" {ns}>'
           f'<{prefix}sheetData><{prefix}row r="1">{cells}</{prefix}row>'
           f'<{prefix}row r="4000"><{prefix}c r="ZZ4000"><{prefix}v>1</{prefix}v></{prefix}c>'
           f'</{prefix}row></{prefix}sheetData></{prefix}worksheet>').encode()
    path = tmp_path / "far.xlsx"
    path.write_bytes(replace_part(small_xlsx(), "xl/worksheets/sheet1.xml", xml))
    assert "一直延伸到第4,000行、第702列" in in_subprocess(path, "台账.xlsx")
