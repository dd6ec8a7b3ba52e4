"""Cleaning a ledger's columns, vectorized with pandas; a bad cell becomes an error row.

Every normalizer takes a whole column (a Series indexed by spreadsheet row number) and returns
`(clean, reasons)`: the cleaned values (None where empty or bad) and a Chinese reason where the
cell is bad (None elsewhere). They work with `Series.str` methods, `replace(regex=True)`,
`pd.to_datetime` with explicit formats and numpy; the only per-value Python is a `.map` over a
column's UNIQUE values (building/unit/room through the registry's `normalize_part`, so an import
and the registry agree on a household's key). `normalize_table` runs them over a frame and
returns a `NormalizedFrame`; it never raises on a bad cell.

What each recognizes:

- text: full-width → half-width (NFKC), zero-width characters and stray spaces removed
  (spaces between Chinese characters too: "张  三" → "张三"), "3.0" from a numeric cell → "3";
- building/unit/room: "3#", "3号楼", "3栋", "三号楼", "3幢", "３" → "3"; "二单元" → "2";
  "１０２", "102室" → "102";
- dates: Excel serial numbers (1900 date system: 44409 → 2021-08-01), 2021.5.3, 2021年5月3日,
  20210503, 2021/05/03, 2021-5-3, datetimes from calamine → `datetime.date`;
- phones: an 11-digit mobile starting 1[3-9] (+86/86/0086, spaces and dashes removed), or a
  landline such as 0376-1234567 kept as written;
- ID numbers: 18 characters, a valid birth date and the GB 11643 check digit ("x" → "X").
  The region code (first six digits) is not checked against python-stdnum's table of county
  codes: that table comes from Wikipedia with year ranges, and a resident's real ID number
  must not be refused because a county code is missing from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from onemeter.imports.headers import (
    FIELD_NAMES,
    WHITESPACE,
    DataRows,
    HeaderMatch,
    cell_strings,
    excel_errors,
    split_address,
)
from onemeter.registry.normalize import normalize_part

#: A column normalizer: the column → (clean values, reasons).
Normalizer = Callable[[pd.Series], tuple[pd.Series, pd.Series]]

ERROR_COLUMNS = ["row", "field", "column", "value", "reason"]
#: Excel's 1900 date system counts days from 1899-12-30 (it thinks 1900 was a leap year).
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_YEARS = (1950, 2100)
_CJK = r"[\u3400-\u9fff\uf900-\ufaff]"
#: A run of Python's whitespace in RE2 terms (RE2's own \s is ASCII only).
_WHITESPACE_RUN = WHITESPACE + "+"
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_YES = ("是", "y", "yes", "true", "1", "√", "✓", "✔", "自愿不改造", "不改造", "不参与", "不愿参与")
_NO = ("否", "n", "no", "false", "0", "×", "✗", "✘", "参与", "改造")


@dataclass(frozen=True)
class NormalizedFrame:
    """The cleaned frame and its errors.

    `data`: one column per field, indexed by spreadsheet row number ("row"); a bad or empty
    cell is None. `errors`: one row per bad cell — row (spreadsheet row number), field,
    column (the header as the sheet writes it), value (the cell as read), reason (Chinese).
    """

    data: pd.DataFrame
    errors: pd.DataFrame

    @property
    def error_rows(self) -> pd.Index:
        """Spreadsheet row numbers with at least one bad cell."""
        return pd.Index(self.errors["row"].unique(), name="row")


def _none(values: pd.Series) -> pd.Series:
    """Object dtype with None for every missing value (pandas' str dtype would say NaN)."""
    values = values.astype(object)
    return values.where(values.notna(), None)


def _empty_reasons(index: pd.Index) -> pd.Series:
    return pd.Series(None, index=index, dtype=object)


def _done(clean: pd.Series, reasons: pd.Series) -> tuple[pd.Series, pd.Series]:
    return _none(clean), _none(reasons)


def _arrow_text(column: pd.Series) -> pa.ChunkedArray:
    """Cells as Arrow strings ("" for an empty cell; numbers as Python writes them)."""
    return _arrow(cell_strings(column))


def _arrow(text: pd.Series) -> pa.ChunkedArray:
    """An Arrow-backed string Series' data, without a copy (the `__arrow_array__` protocol)."""
    return pa.chunked_array(pa.array(text.array))


def _text_series(array: pa.ChunkedArray | pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.array(array, dtype="str"), index=index)


#: What a clerk writes in a cell that has nothing to say (after NFKC): read as empty.
_PLACEHOLDERS = pa.array(["无", "暂无", "空", "/", "\\", "-", "--", "—", "——", "n/a", "N/A"])


def as_text(column: pd.Series) -> pd.Series:
    """Cells as cleaned strings ("" for an empty cell): NFKC, no zero-width characters, runs of
    whitespace as one space, trimmed; an export's wrapping ('…, ="…") removed; a placeholder
    (无, 暂无, /, -, —, N/A) as empty; "3.0" (a whole number from a numeric cell) → "3".

    On the Arrow arrays with pyarrow.compute (RE2): an order of magnitude faster than the
    pandas string accessor, which falls back to Python for NFKC."""
    text = pc.utf8_normalize(_arrow_text(column), "NFKC")
    text = pc.replace_substring_regex(text, "[\u200b-\u200d\u2060\ufeff]", "")
    text = pc.replace_substring_regex(text, _WHITESPACE_RUN, " ")
    text = pc.utf8_trim_whitespace(text)
    # What a spreadsheet export wraps a number in to keep it text: '13812345678, ="0376…"
    text = pc.replace_substring_regex(text, r'^="(.*)"$|^\'(.*)$', r"\1\2")
    text = pc.if_else(pc.is_in(text, value_set=_PLACEHOLDERS), "", text)
    text = pc.replace_substring_regex(text, r"^(-?\d+)\.0+$", r"\1")
    return _text_series(text, column.index)


def has_text(column: pd.Series) -> np.ndarray:
    """Whether each cell holds anything once cleaned like `as_text` (a boolean array);
    cleaned once per distinct value, so a column of 是/否 costs three cleanings."""
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=False)
    filled = (as_text(pd.Series(uniques, dtype=object)) != "").to_numpy(dtype=bool)
    return filled[codes]


