"""A large, messy household ledger (台账) as sub-district clerks send it, for the benchmarks.

`write_ledger(path, rows, tag)` writes an .xlsx with openpyxl's write-only mode (bounded
memory): two merged title rows (the title, 填报单位/填报日期), a two-level merged header
(住址 over 小区/楼栋/单元/室号), then `rows` data rows in blocks of one community each, every
block closed by a 小计 row, and a 合计 row and the 填表人 line at the end. The cells are
spelled as clerks type them: 三号楼 / 3# / 3栋 / 3号楼 / full-width ３, 二单元 / 2单元 / 2,
１０２ / 102室 / 102, phones with spaces, some bad phones (too short), and some duplicates (a
household repeated further down under another spelling of its address).

Write-only worksheets cannot merge cells, so the merges are added to the sheet's XML after
saving. `clean_rows(rows, tag)` yields the same households as prepared rows (the natural key
and normalized values the registry stores) for the "floor" measurement.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl

from onemeter.registry.normalize import household_key

TITLE = "平桥区一户一表改造工作台账"
FILLER = "填报单位：平桥办事处  填报日期：2021年8月1日"
HEADER_1 = ["序号", "户主姓名", "住址", None, None, None, "联系电话", "身份证号",
            "是否自愿不改造", "备注"]
HEADER_2 = [None, None, "小区", "楼栋", "单元", "室号"]
MERGES = ["A1:J1", "A2:J2", "C3:F3", *(f"{c}3:{c}4" for c in "ABGHIJ")]
#: Households per community block (a 小计 row closes each block).
PER_COMMUNITY = 500
#: Buildings per community, units per building, floors and rooms per floor.
BUILDINGS, UNITS, FLOORS, ROOMS = 10, 3, 6, 3
DUPLICATE_EVERY = 97   # every 97th data row repeats an earlier household of its block
BAD_PHONE_EVERY = 131  # every 131st data row has a 7-digit phone

_CN = "零一二三四五六七八九"
_FULL = str.maketrans("0123456789", "０１２３４５６７８９")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def _cn(n: int) -> str:
    """1…99 in Chinese numerals (三, 十二, 二十一)."""
    tens, ones = divmod(n, 10)
    if not tens:
        return _CN[ones]
    return ("" if tens == 1 else _CN[tens]) + "十" + (_CN[ones] if ones else "")


def community_name(index: int, tag: str) -> str:
    return f"基准{tag}第{index + 1}小区"


def _household(i: int) -> tuple[int, int, int, int]:
    """The i-th household of the ledger: community, building, unit, room number (e.g. 302)."""
    community, k = divmod(i, PER_COMMUNITY)
    building, k = divmod(k, UNITS * FLOORS * ROOMS)
    unit, k = divmod(k, FLOORS * ROOMS)
    floor, room = divmod(k, ROOMS)
    return community, building + 1, unit + 1, (floor + 1) * 100 + room + 1


def _spell_building(b: int, rng: random.Random) -> Any:
    return rng.choice([f"{_cn(b)}号楼", f"{b}#", f"{b}栋", f"{b}号楼", str(b).translate(_FULL),
                       b])


def _spell_unit(u: int, rng: random.Random) -> Any:
    return rng.choice([f"{_cn(u)}单元", f"{u}单元", u, str(u)])


def _spell_room(r: int, rng: random.Random) -> Any:
    return rng.choice([str(r).translate(_FULL), f"{r}室", r, str(r)])


def _phone(i: int) -> str:
    return f"13{(i * 7919) % 1_000_000_000:09d}"


def _name(i: int) -> str:
    return _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i // 7) % len(_GIVEN)] + (
        _GIVEN[(i // 3) % len(_GIVEN)] if i % 2 else "")


def _source(rows: int) -> Iterator[tuple[int, int, bool]]:
    """(data row index, household index, whether it repeats an earlier row of its block)."""
    household = 0
    for n in range(rows):
        if n % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 and household % PER_COMMUNITY > 10:
            yield n, household - 1 - n % 10, True
        else:
            yield n, household, False
            household += 1


def data_rows(rows: int, tag: str, seed: int = 20211) -> Iterator[list[Any]]:
    """The sheet rows below the header: data, 小计 after each community, 合计, 填表人."""
    rng = random.Random(seed)
    last = -1
    in_block = 0
    serial = 0
    for n, h, duplicate in _source(rows):
        community, b, u, r = _household(h)
        if community != last:
            if last >= 0:
                yield ["小计", None, None, None, None, None, None, None, None, f"{in_block}户"]
            last, in_block = community, 0
        in_block += 1
        serial += 1
        phone = _phone(h)
        if n % BAD_PHONE_EVERY == 7:
            phone = phone[:7]
        elif n % 3 == 0:
            phone = f"{phone[:3]} {phone[3:7]} {phone[7:]}"
        name = f" {_name(h)}" if n % 50 == 0 else _name(h)
        yield [serial, name, community_name(community, tag), _spell_building(b, rng),
               _spell_unit(u, rng), _spell_room(r, rng), phone, None,
               "是" if h % 211 == 0 else None, "重复录入" if duplicate else None]
    yield ["小计", None, None, None, None, None, None, None, None, f"{in_block}户"]
    yield ["合 计", f"{serial}户", None, None, None, None, None, None, None, None]
    yield ["填表人：郑一    审核人：王二"]


def clean_rows(rows: int, tag: str) -> Iterator[tuple[Any, ...]]:
    """The distinct households of the ledger, prepared as the registry stores them:
    (community, building, unit, room, natural_key, owner_name, phone, opted_out)."""
    for _, h, duplicate in _source(rows):
        if duplicate:
            continue
        community, b, u, r = _household(h)
        yield (community_name(community, tag), str(b), str(u), str(r),
               household_key(b, u, r), _name(h), _phone(h), h % 211 == 0)


def write_ledger(path: Path, rows: int, tag: str) -> Path:
    """Write the messy ledger of `rows` data rows to `path` (.xlsx); returns `path`."""
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("台账")
    ws.append([TITLE])
    ws.append([FILLER])
    ws.append(HEADER_1)
    ws.append(HEADER_2)
    for row in data_rows(rows, tag):
        ws.append(row)
    wb.save(path)
    _add_merges(path, MERGES)
    return path


def _add_merges(path: Path, refs: list[str]) -> None:
    """Insert <mergeCells> after </sheetData> of the first worksheet (write-only mode has
    no merges). The sheet XML is streamed through a temporary copy of the archive."""
    merge = (f'<mergeCells count="{len(refs)}">'
             + "".join(f'<mergeCell ref="{r}"/>' for r in refs) + "</mergeCells>").encode()
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".xlsx", delete=False) as tmp:
        out_path = Path(tmp.name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out_path, "w",
                                                       zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</sheetData>", b"</sheetData>" + merge, 1)
            out.writestr(info, data)
    shutil.move(out_path, path)
