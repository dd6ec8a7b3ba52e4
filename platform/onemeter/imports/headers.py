"""Finding the header of a ledger sheet and the rows that are data.

Government ledgers put one or two merged title rows above the header ("平桥区一户一表改造工作
台账", "填报单位：平桥办事处  填报日期：2021年8月1日"), sometimes a two-level header ("住址"
merged over "小区 | 楼栋 | 单元 | 室号"; "户主姓名" merged down over the empty cell below it),
and below the data 小计/合计 rows, repeated headers of a printed page and a 填表人/审核人
footer. `locate_header` scores the first rows by how many cells resolve through the aliases and
takes the best; `drop_non_data_rows` keeps the rows that are data, each with its spreadsheet row
number (as Excel shows it, for error messages).

Header text is compared after NFKC (full-width → half-width), without any whitespace or line
break, without a leading "*" or trailing "*", "（必填）", "（选填）" or colon, ASCII lower-cased.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from onemeter.imports.reader import EXCEL_ERROR, ImportFileError
from onemeter.registry.normalize import normalize_part

#: Header spellings of the household ledger's fields (canonical field → spellings).
CORE_ALIASES: dict[str, tuple[str, ...]] = {
    "community": ("小区", "小区名称", "小区名", "项目名称"),
    "address": ("地址", "住址", "详细地址", "门牌地址"),
    "building": ("楼栋", "楼号", "栋号", "幢", "楼栋号", "幢号"),
    "unit": ("单元", "单元号"),
    "room": ("室号", "房号", "门牌号", "户室号", "房间号"),
    "owner_name": ("户主", "户主姓名", "业主", "业主姓名", "姓名", "住户姓名"),
    "phone": ("电话", "联系电话", "手机", "手机号", "联系方式", "手机号码", "电话号码"),
    "id_number": ("身份证号", "身份证号码", "证件号码", "身份证", "公民身份号码"),
    "opted_out": ("是否自愿不改造", "不愿参与"),
    "delivery_date": ("交付日期", "交房日期", "竣工日期"),
}

#: Chinese names of the core fields, for messages about a missing or doubled column.
FIELD_NAMES: dict[str, str] = {
    "community": "小区", "address": "地址", "building": "楼栋", "unit": "单元", "room": "室号",
    "owner_name": "户主姓名", "phone": "联系电话", "id_number": "身份证号",
    "opted_out": "是否自愿不改造", "delivery_date": "交付日期",
}

#: Rows scanned for the header.
HEADER_SCAN_ROWS = 15
#: Columns in which a 小计/合计 is looked for.
_TOTAL_COLUMNS = 4
#: Beginnings of footer rows (after NFKC and without spaces).
_FOOTER_WORDS = ("填表人", "填报人", "制表人", "审核人", "审核:", "负责人", "单位负责人", "联系人:",
                 "备注:", "说明:", "注:", "填表日期", "填报日期", "制表日期", "填报单位", "经办人",
                 "单位(盖章)", "(盖章)")

#: Their first characters.
_FOOTER_LEADS = frozenset(word[0] for word in _FOOTER_WORDS)

_SPACES = re.compile(r"\s+")
_MARKS = re.compile(r"^[*]+|(?:[*]|\((?:必填|选填|必填项|选填项|可选)\)|[:])+$")


class HeaderNotFound(ImportFileError):
    """No row near the top of the sheet looks like the ledger's header."""


def header_key(value: Any) -> str:
    """A header cell as compared with aliases: "联系电话\\n（必填）" → "联系电话", "＊姓 名" → "姓名"."""
    if value is None:
        return ""
    text = _SPACES.sub("", unicodedata.normalize("NFKC", str(value)))
    previous = None
    while previous != text:
        previous, text = text, _MARKS.sub("", text)
    return text.lower()