def normalize_text(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Free text (community, address, names, plugin fields): cleaned, never an error; a space
    between two Chinese characters goes (张 三 → 张三)."""
    text = as_text(column)
    spaced = text.str.contains(" ", regex=False).to_numpy(dtype=bool)
    if spaced.any():  # few cells have a space: the look-around (not in RE2) runs on those only
        text = text.copy()
        text[spaced] = text[spaced].astype(object).str.replace(
            rf"(?<={_CJK}) +(?={_CJK})", "", regex=True)
    return _done(text.where(text != ""), _empty_reasons(column.index))


#: Two runs of digits with a separator between them (after NFKC): "3-2-1801", "1801.5",
#: "18楼1801" (a floor, or a building: which one, only the clerk knows).
_DIGIT_GROUPS = r"\d\s*[-—_/\\.,，、·\s楼层]\s*\d"
#: A 室号 cell holding building-unit-room ("3-2-1801"), split when the sheet has no 楼栋,
#: 单元 or 地址 column (a 门牌号 column). Two parts ("2-1801") stay an error: building-room or
#: unit-room, only the clerk knows.
_ROOM_AS_ADDRESS = r"^(\d+[A-Za-z]?)\s*[-—]\s*(\d+)\s*[-—]\s*(\d+[A-Za-z]?)\s*室?$"
#: A date or time cell as `as_text` writes it ("2021-01-02 00:00:00", "10:01:00").
_DATE_OR_TIME = r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2}(?:\.\d+)?)?|\d{2}:\d{2}:\d{2}(?:\.\d+)?"


def normalize_names(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Names: free text, but two names on two lines of one cell (Alt+Enter) are kept apart
    ("张三\\n李四" → "张三、李四", not the one name "张三李四")."""
    text = cell_strings(column)
    broken = text.str.contains("\n", regex=False).to_numpy(dtype=bool)
    if broken.any():
        text = text.copy()
        text[broken] = text[broken].str.strip().str.replace(r"\s*[\r\n]+\s*", "、", regex=True)
    return normalize_text(text)


def _parts(what: str, foreign: str, shown: str) -> Normalizer:
    def normalize(column: pd.Series) -> tuple[pd.Series, pd.Series]:
        text = as_text(column)
        uniques = text.unique()
        mapping = {value: normalize_part(value) for value in uniques}
        clean = text.map(mapping)
        reasons = _empty_reasons(column.index)
        filled = text != ""
        mixed = filled & text.str.contains(foreign, regex=True)
        reasons = reasons.mask(mixed, f"{what}一栏里还写了{shown}，请分列填写")
        unreadable = filled & ~mixed & (clean == "")
        reasons = reasons.mask(unreadable, f"无法识别的{what}")
        # "3-2-1801", "1-1101", "1801.5": the key would join the digits (3-2-1801 → 321801,
        # and 1-1101 and 11-101 would be one household), so the row is refused instead.
        groups = filled & ~mixed & text.str.contains(_DIGIT_GROUPS, regex=True)
        reasons = reasons.mask(groups, f"{what}里有几段数字（如“3-2-1801”），"
                                       "请把楼栋、单元、室号分列填写")
        dated = filled & text.str.fullmatch(_DATE_OR_TIME)
        reasons = reasons.mask(dated, f"{what}被Excel存成了日期或时间（如“1-2”变成1月2日），"
                                      "请把该列设为文本格式后重新填写")
        clean = clean.where(filled & reasons.isna())
        return _done(clean, reasons)
    normalize.__name__ = f"normalize_{what}"
    return normalize


#: 3#, 3号楼, 3栋, 三号楼, 3幢 → "3".
normalize_building = _parts("楼栋号", "单元|室", "单元或室号")
#: 二单元, 2单元, ２ → "2".
normalize_unit = _parts("单元号", "号楼|栋|幢|室", "楼栋或室号")
#: １０２, 102室, 一〇二 → "102".
normalize_room = _parts("室号", "号楼|栋|幢|单元", "楼栋或单元")


def normalize_dates(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Dates in every local form → `datetime.date`; see the module docstring for the forms."""
    text = as_text(column).str.replace(r"[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$", "", regex=True)
    parts = text.str.extract(
        r"^((?:19|20)\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?$")
    compact = text.str.extract(r"^((?:19|20)\d{2})(\d{2})(\d{2})$")
    parts = parts.fillna(compact)
    iso = parts[0] + "-" + parts[1].str.zfill(2) + "-" + parts[2].str.zfill(2)
    written = pd.to_datetime(iso, format="%Y-%m-%d", errors="coerce")
    serial_text = text.where(text.str.fullmatch(r"\d{5}(?:\.\d+)?"))
    days = pd.to_numeric(serial_text, errors="coerce").floordiv(1)
    serial = _EXCEL_EPOCH + pd.to_timedelta(days, unit="D")
    when = written.fillna(serial)
    in_range = when.dt.year.between(*_YEARS)
    filled = text != ""
    reasons = _empty_reasons(column.index)
    reasons = reasons.mask(filled & when.isna(), "无法识别的日期，请写成2021-05-03或2021年5月3日")
    reasons = reasons.mask(filled & parts[0].notna() & written.isna(),
                           "日期不存在（请核对月、日）")
    reasons = reasons.mask(filled & when.notna() & ~in_range,
                           f"日期超出合理范围（{_YEARS[0]}—{_YEARS[1]}年）")
    good = when.notna() & in_range
    dates = pd.Series(when.dt.date.to_numpy(dtype=object), index=column.index)
    return _done(dates.where(good), reasons)


def normalize_phones(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """An 11-digit mobile (1[3-9]…), or a landline like 0376-1234567 kept as written."""
    text = as_text(column).str.replace(  # (0376)1234567, 0376 1234567 → 0376-1234567
        r"^\((0\d{2,3})\)\s*(\d)|^(0\d{2,3})\s+(\d)", r"\1\3-\2\4", regex=True)
    landline = text.str.fullmatch(r"0\d{2,3}-?\d{7,8}(?:-\d{1,6})?")
    digits = _text_series(pc.replace_substring_regex(pc.replace_substring_regex(
        _arrow(text), r"[\s\-()]", ""), r"^(?:\+?86|0086)(1\d{10})$", r"\1"),
        column.index)
    mobile = digits.str.fullmatch(r"1[3-9]\d{9}")
    clean = digits.where(mobile, text.where(landline))
    filled = text != ""
    bad = (filled & ~mobile & ~landline).to_numpy(dtype=bool)
    reasons = _empty_reasons(column.index)
    if bad.any():  # the digits are counted in the bad cells only
        count = digits[bad].str.count(r"\d").astype(str)
        reasons[bad] = ("手机号应为11位（以1开头，这里有" + count
                        + "位数字）；座机请写成区号-号码，如0376-1234567").to_numpy(dtype=object)
    return _done(clean.where(~bad & filled), reasons)


def id_number_valid(numbers: pd.Series) -> pd.Series:
    """Whether each 18-character ID number has the right GB 11643 check digit (vectorized)."""
    result = pd.Series(False, index=numbers.index)
    shaped = numbers.str.fullmatch(r"\d{17}[\dX]").fillna(False).astype(bool)
    if shaped.any():
        raw = np.frombuffer("".join(numbers[shaped].tolist()).encode("ascii"), dtype=np.uint8)
        matrix = raw.reshape(-1, 18)
        total = (matrix[:, :17].astype(np.int64) - 48) @ _ID_WEIGHTS
        result[shaped] = _ID_CHECK[total % 11] == matrix[:, 17]
    return result


def normalize_id_numbers(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """18-character resident ID numbers: shape, birth date and check digit."""
    text = as_text(column).str.upper().str.replace(r"[\s\-]", "", regex=True)
    filled = text != ""
    shaped = text.str.fullmatch(r"\d{17}[\dX]")
    birth = pd.to_datetime(text.str.slice(6, 14).where(shaped), format="%Y%m%d", errors="coerce")
    born_ok = birth.notna() & (birth >= pd.Timestamp("1900-01-01")) & (
        birth <= pd.Timestamp(dt.date.today()))
    checked = id_number_valid(text)
    reasons = _empty_reasons(column.index)
    reasons = reasons.mask(filled & shaped & born_ok & ~checked, "身份证号校验位不对，请逐位核对")
    reasons = reasons.mask(filled & shaped & ~born_ok, "身份证号中的出生日期无效")
    reasons = reasons.mask(filled & ~shaped, "身份证号应为18位（最后一位可以是X）")
    reasons = reasons.mask(filled & text.str.fullmatch(r"\d{15}"),
                           "这是15位的旧身份证号，请填写18位身份证号")
    reasons = reasons.mask(filled & text.str.contains(r"E\+", regex=True),
                           "身份证号被Excel存成了数字，后几位已丢失；请把该列设为文本格式后重新填写")
    good = filled & reasons.isna()
    return _done(text.where(good), reasons)


def normalize_flags(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """是/否 (√, Y, 1, true…) → True/False; an empty cell is False."""
    text = as_text(column).str.lower()
    mapping = {**{word: True for word in _YES}, **{word: False for word in _NO}, "": False}
    flags = text.map(mapping)
    reasons = _empty_reasons(column.index).mask(flags.isna(), "应填“是”或“否”")
    return _done(flags, reasons)


#: Field → normalizer; a field not listed (a plugin's account number, …) is free text.
FIELD_NORMALIZERS: dict[str, Normalizer] = {
    "community": normalize_text,
    "address": normalize_text,
    "owner_name": normalize_names,
    "building": normalize_building,
    "unit": normalize_unit,
    "room": normalize_room,
    "phone": normalize_phones,
    "id_number": normalize_id_numbers,
    "delivery_date": normalize_dates,
    "opted_out": normalize_flags,
}


def frame_from_rows(data: DataRows, header: HeaderMatch) -> pd.DataFrame:
    """The mapped columns of the data rows as a frame indexed by spreadsheet row number."""
    fields = list(header.columns)
    index = pd.Index(data.row_numbers, name="row", dtype="int64")
    if not data.rows:
        return pd.DataFrame({f: pd.Series(dtype=object) for f in fields}, index=index)
    frame = data.frame if data.frame is not None else pd.DataFrame(data.rows, index=index,
                                                                    dtype=object)
    width = max(frame.shape[1], max(header.columns.values()) + 1)
    frame = frame.reindex(columns=range(width))  # short rows and absent columns: missing
    picked = frame.iloc[:, [header.columns[f] for f in fields]]
    picked.columns = fields
    return picked


def _by_unique_values(normalizer: Normalizer, column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Run a normalizer once per distinct value when values repeat (communities, buildings,
    units, dates, flags): `pd.factorize`, the vectorized normalizer on the uniques, then
    `take` back by code. Mostly-distinct columns (phones, ID numbers) run directly."""
    values = column.to_numpy(dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    if len(uniques) * 2 > len(values):
        return normalizer(column)
    clean, reasons = normalizer(pd.Series(uniques, dtype=object))
    return (pd.Series(clean.to_numpy(dtype=object)[codes], index=column.index, dtype=object),
            pd.Series(reasons.to_numpy(dtype=object)[codes], index=column.index, dtype=object))


def _split_room_addresses(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with "3-2-1801" in a 室号 column split into building, unit and room, when the
    sheet has no 楼栋, 单元 or 地址 column (a 门牌号 column); other frames as they are."""
    if "room" not in frame.columns or {"building", "unit", "address"} & set(frame.columns):
        return frame
    parts = as_text(frame["room"]).str.extract(_ROOM_AS_ADDRESS)
    split = parts[0].notna()
    if not split.any():
        return frame
    frame = frame.copy()
    frame["building"] = _none(parts[0])
    frame["unit"] = _none(parts[1])
    frame["room"] = frame["room"].mask(split, parts[2])
    return frame


def normalize_table(frame: pd.DataFrame, *, labels: Mapping[str, str] | None = None,
                    normalizers: Mapping[str, Normalizer] | None = None) -> NormalizedFrame:
    """Normalize every column of `frame` (columns = canonical fields, index = row numbers).

    `labels` names the columns in error rows as the sheet does (`HeaderMatch.labels`);
    `normalizers` adds or replaces per-field normalizers (a plugin's account-number format).
    When the frame has an address but no building/unit/room columns, they (and a missing
    community) are split out of the address; an address that cannot be split is an error.
    """
    labels = dict(labels or {})
    table = {**FIELD_NORMALIZERS, **(normalizers or {})}
    frame = _split_room_addresses(frame)
    data = pd.DataFrame(index=frame.index)
    found: list[pd.DataFrame] = []

    def collect(field: str, original: pd.Series, reasons: pd.Series) -> None:
        bad = reasons.notna()
        if bad.any():
            found.append(pd.DataFrame({
                "row": original.index[bad.to_numpy()],
                "field": field,
                "column": labels.get(field, FIELD_NAMES.get(field, field)),
                "value": original[bad].to_numpy(dtype=object),
                "reason": reasons[bad].to_numpy(dtype=object),
            }))

    for field in frame.columns:
        clean, reasons = _by_unique_values(table.get(field, normalize_text), frame[field])
        text = cell_strings(frame[field], strip=True)
        failed = excel_errors(text)
        if failed.any():
            reasons = reasons.mask(failed, "单元格是Excel的错误值" + text.astype(object)
                                   + "（公式出错），请改成实际内容")
            clean = clean.mask(failed, None)
        data[field] = clean
        collect(field, frame[field], reasons)

    missing = [part for part in ("building", "unit", "room") if part not in frame.columns]
    if "address" in frame.columns and missing:
        parts = split_address(frame["address"])
        for part in missing:
            data[part] = parts[part]
        if "community" not in frame.columns:
            data["community"] = parts["community"]
        text = as_text(frame["address"])
        unsplit = (text != "") & parts["room"].isna()
        reasons = _empty_reasons(frame.index).mask(
            unsplit, "地址无法拆分出楼栋、单元、室号（如“桂园小区3号楼2单元102室”），请分列填写")
        collect("address", frame["address"], reasons)

    if found:
        errors = pd.concat(found, ignore_index=True).sort_values("row", kind="stable")
        errors = errors.reset_index(drop=True)
    else:
        errors = pd.DataFrame({name: pd.Series(dtype=object) for name in ERROR_COLUMNS})
    errors["row"] = errors["row"].astype("int64")
    return NormalizedFrame(data=data, errors=errors[ERROR_COLUMNS])