def merge_aliases(*tables: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """CORE_ALIASES plus a plugin's (e.g. {"account_no": ("户号", "用户编号", "用电户号")}).

    A spelling claimed by two different fields is a configuration error: ValueError.
    """
    merged: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for table in tables:
        for canonical, spellings in table.items():
            for spelling in spellings:
                key = header_key(spelling)
                if owner.setdefault(key, canonical) != canonical:
                    raise ValueError(f"表头“{spelling}”同时对应了{owner[key]}和{canonical}两个字段")
                if spelling not in merged.setdefault(canonical, []):
                    merged[canonical].append(spelling)
    return {canonical: tuple(spellings) for canonical, spellings in merged.items()}


def _lookup(aliases: Mapping[str, Iterable[str]]) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for canonical, spellings in aliases.items():
        for spelling in (canonical, *spellings):
            key = header_key(spelling)
            if lookup.setdefault(key, canonical) != canonical:
                raise ValueError(f"表头“{spelling}”同时对应了{lookup[key]}和{canonical}两个字段")
    return lookup


@dataclass(frozen=True)
class HeaderMatch:
    """Where the header is and what each column means. Indexes are 0-based into the rows."""

    #: The (first) header row; `header_rows` has both rows of a two-level header.
    header_row: int
    header_rows: tuple[int, ...]
    #: The first row after the header.
    data_start: int
    #: canonical field → column index.
    columns: dict[str, int]
    #: canonical field → the header as the sheet writes it ("住址/室号"), for messages.
    labels: dict[str, str]
    #: column index → header text of the columns no alias matched (序号, 备注, …).
    unmapped: dict[int, str]
    #: canonical field → further columns with the same meaning (the first one is used).
    duplicates: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Fields taken from a hidden column (no visible column had them).
    hidden_fields: tuple[str, ...] = ()

    @property
    def spreadsheet_row(self) -> int:
        """The header's row number as Excel shows it (1-based)."""
        return self.header_row + 1


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _SPACES.sub(" ", str(value)).strip()


def _row_texts(rows: Sequence[Sequence[Any]], index: int, width: int) -> list[str]:
    row = rows[index] if index < len(rows) else ()
    return [_text(row[c]) if c < len(row) else "" for c in range(width)]


def _candidate(labels: dict[int, tuple[str, list[str]]], lookup: dict[str, str],
               hidden: Collection[int]) -> tuple[dict[str, int], dict[str, str], dict[int, str],
                                                 dict[str, tuple[int, ...]], tuple[str, ...]]:
    """Map columns → fields; visible columns first, so a hidden helper column never wins."""
    columns: dict[str, int] = {}
    shown: dict[str, str] = {}
    unmapped: dict[int, str] = {}
    extra: dict[str, list[int]] = {}
    from_hidden: list[str] = []
    order = sorted(labels, key=lambda c: (c in hidden, c))
    for c in order:
        label, keys = labels[c]
        canonical = next((lookup[k] for k in _with_plain(keys) if k in lookup), None)
        if canonical is None:
            unmapped[c] = label
        elif canonical in columns:
            extra.setdefault(canonical, []).append(c)
        else:
            columns[canonical] = c
            shown[canonical] = label
            if c in hidden:
                from_hidden.append(canonical)
    return (columns, shown, dict(sorted(unmapped.items())),
            {k: tuple(v) for k, v in extra.items()}, tuple(from_hidden))


#: Words in a bracketed note that make a column something else than its field: 身份证号（后六位）
#: holds part of an ID number, not one.
_PARTIAL_NOTE = re.compile(r"[前后末尾]|部分|脱敏|隐藏|掩码|\*")


def _with_plain(keys: Iterable[str]) -> Iterator[str]:
    """Each header key, then the same without a trailing note in brackets: "是否自愿不改造（是/否）",
    "联系电话（手机）", "身份证号码（18位）" also match their field's spellings (not a note saying
    the column holds part of the value: 身份证号（后六位））."""
    for key in keys:
        yield key
        plain = key
        while plain.endswith(")") and "(" in plain:
            note = plain[plain.rindex("("):]
            if _PARTIAL_NOTE.search(note):
                break
            plain = plain[:plain.rindex("(")]
            if plain:
                yield plain


def _single_labels(texts: list[str]) -> dict[int, tuple[str, list[str]]]:
    return {c: (t, [header_key(t)]) for c, t in enumerate(texts) if t}


def _two_level_labels(upper: list[str], lower: list[str], top: int,
                      merged: Sequence[tuple[int, int, int, int]]
                      ) -> dict[int, tuple[str, list[str]]] | None:
    """Combine a top row spanning several columns with the row below it, or None when the top
    row spans nothing (then the pair is not a two-level header)."""
    width = len(upper)
    parent = [""] * width
    spans = False
    for first_row, first_col, last_row, last_col in merged:
        if first_row == top and last_row == top and last_col > first_col and upper[first_col]:
            for c in range(first_col, min(last_col, width - 1) + 1):
                parent[c] = upper[first_col]
            if sum(1 for c in range(first_col, min(last_col, width - 1) + 1) if lower[c]) >= 2:
                spans = True
    # Without merge information (CSV, or a writer that lost it): a top cell followed by empty
    # top cells, with labels below all of them, spans those columns.
    c = 0
    while c < width:
        if upper[c] and lower[c] and not parent[c]:
            end = c + 1
            while end < width and not upper[end] and lower[end] and not parent[end]:
                end += 1
            if end - c >= 2:
                for k in range(c, end):
                    parent[k] = upper[c]
                spans = True
            c = end
        else:
            c += 1
    if not spans:
        return None
    labels: dict[int, tuple[str, list[str]]] = {}
    for c in range(width):
        up, low, over = upper[c], lower[c], parent[c] or upper[c]
        if low:
            shown = f"{over}/{low}" if over and over != low else low
            labels[c] = (shown, [header_key(low), header_key(over + low)])
        elif up:
            labels[c] = (up, [header_key(up)])  # merged down over the empty cell below
    return labels


def locate_header(rows: Sequence[Sequence[Any]], aliases: Mapping[str, Iterable[str]], *,
                  merged: Sequence[tuple[int, int, int, int]] = (),
                  hidden: Collection[int] | None = None, scan_rows: int = HEADER_SCAN_ROWS,
                  min_fields: int = 2) -> HeaderMatch:
    """The header among the first `scan_rows` rows: the row (or pair of rows, for a two-level
    header) whose cells resolve to the most distinct fields through `aliases`.

    `merged` and `hidden` come from `RawSheet.merged` / `RawSheet.hidden_columns`. Ties go to
    the single row, then to the higher row. Fewer than `min_fields` fields → HeaderNotFound.
    """
    lookup = _lookup(aliases)
    hidden = frozenset(hidden or ())
    width = max((len(row) for row in rows[:scan_rows + 1]), default=0)
    texts = [_row_texts(rows, i, width) for i in range(min(len(rows), scan_rows + 1))]
    best: tuple[tuple[int, int, int], HeaderMatch] | None = None
    for i in range(min(len(rows), scan_rows)):
        options = [((i,), _single_labels(texts[i]))]
        if i + 1 < len(texts):
            pair = _two_level_labels(texts[i], texts[i + 1], i, merged)
            if pair is not None:
                options.append(((i, i + 1), pair))
        for used, labels in options:
            columns, shown, unmapped, duplicates, from_hidden = _candidate(labels, lookup, hidden)
            score = (len(columns), -len(used), -i)
            if best is None or score > best[0]:
                best = (score, HeaderMatch(
                    header_row=used[0], header_rows=used, data_start=used[-1] + 1,
                    columns=columns, labels=shown, unmapped=unmapped, duplicates=duplicates,
                    hidden_fields=from_hidden))
    if best is None or len(best[1].columns) < min_fields:
        wanted = "、".join(FIELD_NAMES.get(k, k) for k in list(aliases)[:8])
        found = ""
        if best is not None and best[1].columns:
            found = (f"最接近的是第{best[1].spreadsheet_row}行，只认出了"
                     f"“{'、'.join(best[1].labels.values())}”。")
        raise HeaderNotFound(
            f"在表格前{scan_rows}行中没有找到表头：至少要有{min_fields}列的列名能对应到"
            f"{wanted}等字段。{found}请检查是否选错了工作表，或把列名改成常用写法")
    return best[1]


@dataclass(frozen=True)
class DataRows:
    """The data rows of a sheet, each with its spreadsheet row number (1-based)."""

    row_numbers: list[int]
    rows: list[list[Any]]
    #: (row number, reason) of every row dropped below the header.
    skipped: list[tuple[int, str]]
    #: The same rows as an object frame (columns 0…width-1, indexed by row number) when
    #: `drop_non_data_rows` built one: `normalize.frame_from_rows` takes its columns from it
    #: instead of building a second frame from the lists.
    frame: pd.DataFrame | None = None


def _filled(value: Any) -> bool:
    return not (value is None or (isinstance(value, str) and not value.strip()))


def _compact(value: Any) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", _text(value)))


def _is_column_numbers(row: Sequence[Any]) -> bool:
    """A "栏次" row under the header: 1, 2, 3, … in its filled cells and nothing else."""
    values = [v for v in row if _filled(v)]
    if len(values) < 4:
        return False
    try:
        numbers = [float(_compact(v)) for v in values]
    except ValueError:
        return False
    return numbers == [float(n) for n in range(1, len(values) + 1)]


#: Python's whitespace (what `str.isspace` accepts) as an RE2 class, for pyarrow.compute.
WHITESPACE = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\pZ]"


def cell_strings(column: pd.Series, *, strip: bool = False) -> pd.Series:
    """Cells as strings in pandas' Arrow-backed str dtype: "" for an empty cell (None, NaN,
    NA), anything else as `str` writes it; `strip` trims whitespace as `str.strip` does.

    The one conversion the header finder, the normalizers and the planner share. (Sending
    columns of strings only straight to Arrow was tried: the type check ate the gain.)"""
    values = column.astype(object)
    text = values.where(values.notna(), "").astype("str")
    return text.str.strip() if strip else text


def excel_errors(strings: pd.Series) -> np.ndarray:
    """Which cells (as `cell_strings(…, strip=True)` gives them) are an Excel error value
    (#N/A, #REF! …: a formula failed). The full pattern runs only on the few cells that start
    with "#"."""
    found = strings.str.startswith("#").fillna(False).to_numpy(dtype=bool, copy=True)
    if found.any():
        found[found] = (strings[found].str.upper().str.fullmatch(EXCEL_ERROR)
                        .fillna(False).to_numpy(dtype=bool))
    return found


#: At most this many cells are looked at to fill merged ranges down (a hostile file's ranges
#: may overlap by the million; a real ledger's cover a few thousand cells).
MERGED_FILL_LIMIT = 2_000_000


def fill_merged_down(rows: list[list[Any]], merged: Sequence[tuple[int, int, int, int]],
                     start: int) -> int:
    """Repeat the value of each range merged down over data rows into the cells below it, in
    place: a ledger merges 小区 (and 楼栋) over a community's households, and only the range's
    first cell holds the value. Only ranges starting at or below `start` (the first data row)
    and one column wide: a merge across columns is a section title or a remark, not a value.
    At most MERGED_FILL_LIMIT cells are looked at. Returns the number of cells filled."""
    filled = visited = 0
    for first_row, first_col, last_row, last_col in merged:
        if (first_row < start or last_row <= first_row or last_col > first_col
                or first_row >= len(rows)):
            continue
        head = rows[first_row]
        if first_col >= len(head) or not _filled(head[first_col]):
            continue
        value = head[first_col]
        stop = min(last_row, len(rows) - 1)
        visited += stop - first_row  # overlapping ranges of a hostile file: cells looked at
        if visited > MERGED_FILL_LIMIT:
            break
        for r in range(first_row + 1, stop + 1):
            row = rows[r]
            if first_col < len(row) and not _filled(row[first_col]):
                row[first_col] = value
                filled += 1
    return filled


_TOTAL_PATTERN = r"(?:小\s*计|合\s*计|总\s*计|共\s*计)"


def section_rows(merged: Sequence[tuple[int, int, int, int]], header: HeaderMatch
                 ) -> frozenset[int]:
    """Rows (0-based) inside a range merged across the table below the header: a section
    title ("二、建业小区") spanning three or more columns, two of them the ledger's fields."""
    fields = set(header.columns.values())
    found: set[int] = set()
    for first_row, first_col, last_row, last_col in merged:  # a hostile file's may be wide
        if (first_row >= header.data_start and last_col - first_col >= 2
                and sum(first_col <= c <= last_col for c in fields) >= 2):
            found.update(range(first_row, last_row + 1))
        if len(found) > MERGED_FILL_LIMIT:
            break
    return frozenset(found)


def drop_non_data_rows(rows: Sequence[Sequence[Any]], header: HeaderMatch, *,
                       start: int | None = None, stop: int | None = None,
                       sections: Collection[int] = frozenset()) -> DataRows:
    """The rows below the header that are data (vectorized over the rows with pandas/numpy).

    Dropped, each with its reason: blank rows and rows where no mapped column has a value
    (a template's pre-numbered empty rows; an Excel error value such as #N/A, left by a
    formula filled down past the data, is no value), 小计/合计/总计/共计 rows (such a word anywhere
    in a cell of the first four columns: "桂园小区合计"), repeated header rows (a printed ledger repeats it per page), a 栏次 row of column
    numbers right under the header, and footer rows (填表人/审核人/备注：…).

    `sections` (0-based, from `section_rows`) are section titles merged across the table.
    `start`/`stop` (0-based list positions, default: from the header's data start to the end)
    take one block of the rows; each row's verdict depends only on the row and the header, so
    blocks give the rows the whole sheet would, block by block.
    """
    first_block = start is None or start <= header.data_start
    start = header.data_start if first_block else start
    stop = len(rows) if stop is None else min(stop, len(rows))
    below = rows[start:stop]
    if not below:
        return DataRows(row_numbers=[], rows=[], skipped=[])
    width = max(map(len, below))
    if width == 0:
        return DataRows(row_numbers=[], rows=[],
                        skipped=[(n, "空行") for n in range(start + 1, stop + 1)])
    if min(map(len, below)) < width:
        below = [list(row) + [""] * (width - len(row)) for row in below]
    body = pd.DataFrame(below, dtype=object)
    strings = {c: cell_strings(body[c], strip=True) for c in body.columns}
    filled = np.column_stack([(strings[c] != "").to_numpy() for c in body.columns])
    blank = ~filled.any(axis=1)
    # A formula filled down past the data leaves #N/A in rows that hold nothing else.
    valued = filled & ~np.column_stack([excel_errors(strings[c]) for c in body.columns])
    errors_only = ~blank & ~valued.any(axis=1)
    first_at = filled.argmax(axis=1)
    first = cell_strings(pd.Series(body.to_numpy(dtype=object)[np.arange(len(body)), first_at]),
                         strip=True)
    # Footers and totals are few: the full test runs only on the rows whose first character
    # (NFKC) could begin a footer word, or whose cell has a 计 at all.
    footer = np.zeros(len(body), dtype=bool)
    lead = first.str.slice(0, 1).str.normalize("NFKC").isin(_FOOTER_LEADS).to_numpy(dtype=bool)
    if lead.any():
        footer[lead] = (first[lead].str.normalize("NFKC").str.replace(r"\s+", "", regex=True)
                        .str.startswith(_FOOTER_WORDS).to_numpy(dtype=bool))
    total = np.zeros(len(body), dtype=bool)
    for c in list(body.columns)[:_TOTAL_COLUMNS]:
        maybe = strings[c].str.contains("计", regex=False).to_numpy(dtype=bool)
        if maybe.any():
            total[maybe] |= strings[c][maybe].str.contains(_TOTAL_PATTERN).to_numpy(dtype=bool)

    mapped = [c for c in header.columns.values() if c < width]
    repeated = np.zeros(len(body), dtype=bool)
    unmapped_only = np.zeros(len(body), dtype=bool)
    if mapped:
        same = np.zeros(len(body), dtype=np.int64)
        for canonical, c in header.columns.items():
            if c >= width:
                continue
            cells = [rows[r][c] for r in header.header_rows if c < len(rows[r])]
            known = {str(v).strip() for v in cells if v is not None}
            known |= {_text(v) for v in cells} | {header_key(v) for v in cells}
            known |= {header_key(part) for part in header.labels[canonical].split("/")}
            known.discard("")
            same += strings[c].isin(known).to_numpy(dtype=bool)
        repeated = same >= max(2, (len(header.columns) + 1) // 2)
        unmapped_only = ~valued[:, mapped].any(axis=1)
    numbering = np.zeros(len(body), dtype=bool)
    numbering[0] = first_block and _is_column_numbers(below[0])

    section = np.zeros(len(body), dtype=bool)
    if sections:
        section = np.isin(np.arange(start, start + len(body)), np.fromiter(sections, dtype=int))
    reason = np.full(len(body), None, dtype=object)
    with_errors = unmapped_only & (filled & ~valued).any(axis=1)
    for mask, text in ((unmapped_only, "空行（只有序号等未识别的列）"),
                       (with_errors, "空行（只有序号等未识别的列和公式的错误值，如#N/A）"),
                       (errors_only, "空行（只有公式的错误值，如#N/A）"), (numbering, "栏次行（列序号）"),
                       (repeated, "重复的表头"), (total, "小计/合计行"),
                       (footer, "表尾（填表人/审核人/备注）"), (blank, "空行"),
                       (section, "分节标题（跨列合并的单元格）")):
        reason[mask] = text  # later rules take precedence
    numbers = np.arange(start + 1, start + 1 + len(body))
    dropped = np.not_equal(reason, None)
    keep = np.flatnonzero(~dropped)
    kept = body.iloc[keep]
    kept.index = pd.Index(numbers[keep], name="row", dtype="int64")
    return DataRows(
        row_numbers=numbers[keep].tolist(),
        rows=[rows[start + i] for i in keep.tolist()],  # the reader's lists, not copies
        skipped=list(zip(numbers[dropped].tolist(), reason[dropped].tolist(), strict=True)),
        frame=kept)


# ---------------------------------------------------------------------------------------------
# Addresses in one cell

_NUM = "0-9零〇○一二两三四五六七八九十百"
_ADDRESS_WITH_COUNTERS = (
    rf"^(?P<community>.*?)\s*"
    rf"(?P<building>[{_NUM}A-Za-z]+)\s*(?:号楼|栋|幢|座|#|号|楼)\s*[-—]?\s*"
    # A floor after a unit ("2单元18楼1801") is not part of the household's key. Only there:
    # "建设路12号1楼101" is street number 12, building 1, room 101, not building 12, floor 1.
    rf"(?:(?P<unit>[{_NUM}A-Za-z]+)\s*(?:单元|[-—])\s*(?:[{_NUM}]+\s*[楼层]\s*)?)?\s*"
    rf"(?P<room>[{_NUM}A-Za-z]+)\s*(?:室|号|户)?$"
)
#: A "community" still holding a building or unit: the address has a form not understood
#: ("…3栋2单元18F1801"), and guessing would create a community named after a staircase.
COUNTER_LEFT = rf"[{_NUM}]\s*(?:号楼|栋|幢|单元)"
_ADDRESS_DASHED = (
    r"^(?P<community>.*?)\s*"
    r"(?P<building>[0-9]+[A-Za-z]?)\s*[-—#]\s*"
    r"(?:(?P<unit>[0-9]+)\s*[-—]\s*)?"
    r"(?P<room>[0-9]+[A-Za-z]?)\s*室?$"
)
_PARTS = ("building", "unit", "room")


def split_address(series: pd.Series) -> pd.DataFrame:
    """Split addresses into community / building / unit / room, vectorized (`str.extract`).

    "桂园小区3号楼2单元102室", "桂园小区 3-2-102", "桂园小区三栋二单元102" and "3#2-102"
    all give building "3", unit "2", room "102" (the last with no community). Parts are
    normalized like the registry's household key; an address that fits no form gives None in
    every column (the caller reports it). The index is kept.
    """
    text = (series.astype("string").fillna("").str.normalize("NFKC")
            .str.replace(r"\s+", " ", regex=True).str.strip())
    found = text.str.extract(_ADDRESS_WITH_COUNTERS)
    dashed = text.str.extract(_ADDRESS_DASHED)
    use_dashed = found["room"].isna() & dashed["room"].notna()
    found = found.mask(use_dashed, dashed, axis=0)
    result = pd.DataFrame(index=series.index)
    community = found["community"].str.replace(r"[\s,，、:：-]+$", "", regex=True).str.strip()
    found = found.mask(community.str.contains(COUNTER_LEFT, regex=True).fillna(False), None)
    community = community.where(found["room"].notna())
    result["community"] = community.where(community.str.len() > 0).astype(object)
    for part in _PARTS:
        values = found[part]
        uniques = values.dropna().unique()
        mapping = {value: normalize_part(value) or None for value in uniques}
        result[part] = values.map(mapping).astype(object)
    return result.where(result.notna(), None)
